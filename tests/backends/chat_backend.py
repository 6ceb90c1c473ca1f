"""A hand-written chat backend, as a team would write the real one: the server that
``scenarios/chat.mock`` stands in for. Contract tests run the scenario's tests against it.

``--differ`` makes it break the contract the way real backends drift from their mocks: the
join announcement renames a field (``name`` instead of ``username``).

Prints ``ready PORT`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: dict[ServerConnection, str] = {}
chat_room: set[ServerConnection] = set()


async def handler(ws: ServerConnection, differ: bool) -> None:
    if ws.request is None or ws.request.path != "/api/ws/chat":
        await ws.close(4004, "Not found")
        return
    client_id = uuid.uuid4().hex[:12]
    clients[ws] = client_id
    await ws.send(json.dumps({"type": "connected", "id": client_id}))
    try:
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("type") == "join":
                chat_room.add(ws)
                key = "name" if differ else "username"
                others = [c for c in chat_room if c is not ws]
                broadcast(others, json.dumps({"type": "user-joined", key: msg["username"]}))
            elif msg.get("type") == "message":
                broadcast(
                    chat_room,
                    json.dumps(
                        {
                            "type": "chat-message",
                            "username": msg["username"],
                            "message": msg["message"],
                            "timestamp": int(time.time() * 1000),
                        }
                    ),
                )
            elif msg.get("type") == "typing":
                others = [c for c in clients if c is not ws]
                broadcast(others, json.dumps({"type": "typing", "username": msg["username"]}))
    finally:
        del clients[ws]
        chat_room.discard(ws)
        broadcast(list(clients), json.dumps({"type": "user-left", "userId": client_id}))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--differ", action="store_true")
    args = parser.parse_args()
    async with serve(lambda ws: handler(ws, args.differ), "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ready {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())

"""A hand-written backend with authentication, as a team would write the real one.

``/feed?token=TOKEN``: without a token, or with one it does not know, the handshake completes
and the connection is closed at once with 4001 "unauthorized" (what a browser's ``onclose``
can see). With a good token: ``{"type": "welcome", "user": NAME}``, then each
``{"type": "say", "text": …}`` is answered by ``{"type": "said", "text": …, "by": NAME}``.

``/admin`` takes the token in an ``Authorization: Bearer TOKEN`` header and refuses the
handshake itself, with HTTP 401, without a good one; it answers ``{"type": "stats"}`` with
``{"type": "stats", "users": 2}``.

``--differ`` breaks the contract the way real backends drift from their mocks: the welcome
renames a field (``name`` instead of ``user``).

Prints ``ready PORT`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import json
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

USERS = {"alice-token": "Alice", "bob-token": "Bob"}


def check_admin(connection: ServerConnection, request: Request) -> Response | None:
    """The /admin route's check, before the handshake: HTTP 401 without a good token."""
    if urlsplit(request.path).path != "/admin":
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or token not in USERS:
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or bad token\n")
    return None


async def handler(ws: ServerConnection, differ: bool) -> None:
    assert ws.request is not None
    target = urlsplit(ws.request.path)
    if target.path == "/admin":
        async for raw in ws:
            if json.loads(raw).get("type") == "stats":
                await ws.send(json.dumps({"type": "stats", "users": len(USERS)}))
        return
    if target.path != "/feed":
        await ws.close(4004, "Not found")
        return
    token = parse_qs(target.query).get("token", [""])[0]
    user = USERS.get(token)
    if user is None:
        await ws.close(4001, "unauthorized")
        return
    await ws.send(json.dumps({"type": "welcome", "name" if differ else "user": user}))
    async for raw in ws:
        msg = json.loads(raw)
        if msg.get("type") == "say":
            await ws.send(json.dumps({"type": "said", "text": msg.get("text"), "by": user}))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--differ", action="store_true")
    args = parser.parse_args()
    async with serve(
        lambda ws: handler(ws, args.differ), "127.0.0.1", 0, process_request=check_admin
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ready {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())

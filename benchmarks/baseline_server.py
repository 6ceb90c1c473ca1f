"""The benchmark scenarios written by hand on websockets' asyncio server: the baseline.

    python benchmarks/baseline_server.py [--port 0] [--backlog 4096] [--compression deflate|none]

What benchmarks/fanout.mock and benchmarks/reqreply.mock do, the way a user would write it
directly on websockets (a set per room, ``websockets.broadcast``, ``json``):

  /ws/chat  on connect: {"type":"connected","id":…}; "join": enter the room, tell the others
            "user-joined"; "message": broadcast "chat-message" (with a timestamp) to the room,
            sender included.
  /ws/ping  "ping": reply {"type":"pong","seq":msg.seq,"id":conn id,"timestamp":ms}.
  /ws/idle  accept, then ignore everything.
  /ws/tick/set   a 1 s timer per connection (one ``loop.call_at``, re-armed at each run) that
            sets a key of the connection's session dict: the timers of benchmarks/timers.mock.
  /ws/tick/send  the same timer sending {"n":count} to its client.
  /ws/tick/later no timer until the client sends the text "start", then that of /ws/tick/set.

Settings, chosen to match the engine's defaults so that the comparison is about the code path:
no keepalive pings (the engine pings only on routes with ``heartbeat``), 16 MiB message limit,
listen backlog 4096 (``--backlog 100`` gives asyncio's default, to show SYN retries), JSON
encoded compactly as the engine does. Compression: websockets' default (``deflate``: offers
permessage-deflate with the same parameters as the engine, but allocates both zlib contexts
at negotiation and compresses every message, where the engine allocates on first use and sends
messages under 1 KB uncompressed). Throughput workloads use clients that do not offer
compression, so neither side compresses there.

Prints ``ready: 127.0.0.1:PORT`` once listening; stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http
import json
import signal
import time
import uuid

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

ROOMS: dict[str, set[ServerConnection]] = {}


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def now_ms() -> int:
    return int(time.time() * 1000)


def parse(message: str | bytes) -> dict | None:
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def chat(ws: ServerConnection) -> None:
    conn_id = uuid.uuid4().hex[:12]
    joined: set[str] = set()
    await ws.send(dumps({"type": "connected", "id": conn_id}))
    try:
        async for message in ws:
            msg = parse(message)
            if msg is None:
                continue
            kind = msg.get("type")
            if kind == "join":
                room = ROOMS.setdefault("chat", set())
                room.add(ws)
                joined.add("chat")
                others = [member for member in room if member is not ws]
                websockets.broadcast(
                    others, dumps({"type": "user-joined", "username": msg.get("username")})
                )
            elif kind == "message":
                websockets.broadcast(
                    ROOMS.get("chat", ()),
                    dumps(
                        {
                            "type": "chat-message",
                            "username": msg.get("username"),
                            "message": msg.get("message"),
                            "timestamp": now_ms(),
                        }
                    ),
                )
    finally:
        for name in joined:
            room = ROOMS.get(name)
            if room is not None:
                room.discard(ws)
                if not room:
                    del ROOMS[name]


async def ping(ws: ServerConnection) -> None:
    conn_id = uuid.uuid4().hex[:12]
    async for message in ws:
        msg = parse(message)
        if msg is not None and msg.get("type") == "ping":
            await ws.send(
                dumps({"type": "pong", "seq": msg.get("seq"), "id": conn_id, "timestamp": now_ms()})
            )


async def idle(ws: ServerConnection) -> None:
    async for _ in ws:
        pass


TICK = 1.0  # seconds between runs of a connection's timer


async def tick(ws: ServerConnection, send: bool, later: bool = False) -> None:
    """A timer per connection, the way asyncio offers it: a callback at a time of the loop,
    re-armed one interval after the time it was due (no drift), cancelled when the client
    leaves. ``later``: the timer starts when the client sends "start"."""
    loop = asyncio.get_running_loop()
    session: dict[str, object] = {}
    count = 0

    def run(due: float) -> None:
        nonlocal count, handle
        count += 1
        if send:
            websockets.broadcast((ws,), dumps({"n": count}))
        else:
            session["n"] = count
        handle = loop.call_at(due + TICK, run, due + TICK)

    handle: asyncio.TimerHandle | None = None
    if not later:
        due = loop.time() + TICK
        handle = loop.call_at(due, run, due)
    try:
        async for message in ws:
            if later and message == "start" and handle is None:
                due = loop.time() + TICK
                handle = loop.call_at(due, run, due)
    finally:
        if handle is not None:
            handle.cancel()


async def tick_set(ws: ServerConnection) -> None:
    await tick(ws, send=False)


async def tick_send(ws: ServerConnection) -> None:
    await tick(ws, send=True)


async def tick_later(ws: ServerConnection) -> None:
    await tick(ws, send=False, later=True)


HANDLERS = {
    "/ws/chat": chat,
    "/ws/ping": ping,
    "/ws/idle": idle,
    "/ws/tick/set": tick_set,
    "/ws/tick/send": tick_send,
    "/ws/tick/later": tick_later,
}


def process_request(connection: ServerConnection, request):  # type: ignore[no-untyped-def]
    if request.path.split("?", 1)[0] not in HANDLERS:
        return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found\n")
    return None


async def handler(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):  # a client gone without a close frame
        await HANDLERS[ws.request.path.split("?", 1)[0]](ws)


async def main(port: int, backlog: int, compression: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with websockets.serve(
        handler,
        "127.0.0.1",
        port,
        process_request=process_request,
        compression=compression,
        ping_interval=None,
        max_size=16 * 1024 * 1024,
        backlog=backlog,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ready: 127.0.0.1:{port} (backlog {backlog}, compression {compression})", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    args = parser.parse_args()
    asyncio.run(
        main(args.port, args.backlog, None if args.compression == "none" else args.compression)
    )

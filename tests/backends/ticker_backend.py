"""A hand-written ticker backend, as a team would write the real one: the server pushes.

A client sends ``{"type": "subscribe", "symbol": "ACME"}`` and gets ``subscribed``, then a
``price`` for that symbol every ``--interval`` milliseconds (``n`` counting them) until it
sends ``unsubscribe`` (answered by ``unsubscribed``); ``{"type": "ping", "id": 7}`` is answered
by ``{"type": "pong", "id": 7}``. Anything else gets an ``error``.

``--differ`` breaks the contract the way real backends drift from their mocks: the
``subscribed`` answer renames a field (``ticker`` instead of ``symbol``).

Prints ``ready PORT`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def stream(ws: ServerConnection, symbol: str, interval: float) -> None:
    n = 0
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(interval)
            n += 1
            price = round(random.uniform(100, 200), 2)
            await ws.send(json.dumps({"type": "price", "symbol": symbol, "price": price, "n": n}))


async def handler(ws: ServerConnection, interval: float, differ: bool) -> None:
    if ws.request is None or ws.request.path != "/ticker":
        await ws.close(4004, "Not found")
        return
    streams: dict[str, asyncio.Task[None]] = {}
    try:
        async for raw in ws:
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "subscribe":
                symbol = msg["symbol"]
                key = "ticker" if differ else "symbol"
                await ws.send(json.dumps({"type": "subscribed", key: symbol}))
                if symbol in streams:
                    streams[symbol].cancel()
                streams[symbol] = asyncio.create_task(stream(ws, symbol, interval))
            elif kind == "unsubscribe":
                task = streams.pop(msg["symbol"], None)
                if task is not None:
                    task.cancel()
                await ws.send(json.dumps({"type": "unsubscribed", "symbol": msg["symbol"]}))
            elif kind == "ping":
                await ws.send(json.dumps({"type": "pong", "id": msg.get("id")}))
            else:
                await ws.send(json.dumps({"type": "error", "message": f"unknown type {kind!r}"}))
    finally:
        for task in streams.values():
            task.cancel()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--differ", action="store_true")
    parser.add_argument("--interval", type=int, default=200, help="milliseconds between prices")
    args = parser.parse_args()
    interval = args.interval / 1000
    async with serve(lambda ws: handler(ws, interval, args.differ), "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"ready {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())

"""The three servers of benchmarks/run.py behave alike, so that its ratios compare code paths.

The engine serving benchmarks/*.mock, the hand-written websockets baseline
(benchmarks/baseline_server.py) and the hand-written Node `ws` server
(benchmarks/node/ws_server.mjs) each get the same conversations from a real client: the same
replies, broadcasts, timer pushes and refusals, or a benchmark table would compare different
work. Needs node and `npm ci --prefix benchmarks/node` (which CI runs).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from support import ROOT, UNIT, needs
from websockets.asyncio.client import ClientConnection, connect

BENCHMARKS = ROOT / "benchmarks"
NODE_DIR = BENCHMARKS / "node"

pytestmark = [
    pytest.mark.e2e,
    needs(
        shutil.which("node") is None or not (NODE_DIR / "node_modules" / "ws").exists(),
        reason="needs node and `npm ci --prefix benchmarks/node`",
    ),
]

SERVERS: dict[str, list[str]] = {
    "engine": [
        sys.executable,
        "-m",
        "scenario_engine",
        "serve",
        str(BENCHMARKS / "fanout.mock"),
        str(BENCHMARKS / "reqreply.mock"),
        str(BENCHMARKS / "timers.mock"),
        "--port",
        "0",
        "--quiet",
    ],
    "websockets": [sys.executable, str(BENCHMARKS / "baseline_server.py"), "--port", "0"],
    "node": ["node", str(NODE_DIR / "ws_server.mjs"), "--port", "0"],
}


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """One of the three benchmark servers, started on a free port; yields its ws:// base."""
    process = subprocess.Popen(
        SERVERS[request.param], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 20 * UNIT
        base = None
        while base is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, f"{request.param} exited early: {process.communicate()[1]}"
            match = re.match(r"ready: .*?(127\.0\.0\.1:\d+)", line)
            if match:
                base = "ws://" + match.group(1)
        assert base is not None, f"{request.param} did not say it was ready"
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10 * UNIT)


async def receive(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), 5 * UNIT))


async def ping_pong(base: str) -> None:
    async with connect(base + "/ws/ping", compression=None) as ws:
        for seq in (1, 2):
            await ws.send(json.dumps({"type": "ping", "seq": seq}))
        first, second = await receive(ws), await receive(ws)
    assert set(first) == {"type", "seq", "id", "timestamp"}
    assert (first["type"], first["seq"], second["seq"]) == ("pong", 1, 2)
    assert first["id"] == second["id"] and isinstance(first["id"], str)
    assert abs(first["timestamp"] - time.time() * 1000) < 60_000


async def chat(base: str) -> None:
    async with (
        connect(base + "/ws/chat", compression=None) as alice,
        connect(base + "/ws/chat", compression=None) as bob,
    ):
        welcome = [await receive(alice), await receive(bob)]
        assert [set(m) for m in welcome] == [{"type", "id"}] * 2
        assert welcome[0]["type"] == "connected" and welcome[0]["id"] != welcome[1]["id"]
        await alice.send(json.dumps({"type": "join", "username": "alice"}))
        # Joins send the joiner nothing: Alice's own message, which she hears, proves hers
        # was handled before Bob's (they come on different connections).
        await alice.send(json.dumps({"type": "message", "username": "alice", "message": "1"}))
        assert (await receive(alice))["message"] == "1"
        await bob.send(json.dumps({"type": "join", "username": "bob"}))
        assert await receive(alice) == {"type": "user-joined", "username": "bob"}
        await bob.send(json.dumps({"type": "message", "username": "bob", "message": "hi"}))
        for heard in (await receive(alice), await receive(bob)):
            assert heard.pop("timestamp") > 0
            assert heard == {"type": "chat-message", "username": "bob", "message": "hi"}
        # Bob was told nothing about his own join.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(bob.recv(), 0.2)


async def ticks(base: str) -> None:
    async with connect(base + "/ws/tick/send", compression=None) as ws:
        started = time.monotonic()
        assert await receive(ws) == {"n": 1}
        assert 0.9 <= time.monotonic() - started < 3 * UNIT


async def refusals_and_compression(base: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(base + "/ws/elsewhere"):
            pass
    assert refused.value.response.status_code == 404
    async with connect(base + "/ws/idle") as ws:  # offers permessage-deflate
        assert [type(e).__name__ for e in ws.protocol.extensions] == ["PerMessageDeflate"]


def test_the_benchmark_servers_answer_alike(server: str) -> None:
    async def main() -> None:
        await asyncio.gather(ping_pong(server), chat(server), ticks(server))
        await refusals_and_compression(server)

    asyncio.run(main())

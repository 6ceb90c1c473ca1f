"""Recording our own examples end to end: each is served by a real `scenario-engine serve
--journal` process, real clients hold a conversation with it, and the scenario inferred from
the journal file must pass `check`, pass its own tests against itself, pass them against the
example it was recorded from (`test --target`), and fail them against a copy of the example
changed in one field."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from support import (
    SCENARIOS,
    UNIT,
    ServedMock,
    http_call,
    recv,
    run_cli,
    start_mock,
    wait_until,
)
from websockets.asyncio.client import ClientConnection, connect

from scenario_engine.recording import infer_scenario, read_journal, render_scenario

pytestmark = pytest.mark.e2e

Drive = Callable[[ServedMock], Awaitable[None]]


async def _client(served: ServedMock, path: str) -> ClientConnection:
    return await connect(served.url(path), open_timeout=5 * UNIT)


async def _send(ws: ClientConnection, message: dict[str, object]) -> None:
    await ws.send(json.dumps(message))


async def chat(served: ServedMock) -> None:
    alice = await _client(served, "/api/ws/chat")
    await recv(alice)
    bob = await _client(served, "/api/ws/chat")
    await recv(bob)
    await _send(alice, {"type": "join", "username": "Alice"})
    await asyncio.sleep(0.05 * UNIT)
    await _send(bob, {"type": "join", "username": "Bob"})
    await recv(alice)
    await _send(bob, {"type": "message", "username": "Bob", "message": "Hello!"})
    await recv(alice), await recv(bob)
    await _send(alice, {"type": "typing", "username": "Alice"})
    await recv(bob)
    await alice.close()
    await recv(bob)
    await bob.close()


async def ticker(served: ServedMock) -> None:
    client = await _client(served, "/api/ws/ticker")
    await _send(client, {"type": "subscribe", "symbol": "ACME"})
    for _ in range(3):  # subscribed, then two prices
        await recv(client)
    await _send(client, {"type": "unsubscribe", "symbol": "ACME"})
    await recv(client)
    await client.close()


async def rooms(served: ServedMock) -> None:
    alice = await _client(served, "/api/ws/rooms")
    bob = await _client(served, "/api/ws/rooms")
    await _send(alice, {"type": "join-room", "room": "general", "username": "alice"})
    await asyncio.sleep(0.05 * UNIT)
    await _send(bob, {"type": "join-room", "room": "general", "username": "bob"})
    await recv(alice)
    await _send(bob, {"type": "message", "room": "general", "username": "bob", "text": "hi"})
    await recv(alice), await recv(bob)
    await _send(alice, {"type": "leave-room", "room": "general"})
    await asyncio.sleep(0.05 * UNIT)
    await _send(bob, {"type": "message", "room": "general", "username": "bob", "text": "?"})
    await recv(bob)
    await alice.close()
    await bob.close()


async def auction(served: ServedMock) -> None:
    ann = await _client(served, "/api/ws/auction")
    await recv(ann)
    bob = await _client(served, "/api/ws/auction")
    await recv(bob)
    for client, message in [
        (ann, {"type": "name", "name": "Ann"}),
        (bob, {"type": "name", "name": "Bob"}),
        (ann, {"type": "bid", "amount": 10}),
        (bob, {"type": "bid", "amount": "11"}),
        (bob, {"type": "bid", "amount": 12}),
        (ann, {"type": "bid", "amount": "twenty"}),
    ]:
        await _send(client, message)
        await recv(client)
    await recv(ann)  # Bob's bid of 12, announced to Ann too
    await ann.close()
    await bob.close()


async def private(served: ServedMock) -> None:
    for query in ("", "?token=stolen", "?token=alice-token", "?token=bob-token"):
        client = await _client(served, "/api/ws/private" + query)
        if query.endswith("-token"):
            await recv(client)
            await client.close()
        else:
            await client.wait_closed()


def _record(served: ServedMock, journal: Path, drive: Drive, out: Path) -> None:
    """Hold the conversation with the served example, wait for the journal to have all of
    it, infer from it and write OUT."""
    asyncio.run(asyncio.wait_for(drive(served), 20 * UNIT))

    def complete() -> bool:
        kinds = [e["event"] for e in read_journal(journal)]
        return kinds.count("close") == kinds.count("connect")

    assert wait_until(complete)
    out.write_text(render_scenario(infer_scenario(read_journal(journal), name="recorded"), out))


@pytest.mark.parametrize(
    ("example", "drive", "old", "new", "reported"),
    [
        # The field each change renames or rewrites, and what the failing test says of it.
        (
            "chat.mock",
            chat,
            'type: "user-joined", username: msg.username',
            'type: "user-joined", name: msg.username',
            'at msg.username: missing (expected "Bob")',
        ),
        (
            "ticker.mock",
            ticker,
            "n: timer.count",
            "n: timer.count + 1",
            "at msg.n: expected 1, received 2",
        ),
        (
            "rooms.mock",
            rooms,
            'type: "chat-message", from: msg.username',
            'type: "chat-message", sender: msg.username',
            'at msg.from: missing (expected "bob")',
        ),
        (
            "auction.mock",
            auction,
            '"a bid needs a numeric amount"',
            '"a bid needs a number"',
            'expected "a bid needs a numeric amount", received "a bid needs a number"',
        ),
        (
            "private.mock",
            private,
            'reject 4002 "Invalid token"',
            'reject 4003 "Invalid token"',
            "expected code 4002, received 4003",
        ),
    ],
)
def test_a_recorded_example_becomes_a_scenario_that_checks_the_example(
    tmp_path: Path, example: str, drive: Drive, old: str, new: str, reported: str
) -> None:
    journal = tmp_path / "journal.jsonl"
    out = tmp_path / f"recorded-{Path(example).stem}.mock"
    served = start_mock(SCENARIOS / example, extra=("--journal", str(journal), "--admin"))
    try:
        _record(served, journal, drive, out)
        # The auction remembers the highest bid: the target starts afresh.
        assert http_call(served.port, "POST", "/__admin/reset")[0] == 200
        text = out.read_text(encoding="utf-8")
        checked = run_cli("check", out)
        assert checked.status == 0, checked.stdout + checked.stderr + text
        itself = run_cli("test", out)
        assert itself.status == 0, itself.stdout + itself.stderr + text
        target = run_cli("test", out, "--target", served.base)
        assert target.status == 0, target.stdout + target.stderr + text
    finally:
        served.stop()
    changed = tmp_path / example
    original = (SCENARIOS / example).read_text(encoding="utf-8")
    assert old in original
    changed.write_text(original.replace(old, new), encoding="utf-8")
    served = start_mock(changed)
    try:
        target = run_cli("test", out, "--target", served.base)
    finally:
        served.stop()
    assert target.status == 1, target.stdout + target.stderr + text
    assert reported in target.stdout

"""record → serve → test --target, the whole loop, on real servers.

For each server (the hand-written backends of tests/backends, and an example served by our own
``serve``), a real ``record`` process stands in front of it while real clients talk through
it; Ctrl+C (SIGINT) writes the scenario. Then: the scenario checks clean; its tests pass
against the scenario served by the engine, and against the server it was recorded from; they
fail against the same server changed in one field (``--differ``, or a copy of the example with
one field renamed). ``--from-journal`` of the recording's ``--journal`` file writes the same
scenario, and YAML (``-o OUT.yaml``) passes the same checks.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import (
    SCENARIOS,
    CliResult,
    closed,
    handshake_status,
    recv_json,
    run_cli,
    start_backend,
    start_mock,
    start_record,
)
from websockets.asyncio.client import connect

pytestmark = pytest.mark.e2e

Conversation = Callable[[str], Coroutine[Any, Any, None]]


# ---- the conversations, as a team's clients would have them ----------------------------------


async def chat(url: str) -> None:
    """Three clients of the chat backend: two join the chat, one only watches."""
    async with (
        connect(url + "/api/ws/chat") as alice,
        connect(url + "/api/ws/chat") as bob,
        connect(url + "/api/ws/chat") as carol,
    ):
        for client in (alice, bob, carol):
            assert (await recv_json(client))["type"] == "connected"
        await alice.send(json.dumps({"type": "join", "username": "Alice"}))
        await asyncio.sleep(0.05)
        await bob.send(json.dumps({"type": "join", "username": "Bob"}))
        assert await recv_json(alice) == {"type": "user-joined", "username": "Bob"}
        await alice.send(json.dumps({"type": "message", "username": "Alice", "message": "Hi!"}))
        for client in (alice, bob):
            assert (await recv_json(client))["message"] == "Hi!"
        await carol.send(json.dumps({"type": "typing", "username": "Carol"}))
        for client in (alice, bob):
            assert await recv_json(client) == {"type": "typing", "username": "Carol"}
        await asyncio.sleep(0.1)


async def ticker(url: str) -> None:
    """A subscription: prices every 200 ms, a ping answered, then unsubscribed: quiet."""
    async with connect(url + "/ticker") as ws:
        await ws.send(json.dumps({"type": "subscribe", "symbol": "ACME"}))
        assert await recv_json(ws) == {"type": "subscribed", "symbol": "ACME"}
        for n in (1, 2):
            assert (await recv_json(ws))["n"] == n
        await ws.send(json.dumps({"type": "ping", "id": 7}))
        assert await recv_json(ws, skip=lambda m: m["type"] == "price") == {
            "type": "pong",
            "id": 7,
        }
        # Prices go on after the ping: it is the unsubscribe that stops them.
        assert (await recv_json(ws))["type"] == "price"
        await ws.send(json.dumps({"type": "unsubscribe", "symbol": "ACME"}))
        assert (await recv_json(ws, skip=lambda m: m["type"] == "price"))["type"] == (
            "unsubscribed"
        )
        await asyncio.sleep(0.5)


async def auth(url: str) -> None:
    """Refused without a token and with a wrong one (4001), and on /admin without the header
    (HTTP 401); a good token talks."""
    for query in ("", "?token=stolen"):
        async with connect(url + "/feed" + query) as refused:
            assert await closed(refused) == (4001, "unauthorized")
    async with connect(url + "/feed?token=alice-token") as alice:
        assert await recv_json(alice) == {"type": "welcome", "user": "Alice"}
        await alice.send(json.dumps({"type": "say", "text": "hello"}))
        assert await recv_json(alice) == {"type": "said", "text": "hello", "by": "Alice"}
    assert (await handshake_status(url + "/admin")).response.status_code == 401
    headers = {"Authorization": "Bearer bob-token"}
    async with connect(url + "/admin", additional_headers=headers) as admin:
        await admin.send(json.dumps({"type": "stats"}))
        assert await recv_json(admin) == {"type": "stats", "users": 2}


async def rooms(url: str) -> None:
    """scenarios/rooms.mock served by the engine: two rooms, three clients."""
    async with (
        connect(url + "/api/ws/rooms") as alice,
        connect(url + "/api/ws/rooms") as bob,
        connect(url + "/api/ws/rooms") as carol,
    ):
        await alice.send(json.dumps({"type": "join-room", "room": "general", "username": "a"}))
        await asyncio.sleep(0.05)
        await bob.send(json.dumps({"type": "join-room", "room": "general", "username": "b"}))
        assert await recv_json(alice) == {"type": "user-joined", "username": "b", "room": "general"}
        await carol.send(json.dumps({"type": "join-room", "room": "random", "username": "c"}))
        for sender, room, text, members in (
            (bob, "general", "hi", (alice, bob)),
            (alice, "general", "hello", (alice, bob)),
            (carol, "random", "anyone?", (carol,)),
        ):
            name = {alice: "a", bob: "b", carol: "c"}[sender]
            message = {"type": "message", "room": room, "username": name, "text": text}
            await sender.send(json.dumps(message))
            for client in members:
                expected = {"type": "chat-message", "from": name, "text": text}
                assert await recv_json(client) == expected
        await asyncio.sleep(0.1)


# ---- the servers -----------------------------------------------------------------------------


@dataclass
class Server:
    """A server to record: how to start it as it is, and changed in one field."""

    name: str
    conversation: Conversation
    start: Callable[[Path, bool], Any]


def _backend(script: str) -> Callable[[Path, bool], Any]:
    def start(_: Path, differ: bool) -> Any:
        backend = start_backend(script, *(["--differ"] if differ else []))
        return backend.url, backend.stop

    return start


def _example(name: str, field: str, renamed: str) -> Callable[[Path, bool], Any]:
    def start(directory: Path, differ: bool) -> Any:
        path = SCENARIOS / name
        if differ:
            text = path.read_text(encoding="utf-8")
            assert text.count(field) == 1, f"{field!r} must be in {name} once"
            path = directory / "changed" / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(text.replace(field, renamed), encoding="utf-8")
        served = start_mock(path, extra=("--quiet",))
        return served.base, served.stop

    return start


SERVERS = [
    Server("chat", chat, _backend("chat_backend.py")),
    Server("ticker", ticker, _backend("ticker_backend.py")),
    Server("auth", auth, _backend("auth_backend.py")),
    Server(
        "rooms",
        rooms,
        _example("rooms.mock", "from: msg.username", "sender: msg.username"),
    ),
]


@contextmanager
def running(server: Server, directory: Path, differ: bool = False) -> Iterator[str]:
    url, stop = server.start(directory, differ)
    try:
        yield url
    finally:
        stop()


def outcome(result: CliResult) -> str:
    return f"exit {result.status}\n{result.stdout}{result.stderr}"


# ---- the loop --------------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS, ids=[s.name for s in SERVERS])
def test_record_serve_and_verify(server: Server, tmp_path: Path) -> None:
    out, journal = tmp_path / f"{server.name}.mock", tmp_path / f"{server.name}.jsonl"
    yaml = tmp_path / "yaml" / f"{server.name}.yaml"
    yaml.parent.mkdir()
    with running(server, tmp_path) as url:
        recorder = start_record(url, out, "--journal", str(journal), "--quiet")
        try:
            asyncio.run(asyncio.wait_for(server.conversation(recorder.url), 20))
        finally:
            status = recorder.stop(signal.SIGINT)
        assert status == 0, recorder.err.lines
        assert any(line.startswith(f"wrote {out}: ") for line in recorder.out.lines)
        text = out.read_text(encoding="utf-8")
        # The journal written as the recording went makes the same scenario; and YAML.
        again = tmp_path / "again" / out.name
        again.parent.mkdir()
        rewritten = run_cli("record", "--from-journal", journal, "-o", again)
        assert rewritten.status == 0, outcome(rewritten)
        assert again.read_text(encoding="utf-8") == text
        assert run_cli("record", "--from-journal", journal, "-o", yaml).status == 0
        for args in (["check", out], ["test", out], ["check", yaml], ["test", yaml]):
            result = run_cli(*args)
            assert result.status == 0, outcome(result) + args[1].read_text(encoding="utf-8")
        verified = run_cli("test", out, "--target", url)
        assert verified.status == 0, outcome(verified) + text
    with running(server, tmp_path, differ=True) as changed:
        drifted = run_cli("test", out, "--target", changed)
    assert drifted.status == 1, outcome(drifted) + text
    assert "FAIL" in drifted.stdout

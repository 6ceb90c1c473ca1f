"""The journal: its own bookkeeping, then what a real server records in it.

The server tests run a real server in a background thread (``BackgroundServer``) and drive it
with websockets' synchronous client over real sockets; ``serve --journal FILE`` runs the real
command. Every wait is bounded and a multiple of UNIT.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import BOUND, UNIT, start_mock, sync_client, wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scenario_engine.runtime.background import BackgroundServer
from scenario_engine.runtime.journal import Journal, timestamp

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

SCENARIO = """\
route /echo {
  on message {
    send raw
  }
}

route /room {
  on message type "join" {
    join msg.room
    send { type: "joined", room: msg.room }
  }
  on message type "say" {
    broadcast { text: msg.text } to msg.room include self
  }
  on close {
    broadcast { left: conn.id }
  }
}

route /strict {
  origins ["http://allowed.example"]
}

route /single {
  max connections 1
}

route /auth {
  auth {
    reject http 401 "Unauthorized" unless query.token
    reject 4003 "Banned" if query.token == "eve"
  }
}

route /bye {
  on message { close 4000 "${raw}" }
}
"""


# ---- the journal on its own ------------------------------------------------------------------


def test_events_are_numbered_timed_and_bounded() -> None:
    journal = Journal(limit=3)
    for n in range(5):
        journal.record("in", connection="c1", text=str(n))
    events = journal.events()
    assert [e["seq"] for e in events] == [3, 4, 5]
    assert [e["text"] for e in events] == ["2", "3", "4"]
    assert all(TIME.match(e["time"]) for e in events)
    assert list(events[0]) == ["seq", "time", "event", "connection", "text"]
    assert journal.last_seq == 5


def test_timestamp_is_utc_with_milliseconds() -> None:
    assert timestamp(0.5) == "1970-01-01T00:00:00.500Z"
    assert timestamp(1_795_636_201.123) == "2026-11-25T19:50:01.123Z"


def test_events_since_for_a_connection_and_limited() -> None:
    journal = Journal()
    journal.record("connect", connection="a")
    journal.record("connect", connection="b")
    journal.record("out", connections=["a", "b"], text="to both")
    journal.record("out", connections=["b"], text="to b")
    journal.record("in", connection="a", text="from a")
    assert [e["seq"] for e in journal.events(since=3)] == [4, 5]
    assert [e["seq"] for e in journal.events(connection="a")] == [1, 3, 5]
    assert [e["seq"] for e in journal.events(since=1, limit=2)] == [2, 3]
    assert journal.events(since=5) == []
    assert journal.messages_out("a") == ["to both"]
    assert journal.messages_in() == ["from a"]


def test_latest_takes_the_newest_after_since_oldest_first() -> None:
    journal = Journal(limit=5)
    assert journal.latest(0, 3) == []
    for n in range(8):
        journal.record("in", connection="a", text=str(n))
    assert [e["seq"] for e in journal.latest(0, 3)] == [6, 7, 8]
    assert [e["seq"] for e in journal.latest(6, 10)] == [7, 8]
    assert [e["seq"] for e in journal.latest(0, 10)] == [4, 5, 6, 7, 8]  # what it keeps
    assert journal.latest(8, 10) == journal.latest(2, 0) == []
    journal.clear()
    assert journal.latest(6, 10) == []


def test_clear_forgets_events_but_not_the_numbering() -> None:
    journal = Journal()
    journal.record("in", connection="a", text="x")
    journal.clear()
    assert journal.events() == []
    assert journal.record("in", connection="a", text="y")["seq"] == 2
    assert [e["seq"] for e in journal.events(since=0)] == [2]


def test_a_sink_gets_every_event_as_one_json_line() -> None:
    sink = io.StringIO()
    journal = Journal(limit=1, sink=sink)
    journal.record("in", connection="a", text="héllo\nworld")
    journal.record("out", connections=["a"], binary="AAE=")
    lines = sink.getvalue().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    assert json.loads(lines[0])["text"] == "héllo\nworld"


def test_a_journal_of_limit_0_keeps_nothing_but_writes_its_sink() -> None:
    """What ``serve --journal FILE`` records without --admin: nothing reads it back."""
    sink = io.StringIO()
    journal = Journal(limit=0, sink=sink)
    for n in range(3):
        journal.record("in", connection="a", text=str(n))
    assert journal.events() == [] and journal.messages_in() == []
    assert journal.last_seq == 3
    assert [json.loads(line)["text"] for line in sink.getvalue().splitlines()] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="0 events or more"):
        Journal(limit=-1)


def test_wait_for_looks_after_since_only() -> None:
    journal = Journal(limit=4)
    for n in range(6):  # 1 and 2 dropped: 3 to 6 kept
        journal.record("in", connection="a" if n % 2 else "b", text=str(n))
    assert journal.wait_for("in", since=0)["seq"] == 3
    assert journal.wait_for("in", since=4)["seq"] == 5
    assert journal.wait_for("in", "b", since=3)["seq"] == 5
    timer = threading.Timer(
        0.05 * UNIT,
        lambda: [journal.record("out", connections=["b"], text=str(n)) for n in range(3)],
    )
    timer.start()
    try:
        # Woken by the first of the three at least: the later ones are still looked at.
        assert journal.wait_for("out", "b", since=7, timeout=BOUND)["seq"] == 8
    finally:
        timer.join()
    with pytest.raises(TimeoutError):
        journal.wait_for("in", since=6, timeout=0.05 * UNIT)


def test_wait_for_sees_events_recorded_by_another_thread() -> None:
    journal = Journal()
    journal.record("close", connection="old", code=1000, reason="")
    timer = threading.Timer(
        0.05 * UNIT, lambda: journal.record("close", connection="new", code=1001, reason="")
    )
    timer.start()
    try:
        event = journal.wait_for("close", "new", timeout=BOUND)
    finally:
        timer.join()
    assert event["code"] == 1001
    assert journal.wait_for("close", since=0)["connection"] == "old"
    with pytest.raises(TimeoutError, match="no 'close' event of connection x after seq 2"):
        journal.wait_for("close", "x", since=2, timeout=0.05 * UNIT)


def test_binary_messages_are_base64_and_come_back_as_bytes() -> None:
    journal = Journal()
    journal.record("in", connection="a", binary=base64.b64encode(b"\x00\xff").decode())
    assert journal.messages_in("a") == [b"\x00\xff"]


# ---- what a server records -------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    path = tmp_path_factory.mktemp("journal") / "journal.mock"
    path.write_text(SCENARIO, encoding="utf-8")
    with BackgroundServer.from_paths([path]) as server:
        yield server


@pytest.mark.e2e
def test_connect_in_out_and_close_are_recorded(mock: BackgroundServer) -> None:
    since = mock.journal.last_seq
    with sync_client(mock, "/echo?user=ann", additional_headers={"X-Trace": "t1"}) as ws:
        ws.send("hello")
        assert ws.recv(timeout=BOUND) == "hello"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=BOUND) == b"\x00\x01"
    closed = mock.journal.wait_for("close", since=since, timeout=BOUND)
    events = mock.journal.events(since=since, connection=closed["connection"])
    conn_id = closed["connection"]
    assert [e["event"] for e in events] == ["connect", "in", "out", "in", "out", "close"]
    connect_event = events[0]
    assert connect_event["route"] == "/echo"
    assert connect_event["path"] == "/echo"
    assert connect_event["query"] == {"user": "ann"}
    assert connect_event["headers"]["x-trace"] == "t1"
    assert all(name == name.lower() for name in connect_event["headers"])
    assert events[1] == {**events[1], "connection": conn_id, "text": "hello"}
    assert events[2]["connections"] == [conn_id] and events[2]["text"] == "hello"
    assert events[3]["binary"] == "AAE=" and "text" not in events[3]
    assert events[4]["binary"] == "AAE="
    assert (closed["code"], closed["reason"]) == (1000, "")
    assert mock.journal.messages_in(conn_id) == ["hello", b"\x00\x01"]


@pytest.mark.e2e
def test_a_broadcast_is_one_out_event_naming_every_recipient(mock: BackgroundServer) -> None:
    with sync_client(mock, "/room") as ann, sync_client(mock, "/room") as bob:
        for ws in (ann, bob):
            ws.send(json.dumps({"type": "join", "room": "r1"}))
            assert json.loads(ws.recv(timeout=BOUND))["type"] == "joined"
        since = mock.journal.last_seq
        ann.send(json.dumps({"type": "say", "room": "r1", "text": "hi"}))
        assert json.loads(bob.recv(timeout=BOUND)) == {"text": "hi"}
        assert json.loads(ann.recv(timeout=BOUND)) == {"text": "hi"}
        said, out = mock.journal.events(since=since)
        assert said["event"] == "in"
        assert out["event"] == "out" and out["text"] == '{"text":"hi"}'
        assert len(out["connections"]) == 2
        assert said["connection"] in out["connections"]
        bob_id = next(c for c in out["connections"] if c != said["connection"])
        since = mock.journal.last_seq
        bob.close()
        assert json.loads(ann.recv(timeout=BOUND)) == {"left": bob_id}
        # The close comes first, then what ``on close`` sent to the others.
        closed, left = mock.journal.events(since=since)
        assert (closed["event"], closed["connection"]) == ("close", bob_id)
        assert (left["event"], left["connections"]) == ("out", [said["connection"]])


@pytest.mark.e2e
def test_rejections_are_recorded_with_their_status_or_code(mock: BackgroundServer) -> None:
    since = mock.journal.last_seq
    for path, headers in [
        ("/nowhere", None),
        ("/strict", {"Origin": "http://evil.example"}),
        ("/auth", None),
    ]:
        with pytest.raises(InvalidStatus):
            sync_client(mock, path, origin=(headers or {}).get("Origin")).close()
    with sync_client(mock, "/single") as first:
        with pytest.raises(InvalidStatus):
            sync_client(mock, "/single").close()
        first.send("keep")
    with sync_client(mock, "/auth?token=eve") as banned, pytest.raises(ConnectionClosed):
        banned.recv(timeout=BOUND)
    rejects = [e for e in mock.journal.events(since=since) if e["event"] == "reject"]
    assert [(e["path"], e.get("status"), e.get("code"), e["reason"]) for e in rejects] == [
        ("/nowhere", 404, None, "No WebSocket route at /nowhere"),
        ("/strict", 403, None, "Origin not allowed: http://evil.example"),
        ("/auth", 401, None, "Unauthorized"),
        ("/single", 503, None, "Too many connections on this route"),
        ("/auth", None, 4003, "Banned"),
    ]
    # What the refused client sent: the query and headers to tell it from the accepted ones.
    assert [e["query"] for e in rejects] == [{}, {}, {}, {}, {"token": "eve"}]
    assert rejects[1]["headers"]["origin"] == "http://evil.example"
    assert all(e["headers"]["upgrade"] == "websocket" for e in rejects)


@pytest.mark.e2e
def test_a_close_reason_too_long_is_an_error_then_a_1011_close(mock: BackgroundServer) -> None:
    since = mock.journal.last_seq
    with sync_client(mock, "/bye") as ws:
        ws.send("r" * 124)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=BOUND)
    closed = mock.journal.wait_for("close", since=since, timeout=BOUND)
    assert (closed["code"], closed["reason"]) == (1011, "Internal error")
    error = mock.journal.wait_for("error", closed["connection"], since=since, timeout=BOUND)
    assert re.search(r"journal\.mock:\d+:\d+$", error["location"]), error
    assert error["message"] == (
        "handler failed: close reason is 124 bytes; the protocol allows 123"
    )


@pytest.mark.e2e
def test_serve_journal_writes_json_lines_as_events_happen(tmp_path: Path) -> None:
    scenario = tmp_path / "echo.mock"
    scenario.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "journal.jsonl"
    served = start_mock(scenario, extra=("--journal", str(out)))
    try:
        with sync_client(served, "/echo") as ws:
            ws.send("ping")
            assert ws.recv(timeout=BOUND) == "ping"
            # Written as it happens: the lines are there while the server still runs.
            lines = out.read_text(encoding="utf-8").splitlines()
            assert [json.loads(line)["event"] for line in lines] == ["connect", "in", "out"]
        assert wait_until(lambda: len(out.read_text(encoding="utf-8").splitlines()) >= 4), (
            "the close event was not written"
        )
    finally:
        assert served.stop() == 0
    events = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert events[3]["event"] == "close" and events[3]["code"] == 1000

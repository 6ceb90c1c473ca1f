"""Inference of a scenario from a recording (scenario_engine/recording): each rule pinned with
the `.mock` text it writes for a small conversation, built here as journal events, and the
recordings it must survive. Every scenario written here is checked as `check` would check it,
and its own tests are run against it as `scenario-engine test` runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ROOT, run_cli

from scenario_engine.errors import JournalError, UsageError
from scenario_engine.language.fmt import format_mock
from scenario_engine.language.loader import load_source
from scenario_engine.language.source import Source
from scenario_engine.recording import infer_scenario, read_journal, render_scenario
from scenario_engine.runtime.journal import timestamp

#: The recordings' clock: 2026-11-25T19:50:00Z, in milliseconds.
START = 1_795_636_200_000


class Recorder:
    """Journal events as a served mock or the recording proxy writes them, at given times
    (milliseconds after START)."""

    def __init__(self, proxy: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.proxy = proxy

    def _add(self, at: float, event: str, **fields: Any) -> None:
        self.events.append(
            {
                "seq": len(self.events) + 1,
                "time": timestamp((START + at) / 1000),
                "event": event,
                **fields,
            }
        )

    def connect(
        self, at: float, connection: str, path: str, route: str | None = None, **fields: Any
    ) -> None:
        fields.setdefault("query", {})
        fields.setdefault("headers", {"host": "127.0.0.1:8765", "user-agent": "test"})
        self._add(
            at,
            "connect",
            connection=connection,
            route=None if self.proxy else (route or path),
            path=path,
            **fields,
        )

    def send(self, at: float, connection: str, message: Any) -> None:
        self._add(at, "in", connection=connection, **_payload(message))

    def out(self, at: float, connections: list[str], message: Any) -> None:
        if self.proxy:
            for i, connection in enumerate(connections):
                self._add(at + i * 0.5, "out", connections=[connection], **_payload(message))
        else:
            self._add(at, "out", connections=connections, **_payload(message))

    def close(
        self, at: float, connection: str, code: int = 1000, reason: str = "", **fields: Any
    ) -> None:
        self._add(at, "close", connection=connection, code=code, reason=reason, **fields)

    def reject(self, at: float, path: str, **fields: Any) -> None:
        self._add(at, "reject", path=path, **fields)


def _payload(message: Any) -> dict[str, str]:
    if isinstance(message, bytes):
        import base64

        return {"binary": base64.b64encode(message).decode()}
    if isinstance(message, str):
        return {"text": message}
    return {"text": json.dumps(message)}


def inferred(events: list[dict[str, Any]], name: str = "rec", **kwargs: Any) -> str:
    """The `.mock` text inferred from ``events``, after checking that it is valid, laid out as
    fmt lays it out, and that its YAML spelling is the same scenario."""
    document = infer_scenario(events, name=name, **kwargs)
    return checked(document)


def checked(document: Any) -> str:
    text = render_scenario(document, Path("out.mock"))
    loaded, errors = load_source(Source("out.mock", text))
    assert errors == [], "\n".join(e.format_text() for e in errors) + "\n" + text
    assert loaded is not None
    assert format_mock(text) == text
    yaml_text = render_scenario(document, Path("out.yaml"))
    from_yaml, errors = load_source(Source("out.yaml", yaml_text))
    assert errors == [] and from_yaml is not None
    assert from_yaml.ir == loaded.ir
    assert yaml.safe_load(yaml_text) == loaded.ir
    return text


def passes_its_tests(text: str, tmp_path: Path) -> None:
    path = tmp_path / "inferred.mock"
    path.write_text(text, encoding="utf-8")
    result = run_cli("test", path)
    assert result.status == 0, result.stdout + result.stderr + "\n" + text


# ---- reading journals ----------------------------------------------------------------------


def test_read_journal_reads_each_line_and_skips_blank_ones(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/echo")
    recorder.send(10, "c1", "hi")
    path = tmp_path / "journal.jsonl"
    path.write_text(
        "\n".join(json.dumps(e) for e in recorder.events[:1])
        + "\n\n"
        + json.dumps(recorder.events[1])
        + "\n",
        encoding="utf-8",
    )
    assert read_journal(path) == recorder.events


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "{not json",
            "not JSON (Expecting property name enclosed in double quotes at column 2); a "
            "journal has one JSON object per line, as serve --journal writes it",
        ),
        ("[1, 2]", "not an event: a JSON array, where an object with an 'event' is expected"),
        ('{"seq": 1}', "not an event: no 'event' naming what happened (connect, in, out, close…)"),
        ('{"event": "in"}', "'in' event without a 'time' such as \"2026-11-25T19:50:01.123Z\""),
        (
            '{"event": "in", "time": "2026-11-25T19:50:01.123Z"}',
            "'in' event: no 'connection'",
        ),
        (
            '{"event": "in", "time": "2026-11-25T19:50:01.123Z", "connection": "a"}',
            "'in' event: the message is a 'text' string or a 'binary' base64 string",
        ),
        (
            '{"event": "out", "time": "2026-11-25T19:50:01.123Z", "connections": "a", "text": "x"}',
            "'out' event: 'connections' is a list of strings, not \"a\"",
        ),
        (
            '{"event": "close", "time": "2026-11-25T19:50:01.123Z", "connection": "a", '
            '"code": 1000, "by": "nobody"}',
            "'close' event: 'by' is \"client\" or \"server\"",
        ),
        (
            '{"event": "reject", "time": "2026-11-25T19:50:01.123Z", "path": "/x"}',
            "'reject' event: neither a 'status' nor a 'code'",
        ),
    ],
)
def test_read_journal_names_the_line_that_is_not_an_event(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "journal.jsonl"
    good = '{"seq": 1, "time": "2026-11-25T19:50:01.123Z", "event": "reload"}'
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(JournalError) as caught:
        read_journal(path)
    assert str(caught.value) == f"{path}:2: {message}"
    assert isinstance(caught.value, UsageError)  # the command line prints it, exit 2


def test_read_journal_of_a_missing_file_or_binary_bytes(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No such file or directory"):
        read_journal(tmp_path / "missing.jsonl")
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b'{"event": "\xff"}\n')
    with pytest.raises(JournalError, match=r"binary.jsonl:1: not UTF-8 text"):
        read_journal(path)


# ---- the rules ---------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_reply_takes_values_from_the_request_and_constants_from_every_occurrence(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/ws")
    recorder.send(100, "c1", {"type": "ping", "seq": 1})
    recorder.out(101, ["c1"], {"type": "pong", "seq": 1, "ok": True})
    recorder.send(200, "c1", {"type": "ping", "seq": 2})
    recorder.out(201, ["c1"], {"type": "pong", "seq": 2, "ok": True})
    text = inferred(recorder.events)
    assert text == (
        "route /ws {\n"
        '  on message type "ping" {\n'
        '    send { type: "pong", seq: msg.seq, ok: true }\n'
        "  }\n"
        "}\n"
        "\n"
        'test "rec: client (ping)" {\n'
        "  connect client to /ws\n"
        '  client send { type: "ping", seq: 1 }\n'
        '  client expect { type: "pong", seq: 1, ok: true }\n'
        '  client send { type: "ping", seq: 2 }\n'
        '  client expect { type: "pong", seq: 2, ok: true }\n'
        "}\n"
    )
    passes_its_tests(text, tmp_path)


def test_render_writes_comments_first_and_refuses_other_suffixes() -> None:
    document = infer_scenario([], name="rec")
    assert render_scenario(document, Path("x.mock"), comments=["a\nb"]) == "# a\n# b\n"
    assert render_scenario(document, Path("x.yml")) == "routes: []\n"
    with pytest.raises(UsageError, match=r"ends in \.mock, \.yaml or \.yml"):
        render_scenario(document, Path("x.json"))


def test_nested_and_renamed_request_values_even_from_one_occurrence() -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/ws")
    recorder.send(100, "c1", {"type": "get", "data": {"id": "x-1", "n": 3}})
    recorder.out(101, ["c1"], {"type": "item", "itemId": "x-1", "count": 3, "ok": 1})
    assert inferred(recorder.events).split("\n\ntest")[0] == (
        "route /ws {\n"
        '  on message type "get" {\n'
        '    send { type: "item", itemId: msg.data.id, count: msg.data.n, ok: 1 }\n'
        "  }\n"
        "}"
    )


def test_times_ids_and_what_a_test_expects_of_them() -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/ws")
    for i, at in enumerate((100, 300)):
        recorder.send(at, "c1", {"type": "now"})
        recorder.out(
            at + 1,
            ["c1"],
            {
                "type": "time",
                "ms": START + at + 1,
                "s": (START + at + 1) / 1000,
                "iso": f"2026-11-25T19:50:00.{at + 1:03d}Z",
                "id": f"3f0e2a36-8f4d-4a55-9d57-0c2b7a1f3e1{i}",
                "game": f"game-{0xABC123 + i * 77:08x}",
                "fixed": "abc123def",
            },
        )
    route, test = inferred(recorder.events).split("\n\ntest")
    assert route == (
        "route /ws {\n"
        '  on message type "now" {\n'
        "    send {\n"
        '      type: "time",\n'
        "      ms: now(),\n"
        "      s: now() / 1000,\n"
        '      iso: "2026-11-25T19:50:00.101Z",\n'
        "      id: uuid(),\n"
        '      game: id("game"),\n'
        '      fixed: "abc123def",\n'
        "    }\n"
        "  }\n"
        "}"
    )
    assert test.split("\n")[3:12] == [
        "  client expect {",
        '    type: "time",',
        "    ms: any,",
        "    s: any,",
        '    iso: matches("^\\\\d{4}-\\\\d{2}-\\\\d{2}T\\\\d{2}:\\\\d{2}"),',
        '    id: matches("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),',
        '    game: matches("^game-[0-9A-Za-z]+$"),',
        '    fixed: "abc123def",',
        "  }",
    ]


def test_a_value_seen_once_or_always_alike_stays_constant_and_mixed_types_are_any() -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/ws")
    recorder.send(100, "c1", {"type": "make"})
    recorder.out(101, ["c1"], {"type": "made", "id": "7f3a9c21", "v": 1})
    recorder.send(200, "c1", {"type": "make"})
    recorder.out(201, ["c1"], {"type": "made", "id": "7f3a9c21", "v": "one"})
    assert inferred(recorder.events).split("\n")[1:13] == [
        '  on message type "make" {',
        '    send { type: "made", id: "7f3a9c21", v: 1 }',
        "  }",
        "}",
        "",
        'test "rec: client (make)" {',
        "  connect client to /ws",
        '  client send { type: "make" }',
        '  client expect { type: "made", id: "7f3a9c21", v: any }',
        '  client send { type: "make" }',
        '  client expect { type: "made", id: "7f3a9c21", v: any }',
        "}",
    ]


@pytest.mark.e2e
def test_binary_echoes_and_text_protocols(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/echo")
    recorder.send(100, "c1", b"\x00\x01\xff")
    recorder.out(101, ["c1"], b"\x00\x01\xff")
    recorder.send(200, "c1", b"hello")
    recorder.out(201, ["c1"], b"hello")
    recorder.send(300, "c1", "ping")
    recorder.out(301, ["c1"], "pong")
    recorder.send(400, "c1", "say hi")
    recorder.out(401, ["c1"], "you said: say hi")
    recorder.send(500, "c1", "say bye")
    recorder.out(501, ["c1"], "you said: say bye")
    hints: list[str] = []
    text = inferred(recorder.events, hints=hints)
    assert text == (
        "route /echo {\n"
        "  on message binary {\n"
        "    send raw\n"
        "  }\n"
        "\n"
        '  on message where raw == "ping" {\n'
        '    send "pong"\n'
        "  }\n"
        "\n"
        '  on message where startsWith(raw, "say") {\n'
        '    send "you said: ${raw}"\n'
        "  }\n"
        "}\n"
        "\n"
        'test "rec: client (binary, ping, say)" {\n'
        "  connect client to /echo\n"
        '  client send binary "hello"\n'
        '  client expect "hello"\n'
        '  client send "ping"\n'
        '  client expect "pong"\n'
        '  client send "say hi"\n'
        '  client expect "you said: say hi"\n'
        '  client send "say bye"\n'
        '  client expect "you said: say bye"\n'
        "}\n"
    )
    assert hints == [
        "1 binary message(s) of the clients are not UTF-8: the tests cannot send them and "
        "leave them out"
    ]
    passes_its_tests(text, tmp_path)


def test_binary_replies_that_are_not_echoes_are_left_out_with_a_hint() -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/bin")
    recorder.send(100, "c1", b"\x00\x01")
    recorder.out(101, ["c1"], b"\x09\x09")
    hints: list[str] = []
    assert inferred(recorder.events, hints=hints).startswith(
        "route /bin {\n  on message binary {}\n}\n"
    )
    assert hints == [
        "1 binary message(s) of the server are not reproduced: a scenario sends bytes only as "
        "the echo of a binary message it received (send raw)"
    ]


def test_empty_recordings_give_routes_without_handlers_and_a_hint() -> None:
    hints: list[str] = []
    assert infer_scenario([], name="rec", hints=hints) == {"routes": []}
    assert hints == [
        "the recording has no connection: connect a client through the recorder and talk to "
        "the server, then stop it"
    ]
    recorder = Recorder()
    recorder.connect(0, "c1", "/quiet")
    recorder.close(100, "c1")
    hints = []
    assert inferred(recorder.events, hints=hints) == (
        "route /quiet {}\n"
        "\n"
        'test "rec: client connects to /quiet" {\n'
        "  connect client to /quiet\n"
        "  client close\n"
        "}\n"
    )
    assert hints == ["no client sent a message: the routes have no message handlers"]


def test_events_given_directly_are_checked_like_a_file() -> None:
    with pytest.raises(JournalError, match=r"^<events>:2: not an event: a JSON string"):
        infer_scenario([{"event": "reload", "time": "2026-11-25T19:50:01.123Z"}, "x"], name="r")


CHAT_BY_PROXY = """\
route /chat {
  on connect {
    send { type: "connected", id: conn.id }
  }

  on message type "join" {
    set session.username = msg.username
    join "chat"
    broadcast { type: "user-joined", username: msg.username } to "chat"
  }

  on message type "message" {
    broadcast { type: "chat", text: msg.text, from: session.username } to "chat"
        include self
  }

  on message type "typing" {
    broadcast { type: "typing" }
  }

  on close {
    broadcast { type: "user-left", id: conn.id }
  }
}

test "rec: alice, bob and carol (join, message, typing)" {
  connect alice to /chat
  alice expect { type: "connected", id: matches("^[0-9a-fA-F]+$") }
      capture aliceId = msg.id
  connect bob to /chat
  bob expect { type: "connected", id: matches("^[0-9a-fA-F]+$") }
  connect carol to /chat
  carol expect { type: "connected", id: matches("^[0-9a-fA-F]+$") }
  alice send { type: "join", username: "Alice" }
  wait 50ms
  bob send { type: "join", username: "Bob" }
  alice expect { type: "user-joined", username: "Bob" }
  bob send { type: "message", text: "Hello!" }
  alice expect { type: "chat", text: "Hello!", from: "Bob" }
  bob expect { type: "chat", text: "Hello!", from: "Bob" }
  alice send { type: "message", text: "Hi" }
  alice expect { type: "chat", text: "Hi", from: "Alice" }
  bob expect { type: "chat", text: "Hi", from: "Alice" }
  carol send { type: "typing" }
  alice expect { type: "typing" }
  bob expect { type: "typing" }
  alice close
  bob expect { type: "user-left", id: aliceId }
  carol expect { type: "user-left", id: aliceId }
  bob close
  carol close
}
"""


@pytest.mark.e2e
def test_a_chat_recorded_by_the_proxy(tmp_path: Path) -> None:
    """Joins, a room broadcast, a route broadcast, on connect and on close, the client's
    id captured and expected by name; out events one per receiver, as the proxy writes."""
    recorder = Recorder(proxy=True)
    recorder.connect(0, "p1", "/chat")
    recorder.out(1, ["p1"], {"type": "connected", "id": "a1b2c3d4e5f6"})
    recorder.connect(10, "p2", "/chat")
    recorder.out(11, ["p2"], {"type": "connected", "id": "0f9e8d7c6b5a"})
    recorder.connect(20, "p3", "/chat")
    recorder.out(21, ["p3"], {"type": "connected", "id": "5e5e5e5e5e51"})
    recorder.send(100, "p1", {"type": "join", "username": "Alice"})
    recorder.send(200, "p2", {"type": "join", "username": "Bob"})
    recorder.out(201, ["p1"], {"type": "user-joined", "username": "Bob"})
    recorder.send(300, "p2", {"type": "message", "text": "Hello!"})
    recorder.out(301, ["p1", "p2"], {"type": "chat", "text": "Hello!", "from": "Bob"})
    recorder.send(350, "p1", {"type": "message", "text": "Hi"})
    recorder.out(351, ["p1", "p2"], {"type": "chat", "text": "Hi", "from": "Alice"})
    recorder.send(400, "p3", {"type": "typing"})
    recorder.out(401, ["p1", "p2"], {"type": "typing"})
    recorder.close(500, "p1", by="client")
    recorder.out(501, ["p2", "p3"], {"type": "user-left", "id": "a1b2c3d4e5f6"})
    recorder.close(600, "p2", by="client")
    recorder.close(610, "p3", by="client")
    text = inferred(recorder.events)
    assert text == CHAT_BY_PROXY
    passes_its_tests(text, tmp_path)


def clock_recording() -> Recorder:
    recorder = Recorder(proxy=True)
    recorder.connect(0, "c1", "/clock")
    for n in range(1, 5):
        recorder.out(n * 1000 + 3, ["c1"], {"type": "tick", "n": n})
    recorder.out(2500, ["c1"], {"type": "bonus"})
    recorder.close(4500, "c1", by="client")
    recorder.connect(5000, "c2", "/clock")
    for n in range(1, 3):
        recorder.out(5000 + n * 1000 + 2, ["c2"], {"type": "tick", "n": n})
    recorder.out(7500, ["c2"], {"type": "bonus"})
    recorder.close(7600, "c2", by="client")
    return recorder


def ticker_recording() -> Recorder:
    """Two symbols at once, each a price every 500 ms until unsubscribed."""
    recorder = Recorder(proxy=True)
    recorder.connect(0, "c1", "/ticker")
    recorder.send(10, "c1", {"type": "subscribe", "symbol": "ACME"})
    recorder.out(11, ["c1"], {"type": "subscribed", "symbol": "ACME"})
    recorder.send(210, "c1", {"type": "subscribe", "symbol": "INIT"})
    recorder.out(211, ["c1"], {"type": "subscribed", "symbol": "INIT"})
    for n, price in enumerate((120, 131, 125), 1):
        recorder.out(
            10 + 500 * n + n % 2,
            ["c1"],
            {"type": "price", "symbol": "ACME", "n": n, "price": price},
        )
        recorder.out(
            210 + 500 * n, ["c1"], {"type": "price", "symbol": "INIT", "n": n, "price": price + 7}
        )
    recorder.send(1550, "c1", {"type": "unsubscribe", "symbol": "ACME"})
    recorder.out(1551, ["c1"], {"type": "unsubscribed", "symbol": "ACME"})
    recorder.send(1800, "c1", {"type": "unsubscribe", "symbol": "INIT"})
    recorder.out(1801, ["c1"], {"type": "unsubscribed", "symbol": "INIT"})
    recorder.close(3000, "c1", by="client")
    return recorder


def counter_recording() -> Recorder:
    recorder = Recorder(proxy=True)
    recorder.connect(0, "c1", "/ws")
    recorder.send(100, "c1", {"op": "inc"})
    recorder.out(101, ["c1"], {"op": "count", "count": 1})
    recorder.send(200, "c1", {"op": "inc"})
    recorder.out(201, ["c1"], {"op": "count", "count": 2})
    recorder.send(300, "c1", {"op": "quit"})
    recorder.out(301, ["c1"], {"op": "bye"})
    recorder.close(302, "c1", code=4000, by="server")
    return recorder


def lobby_recording() -> Recorder:
    recorder = Recorder(proxy=True)
    recorder.connect(0, "h", "/ws/lobby")
    recorder.connect(10, "g", "/ws/lobby")
    recorder.send(100, "h", {"type": "create-game"})
    recorder.out(101, ["h"], {"type": "game-created", "gameId": "game-7f3a9c21"})
    recorder.send(200, "g", {"type": "join-game", "gameId": "game-7f3a9c21"})
    recorder.out(201, ["h"], {"type": "player-joined", "gameId": "game-7f3a9c21"})
    recorder.connect(300, "p1", "/ws/game/game-7f3a9c21")
    recorder.connect(310, "p2", "/ws/game/game-0b1c2d3e")
    return recorder


def secure_recording() -> Recorder:
    recorder = Recorder(proxy=True)
    recorder.reject(
        0,
        "/secure",
        status=401,
        reason="Unauthorized",
        query={},
        headers={"host": "x", "authorization": "Bearer nope"},
    )
    recorder.connect(
        100,
        "c1",
        "/secure",
        headers={"host": "x", "authorization": "Bearer good"},
        subprotocol="v2.chat",
        protocols=["v2.chat", "v1.chat"],
    )
    recorder.out(101, ["c1"], {"type": "hello"})
    recorder.reject(200, "/secure", status=401, reason="Unauthorized", query={}, headers={})
    return recorder


def catalog_recording() -> Recorder:
    """Replies that depend on the request: a table by id, an if on a field's type."""
    recorder = Recorder(proxy=True)
    recorder.connect(0, "c1", "/shop")
    for at, request, reply in [
        (100, {"type": "get", "id": "w1"}, {"type": "item", "name": "Widget"}),
        (200, {"type": "get", "id": "g7"}, {"type": "item", "name": "Gadget"}),
        (300, {"type": "get", "id": "w1"}, {"type": "item", "name": "Widget"}),
        (400, {"type": "buy", "qty": 2}, {"type": "bought", "qty": 2}),
        (500, {"type": "buy", "qty": "two"}, {"type": "error", "reason": "qty"}),
        (600, {"type": "buy", "qty": 5}, {"type": "bought", "qty": 5}),
    ]:
        recorder.send(at, "c1", request)
        recorder.out(at + 1, ["c1"], reply)
    return recorder


CLOCK = """\
route /clock {
  on connect {
    after 2500ms {
      send { type: "bonus" }
    }
    every 1s as ticks {
      send { type: "tick", n: timer.count }
    }
  }
}

test "rec: client connects to /clock" {
  connect client to /clock
  client expect { type: "tick", n: 1 } within 1700ms
  client expect { type: "tick", n: 2 } within 1700ms
  client expect { type: "bonus" } within 4000ms
  client close
}
"""


def test_timers_from_the_connect_every_and_after() -> None:
    """A push every second from the connect, counting, and a one-off push 2.5 s after it."""
    text = inferred(clock_recording().events)
    assert text == CLOCK


TICKER = """\
route /ticker {
  on message type "subscribe" {
    send { type: "subscribed", symbol: msg.symbol }
    every 500ms as "price-${msg.symbol}" {
      send { type: "price", symbol: msg.symbol, n: timer.count, price: random(120, 138) }
    }
  }

  on message type "unsubscribe" {
    cancel "price-${msg.symbol}"
    send { type: "unsubscribed", symbol: msg.symbol }
  }
}

test "rec: client (subscribe, unsubscribe)" {
  connect client to /ticker
  client send { type: "subscribe", symbol: "ACME" }
  client expect { type: "subscribed", symbol: "ACME" }
  wait 200ms
  client send { type: "subscribe", symbol: "INIT" }
  client expect { type: "subscribed", symbol: "INIT" }
  client expect { type: "price", symbol: "ACME", n: 1, price: any } within 950ms
  client expect { type: "price", symbol: "INIT", n: 1, price: any } within 950ms
  client expect { type: "price", symbol: "ACME", n: 2, price: any } within 950ms
  client expect { type: "price", symbol: "INIT", n: 2, price: any } within 950ms
  client send { type: "unsubscribe", symbol: "ACME" }
  client expect { type: "unsubscribed", symbol: "ACME" }
  client send { type: "unsubscribe", symbol: "INIT" }
  client expect { type: "unsubscribed", symbol: "INIT" }
  client expect no message for 750ms
  client close
}
"""


def test_concurrent_timers_named_by_a_field_and_cancelled_by_what_stopped_them() -> None:
    """Two streams of one kind at once: a timer per symbol, cancelled by the unsubscribe
    naming it."""
    text = inferred(ticker_recording().events)
    assert text == TICKER


COUNTER = """\
route /ws {
  on message where msg.op == "inc" {
    set session.count = (session.count ?? 0) + 1
    send { op: "count", count: session.count }
  }

  on message where msg.op == "quit" {
    send { op: "bye" }
    close 4000
  }
}

test "rec: client (inc, quit)" {
  connect client to /ws
  client send { op: "inc" }
  client expect { op: "count", count: 1 }
  client send { op: "inc" }
  client expect { op: "count", count: 2 }
  client send { op: "quit" }
  client expect { op: "bye" }
  client expect close 4000
}
"""


@pytest.mark.e2e
def test_a_kind_told_by_another_key_a_session_counter_and_a_close_by_the_server(
    tmp_path: Path,
) -> None:
    """Messages told apart by ``op``; a number counting the client's messages; the server
    closing after ``quit``."""
    text = inferred(counter_recording().events)
    assert text == COUNTER
    passes_its_tests(text, tmp_path)


LOBBY = """\
route /ws/lobby {
  on message type "create-game" {
    send { type: "game-created", gameId: id("game") }
  }

  on message type "join-game" {
    broadcast { type: "player-joined", gameId: msg.gameId }
  }
}

route /ws/game/:gameId {}

test "rec: alice, bob and carol (create-game, join-game)" {
  connect alice to /ws/lobby
  connect bob to /ws/lobby
  alice send { type: "create-game" }
  alice expect { type: "game-created", gameId: matches("^game-[0-9A-Za-z]+$") }
      capture gameId = msg.gameId
  bob send { type: "join-game", gameId: gameId }
  alice expect { type: "player-joined", gameId: gameId }
  connect carol to "/ws/game/${gameId}"
}

test "rec: client connects to /ws/game/game-0b1c2d3e" {
  connect client to /ws/game/game-0b1c2d3e
}
"""


@pytest.mark.e2e
def test_an_id_the_server_made_is_captured_and_sent_back_and_id_segments_are_params(
    tmp_path: Path,
) -> None:
    """A game id made by the server, sent back by another client and used in a path; paths
    differing in an id segment."""
    text = inferred(lobby_recording().events)
    assert text == LOBBY
    passes_its_tests(text, tmp_path)


SECURE = """\
route /secure {
  subprotocols ["v2.chat"]

  auth {
    reject http 401 "Unauthorized" unless headers.authorization == "Bearer good"
  }

  on connect {
    send { type: "hello" }
  }
}

test "rec: client connects to /secure" {
  connect client to /secure headers { authorization: "Bearer good" } protocols [
    "v2.chat",
    "v1.chat",
  ]
  client expect { type: "hello" }
}

test "rec: refused with an unknown headers.authorization, HTTP 401" {
  connect refused to /secure headers { authorization: "Bearer nope" } expect reject 401
}

test "rec: refused without headers.authorization, HTTP 401" {
  connect refused to /secure expect reject 401
}
"""


@pytest.mark.e2e
def test_auth_on_a_header_refused_with_a_status_and_the_selected_subprotocol(
    tmp_path: Path,
) -> None:
    """Refusals with HTTP 401 told from the accepted client by ``authorization``; the
    subprotocol the server chose."""
    text = inferred(secure_recording().events)
    assert text == SECURE
    passes_its_tests(text, tmp_path)


CATALOG = """\
let names = { w1: "Widget", g7: "Gadget" }

route /shop {
  on message type "get" {
    send { type: "item", name: names[msg.id] }
  }

  on message type "buy" {
    if typeOf(msg.qty) == "number" {
      send { type: "bought", qty: msg.qty }
    } else {
      send { type: "error", reason: "qty" }
    }
  }
}

test "rec: client (get, buy)" {
  connect client to /shop
  client send { type: "get", id: "w1" }
  client expect { type: "item", name: "Widget" }
  client send { type: "get", id: "g7" }
  client expect { type: "item", name: "Gadget" }
  client send { type: "get", id: "w1" }
  client expect { type: "item", name: "Widget" }
  client send { type: "buy", qty: 2 }
  client expect { type: "bought", qty: 2 }
  client send { type: "buy", qty: "two" }
  client expect { type: "error", reason: "qty" }
  client send { type: "buy", qty: 5 }
  client expect { type: "bought", qty: 5 }
}
"""


@pytest.mark.e2e
def test_a_value_by_a_request_field_is_a_table_and_two_outcomes_an_if(tmp_path: Path) -> None:
    """A name looked up by the item's id; an error when the quantity is not a number."""
    text = inferred(catalog_recording().events)
    assert text == CATALOG
    passes_its_tests(text, tmp_path)


def test_the_example_of_the_docs_is_what_record_writes() -> None:
    page = (ROOT / "docs" / "record.md").read_text(encoding="utf-8")
    section = page.split("\n## What record writes\n")[1].split("\n## ")[0]
    journal, written = re.findall(r"```(?:json)?\n(.*?)```", section, re.S)[:2]
    events = [json.loads(line) for line in journal.splitlines()]
    assert render_scenario(infer_scenario(events, name="chat"), Path("chat.mock")) == written


def test_pushes_on_a_beat_of_their_own_are_the_route_s_timer() -> None:
    """Ticks that reach every client at once, in step with none of their connects; the
    tests expect none (when they come depends on when the server started), and the two
    clients, who did the same, make one test."""
    recorder = Recorder(proxy=True)
    recorder.connect(0, "c1", "/feed")
    recorder.connect(300, "c2", "/feed")
    for n in range(1, 5):
        recorder.out(n * 1000 + 700, ["c1", "c2"], {"type": "tick", "seq": 40 + n})
    hints: list[str] = []
    assert inferred(recorder.events, hints=hints) == (
        "route /feed {\n"
        "  every 1s {\n"
        '    broadcast { type: "tick", seq: timer.count + 40 }\n'
        "  }\n"
        "}\n"
        "\n"
        'test "rec: client connects to /feed" {\n'
        "  connect client to /feed\n"
        "}\n"
    )


def socketio_like_recording() -> Recorder:
    recorder = Recorder(proxy=True)
    recorder.connect(0, "c1", "/socket.io/", query={"EIO": "4"})
    recorder.out(1, ["c1"], '0{"sid":"61805868231a","pingInterval":500}')
    recorder.send(100, "c1", "40")
    recorder.out(101, ["c1"], '40{"sid":"611a3a32"}')
    recorder.send(200, "c1", {"type": "hello"})
    recorder.out(201, ["c1"], {"type": "welcome", "ref": "a4ef65df9"})
    recorder.send(300, "c1", {"kind": "other"})
    recorder.send(400, "c1", "3")
    return recorder


SOCKETIO_LIKE = r"""route /socket.io/ {
  on connect {
    send "0{\"sid\":\"61805868231a\",\"pingInterval\":500}"
  }

  on message where raw == "40" {
    send "40{\"sid\":\"611a3a32\"}"
  }

  on message type "hello" {
    send { type: "welcome", ref: "a4ef65df9" }
  }

  on message where raw == "3" {}

  on message {}
}

test "rec: client (text, hello, message)" {
  connect client to /socket.io/ query { EIO: "4" }
  client expect matches("^0\\{\"sid\":\"[0-9A-Za-z_-]+\",\"pingInterval\":500\\}$")
  client send "40"
  client expect matches("^40\\{\"sid\":\"[0-9A-Za-z_-]+\"\\}$")
  client send { type: "hello" }
  client expect { type: "welcome", ref: matches("^[0-9A-Za-z_-]+$") }
  client send { kind: "other" }
  client send "3"
}
"""


@pytest.mark.e2e
def test_text_protocols_by_their_text_ids_in_text_matched_and_the_catch_all_last(
    tmp_path: Path,
) -> None:
    """JSON that is not an object (Socket.IO's ``40`` is a number) is told apart by its text;
    objects without the key fall to a catch-all, tried last; an id seen once stays in the
    mock, and the test leaves it open, in a field or inside a text."""
    text = inferred(socketio_like_recording().events)
    assert text == SOCKETIO_LIKE
    passes_its_tests(text, tmp_path)


def test_a_timer_starts_with_what_names_its_pushes_else_with_the_connect() -> None:
    """Connect and message in the same millisecond, both one interval before the first push:
    a subscribe naming the symbol priced starts the prices; a join naming nothing the pings
    say leaves the pings to the connect."""
    recorder = Recorder(proxy=True)
    recorder.connect(0, "c1", "/ticker")
    recorder.send(1, "c1", {"type": "subscribe", "symbol": "ACME"})
    recorder.out(2, ["c1"], {"type": "subscribed"})
    for n in (1, 2, 3):
        recorder.out(1 + 200 * n, ["c1"], {"type": "price", "symbol": "ACME", "n": n})
    recorder.send(650, "c1", {"type": "unsubscribe"})
    recorder.out(651, ["c1"], {"type": "unsubscribed"})
    recorder.connect(1000, "c2", "/chat")
    recorder.send(1001, "c2", {"type": "join", "room": "lobby"})
    for n in (1, 2, 3):
        recorder.out(1000 + 500 * n, ["c2"], {"type": "ping"})
    recorder.close(2700, "c2", by="client")
    text = inferred(recorder.events).split("\n\ntest")[0]
    assert text == (
        "route /ticker {\n"
        '  on message type "subscribe" {\n'
        '    send { type: "subscribed" }\n'
        "    every 200ms as prices {\n"
        '      send { type: "price", symbol: msg.symbol, n: timer.count }\n'
        "    }\n"
        "  }\n"
        "\n"
        '  on message type "unsubscribe" {\n'
        "    cancel prices\n"
        '    send { type: "unsubscribed" }\n'
        "  }\n"
        "}\n"
        "\n"
        "route /chat {\n"
        "  on connect {\n"
        "    every 500ms as pings {\n"
        '      send { type: "ping" }\n'
        "    }\n"
        "  }\n"
        "\n"
        '  on message type "join" {}\n'
        "}"
    )

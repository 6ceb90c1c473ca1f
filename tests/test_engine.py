"""The engine without I/O: events in, effects out, with the example scenarios."""

from __future__ import annotations

import json
import re
import threading

import pytest
from support import SCENARIOS, engine_of, frames
from support import engine_connect as connect

from scenario_engine.errors import ActionError
from scenario_engine.language.ir import Loaded
from scenario_engine.language.limits import MAX_CLOSE_REASON_BYTES, MAX_CONTROL_PAYLOAD
from scenario_engine.language.loader import load_paths, load_source
from scenario_engine.language.mock_frontend import parse_mock
from scenario_engine.language.source import Source
from scenario_engine.runtime.compiler import compile_program
from scenario_engine.runtime.connection import Request, new_connection_id
from scenario_engine.runtime.effects import (
    Accepted,
    Broadcast,
    Close,
    Deferred,
    Effect,
    Log,
    Ping,
    Pong,
    Publish,
    Rejected,
    Send,
    StartTimer,
    StopTimer,
    Unmatched,
)
from scenario_engine.runtime.engine import Engine


@pytest.fixture(scope="module")
def engine() -> Engine:
    loaded, errors, _ = load_paths([SCENARIOS])
    assert errors == []
    return Engine(compile_program(loaded))


def test_routing_with_prefix_params_and_404(engine: Engine) -> None:
    assert engine.resolve("/api/ws/chat") is not None
    assert engine.resolve("/api/ws/chat/") is not None
    assert engine.resolve("/ws/chat") is None
    assert engine.resolve("/echo") is not None
    params_engine = engine_of("route /ws/room/:name/:id { on connect { send params } }")
    resolved = params_engine.resolve("/ws/room/gen%20eral/7")
    assert resolved is not None and resolved[1] == {"name": "gen eral", "id": "7"}
    assert params_engine.resolve("/ws/room/general") is None


def test_chat_rooms_and_include_self(engine: Engine) -> None:
    a, b, c = (connect(engine, "/api/ws/chat") for _ in range(3))
    engine.message(a, json.dumps({"type": "join", "username": "A"}))
    effects = engine.message(b, json.dumps({"type": "join", "username": "B"}))
    assert frames(effects, a) == [{"type": "user-joined", "username": "B"}]
    assert frames(effects, b) == []
    effects = engine.message(a, json.dumps({"type": "message", "username": "A", "message": "hi"}))
    for conn in (a, b):
        (got,) = frames(effects, conn)
        assert got["type"] == "chat-message" and got["message"] == "hi"
        assert isinstance(got["timestamp"], int)
    assert frames(effects, c) == []  # not in the room
    effects = engine.message(c, json.dumps({"type": "typing", "username": "C"}))
    assert frames(effects, a) == frames(effects, b) == [{"type": "typing", "username": "C"}]
    assert frames(effects, c) == []
    effects = engine.close(a, 1000, "")
    assert frames(effects, b) == [{"type": "user-left", "userId": a.id}]
    for conn in (b, c):
        engine.close(conn, 1000, "")
    assert len(engine.rooms.names(a.route.index)) == 0


def test_broadcast_is_encoded_once_for_all_targets(engine: Engine) -> None:
    conns = [connect(engine, "/api/ws/basic") for _ in range(5)]
    effects = engine.message(conns[0], '{"hello": 1}')
    (broadcast,) = [e for e in effects if isinstance(e, Broadcast)]
    assert set(broadcast.targets) == set(conns)
    assert broadcast.data == '{"hello":1}'
    for conn in conns:
        engine.close(conn, 1000, "")


def test_private_auth(engine: Engine) -> None:
    resolved = engine.resolve("/api/ws/private")
    assert resolved is not None
    route, params = resolved

    def outcome(query: dict[str, str]) -> Accepted | Rejected:
        return engine.authenticate(route, Request("/api/ws/private", query), params, "x")[0]

    assert outcome({}) == Rejected("No token provided", code=4001)
    assert outcome({"token": ""}) == Rejected("No token provided", code=4001)
    assert outcome({"token": "eve"}) == Rejected("Invalid token", code=4002)
    assert outcome({"token": "bob-token"}) == Accepted({"user": {"name": "Bob"}})
    conn = engine.open(route, Request("/api/ws/private"), params, {"user": {"name": "Bob"}})
    assert frames(engine.connect(conn), conn) == [
        {"type": "authenticated", "user": {"name": "Bob"}}
    ]


def test_game_flow(engine: Engine) -> None:
    host, guest, idle = (connect(engine, "/api/ws/game") for _ in range(3))
    (created,) = frames(engine.message(host, '{"type": "create-game"}'), host)
    assert created["type"] == "game-created" and created["gameId"].startswith("game-")
    effects = engine.message(guest, json.dumps({"type": "join-game", "gameId": created["gameId"]}))
    assert frames(effects, host) == [{"type": "player-joined", "playerId": guest.id}]
    effects = engine.message(
        host, json.dumps({"type": "game-action", "action": "move", "gameId": created["gameId"]})
    )
    expected = {"type": "game-update", "action": "move", "playerId": host.id}
    assert frames(effects, host) == frames(effects, guest) == [expected]
    assert frames(effects, idle) == []
    assert host.view["rooms"] == sorted(["lobby", created["gameId"]])


def test_echo_keeps_text_and_bytes_unchanged(engine: Engine) -> None:
    conn = connect(engine, "/echo")
    for data in ('{"a":   1}', "not json", b"\x00\xff"):
        assert engine.message(conn, data) == [Send(conn, data)]


def test_binary_without_a_handler_closes_1003(engine: Engine) -> None:
    conn = connect(engine, "/api/ws/chat")
    assert engine.message(conn, b"\x01") == [Close(conn, 1003, "Unsupported data")]
    binary = engine_of("route /ws { on message binary { send raw } }")
    conn = connect(binary, "/ws")
    assert binary.message(conn, b"\x01") == [Send(conn, b"\x01")]
    # Text that no handler takes is not an error: it is reported as unmatched.
    assert binary.message(conn, "text") == [Unmatched(conn, "text")]


def test_handler_error_closes_1011_with_location() -> None:
    engine = engine_of('route /ws {\n  on message {\n    send "ok"\n    send msg.a.b\n  }\n}\n')
    conn = connect(engine, "/ws")
    effects = engine.message(conn, "{}")
    assert effects[0] == Send(conn, "ok")
    assert isinstance(effects[1], Log) and effects[1].error
    assert effects[1].location == "test.mock:4:5"
    assert "cannot read 'b' of null" in effects[1].message
    assert effects[2] == Close(conn, 1011, "Internal error")


def test_on_error_runs_instead_of_1011() -> None:
    engine = engine_of(
        "route /ws {\n  on message { send 1 / msg.n }\n"
        '  on error { send { type: "error", message: error.message } }\n}\n'
    )
    conn = connect(engine, "/ws")
    effects = engine.message(conn, '{"n": 0}')
    assert frames(effects, conn) == [{"type": "error", "message": "division by zero"}]
    assert not any(isinstance(e, Close) for e in effects)


def test_where_if_else_let_ping_close() -> None:
    engine = engine_of("""
route /ws {
  on message where msg.n > 10 {
    let big = msg.n * 2
    if big > 100 { send { big: big } } else if big > 50 { send "medium" } else { ping }
  }
  on message type "bye" { close 4000 "bye ${msg.who}" }
  on message { close }
}
""")
    conn = connect(engine, "/ws")
    assert frames(engine.message(conn, '{"n": 60}'), conn) == [{"big": 120}]
    assert engine.message(conn, '{"n": 30}') == [Send(conn, "medium")]
    assert engine.message(conn, '{"n": 11}') == [Ping(conn, b"")]
    assert engine.message(conn, '{"type": "bye", "who": "me"}') == [Close(conn, 4000, "bye me")]
    other = connect(engine, "/ws")  # a connection being closed takes no more messages
    assert engine.message(other, '{"n": 1}') == [Close(other, 1000, "")]


def test_auth_error_rejects_with_500_and_logs() -> None:
    engine = engine_of("route /ws { auth { accept { x: query.a.b } } }")
    resolved = engine.resolve("/ws")
    assert resolved is not None
    outcome, effects = engine.authenticate(resolved[0], Request("/ws"), {}, "x")
    assert outcome == Rejected("Internal Server Error", status=500)
    assert isinstance(effects[0], Log) and effects[0].location == "test.mock:1:20"


def test_constant_that_fails_at_load_names_its_line() -> None:
    source = Source("c.mock", "let a = 1 / 0\nroute /ws { }\n")
    # check finds it, as an error of the file ...
    _, errors = load_source(source)
    assert [e.format_text() for e in errors] == [
        "c.mock:1:9: error: constant 'a' cannot be evaluated: division by zero\n"
        "    1 | let a = 1 / 0\n"
        "      |         ^^^^^\n"
        "  hint: constants are evaluated once, when the scenario is loaded"
    ]
    # ... and compiling an unvalidated IR says where too.
    ir, source_map, _ = parse_mock(source)
    assert ir is not None
    with pytest.raises(ActionError, match="division by zero") as info:
        compile_program([Loaded(source, ir, source_map)])
    assert info.value.location == "c.mock:1:9"


def test_close_frees_rooms_and_connections(engine: Engine) -> None:
    conns = [connect(engine, "/api/ws/rooms") for _ in range(20)]
    for i, conn in enumerate(conns):
        engine.message(conn, json.dumps({"type": "join-room", "room": f"r{i % 3}"}))
    route = conns[0].route.index
    assert len(engine.rooms.names(route)) == 3
    for conn in conns:
        engine.close(conn, 1000, "")
    assert len(engine.rooms.names(route)) == 0
    assert not engine.connections[route]


CONTROL_FRAMES = """\
route /ws {
  on message type "close" { close 4000 "${msg.text}" }
  on message type "ping" { ping msg.text }
  on message type "pong" { pong msg.text }
}
route /auth {
  auth {
    reject 4001 "${query.r}" if query.r
    reject http 401 "${query.h}" if query.h
  }
}
"""


def test_control_frames_up_to_the_protocols_limits() -> None:
    engine = engine_of(CONTROL_FRAMES)
    conn = connect(engine, "/ws")
    reason = "é" * (MAX_CLOSE_REASON_BYTES // 2) + "x"  # the limit counts bytes of UTF-8
    assert len(reason.encode()) == MAX_CLOSE_REASON_BYTES
    assert engine.message(conn, json.dumps({"type": "close", "text": reason})) == [
        Close(conn, 4000, reason)
    ]
    conn = connect(engine, "/ws")  # a connection being closed takes no more messages
    data = "p" * MAX_CONTROL_PAYLOAD
    assert engine.message(conn, json.dumps({"type": "ping", "text": data})) == [
        Ping(conn, data.encode())
    ]
    assert engine.message(conn, json.dumps({"type": "pong", "text": data})) == [
        Pong(conn, data.encode())
    ]


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("close", "é" * 62, "close reason is 124 bytes; the protocol allows 123"),
        ("ping", "p" * 126, "ping data is 126 bytes; the protocol allows 125"),
        ("pong", "p" * 200, "pong data is 200 bytes; the protocol allows 125"),
    ],
)
def test_a_control_frame_too_long_fails_its_action(kind: str, text: str, message: str) -> None:
    """websockets refuses to send such a frame (ProtocolError, away from the scenario's line):
    the action fails instead, as any failed action does, at its file:line."""
    engine = engine_of(CONTROL_FRAMES)
    conn = connect(engine, "/ws")
    effects = engine.message(conn, json.dumps({"type": kind, "text": text}))
    log, close = effects
    assert isinstance(log, Log) and log.error
    assert log.message == f"handler failed: {message}"
    assert log.location.startswith(f"test.mock:{2 + ['close', 'ping', 'pong'].index(kind)}:")
    assert close == Close(conn, 1011, "Internal error")


def test_auth_close_reason_too_long_rejects_with_500() -> None:
    engine = engine_of(CONTROL_FRAMES)
    resolved = engine.resolve("/auth")
    assert resolved is not None

    def authenticate(query: dict[str, str]) -> tuple[Accepted | Rejected, list[Effect]]:
        return engine.authenticate(resolved[0], Request("/auth", query), {}, "x")

    assert authenticate({"r": "r" * MAX_CLOSE_REASON_BYTES})[0] == Rejected(
        "r" * MAX_CLOSE_REASON_BYTES, code=4001
    )
    outcome, effects = authenticate({"r": "r" * 124})
    assert outcome == Rejected("Internal Server Error", status=500)
    (log,) = effects
    assert isinstance(log, Log) and log.error and log.location.startswith("test.mock:8:")
    assert log.message == "auth failed: close reason is 124 bytes; the protocol allows 123"
    # An HTTP reason goes in the response's body, which has no such limit.
    assert authenticate({"h": "h" * 500})[0] == Rejected("h" * 500, status=401)


def test_leave_rooms_empties_every_room_of_a_connection(engine: Engine) -> None:
    conns = [connect(engine, "/api/ws/rooms") for _ in range(2)]
    for conn in conns:
        for room in ("a", "b"):
            engine.message(conn, json.dumps({"type": "join-room", "room": room}))
    route = conns[0].route.index
    engine.leave_rooms(conns[0])
    assert conns[0].rooms == set()
    assert engine.rooms.members(route, "a") == engine.rooms.members(route, "b") == {conns[1]}
    for conn in conns:
        engine.close(conn, 1000, "")
    assert len(engine.rooms.names(route)) == 0


def test_connection_ids_are_twelve_hex_digits_and_distinct_across_threads() -> None:
    # Servers run in threads of their own (runtime/background): ids drawn at once in several
    # threads must neither fail nor repeat, past a block of the OS's random bytes.
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_connection_id() for _ in range(3_000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [conn_id for into in drawn for conn_id in into]
    assert len(set(ids)) == len(ids) == 12_000
    assert all(re.fullmatch(r"[0-9a-f]{12}", conn_id) for conn_id in ids)


# ---- a state and broadcasts shared with other processes (a backplane) -------------------------


def shared_engine(text: str) -> Engine:
    loaded, errors = load_source(Source("test.mock", text))
    assert loaded is not None and errors == []
    return Engine(compile_program([loaded]), shared=True)


def test_a_shared_engine_publishes_every_broadcast_beside_its_own_delivery() -> None:
    engine = shared_engine(
        """route /ws { on message type "join" { join msg.room }
                      on message type "say" { broadcast msg.text to msg.rooms }
                      on message type "all" { broadcast msg.text include self } }"""
    )
    a, b = connect(engine, "/ws"), connect(engine, "/ws")
    engine.message(b, json.dumps({"type": "join", "room": "r"}))
    effects = engine.message(a, json.dumps({"type": "say", "rooms": ["r", "s"], "text": "hi"}))
    assert effects == [Broadcast("hi", [b]), Publish("hi", "/ws", ["r", "s"])]
    # No member here: the other processes may have some.
    effects = engine.message(a, json.dumps({"type": "say", "rooms": "t", "text": "hi"}))
    assert effects == [Publish("hi", "/ws", ["t"])]
    assert engine.message(a, json.dumps({"type": "say", "rooms": [], "text": "hi"})) == []
    effects = engine.message(a, json.dumps({"type": "all", "text": "hi"}))
    assert effects[1] == Publish("hi", "/ws", None)
    assert isinstance(effects[0], Broadcast) and set(effects[0].targets) == {a, b}


AUCTION = """
state { highest: 0 }
route /ws {
  on connect { send { highest: state.highest } }
  on message type "name" { set session.name = msg.name  send "named" }
  on message type "bid" where msg.amount > state.highest {
    set state.highest = msg.amount
    send "accepted"
  }
  on message type "bid" { send "refused" }
  every 1s { log "tick" }
}
"""


def run(effects: list[Effect]) -> list[Effect]:
    """Run a deferred event, as the connection layer does once it holds the state."""
    (deferred,) = effects
    assert isinstance(deferred, Deferred) and deferred.scope == "test.mock"
    return deferred.run()


def test_a_shared_engine_defers_what_reads_or_writes_state_in_each_connections_order() -> None:
    engine = shared_engine(AUCTION)
    route, _ = engine.resolve("/ws") or (None, None)
    assert route is not None
    request = Request("/ws", {}, {}, "127.0.0.1")
    conn = engine.open(route, request, {}, {})
    connected = engine.connect(conn)  # on connect reads state: it waits for it
    named = engine.message(conn, json.dumps({"type": "name", "name": "Ann"}))  # waits behind
    assert conn.deferred == 2 and conn.session.data == {}
    assert frames(run(connected), conn) == [{"highest": 0}]
    assert [e.data for e in run(named) if isinstance(e, Send)] == ["named"]
    assert conn.deferred == 0 and conn.session.data == {"name": "Ann"}
    # Nothing waits any more: what does not read the state runs at once.
    assert [type(e) for e in engine.message(conn, json.dumps({"type": "name", "name": "A"}))] == [
        Send
    ]
    # A guard that reads the state makes every handler of the message's type wait.
    bid = engine.message(conn, json.dumps({"type": "bid", "amount": 5}))
    assert [e.data for e in run(bid) if isinstance(e, Send)] == ["accepted"]
    assert engine.state.data("test.mock") == {"highest": 5}
    # A close waits behind the connection's deferred events, then runs.
    engine.message(conn, json.dumps({"type": "bid", "amount": 7}))
    assert conn.deferred == 1
    (closing,) = engine.close(conn, 1000, "")
    assert isinstance(closing, Deferred) and conn in engine.connections[route.index]


def test_an_on_error_that_reads_state_makes_every_event_of_its_route_wait() -> None:
    engine = shared_engine(
        """route /ws { on message { send msg.a.b }
                      on error { send { error: error.message, highest: state.highest } } }"""
    )
    conn = connect(engine, "/ws")
    effects = run(engine.message(conn, json.dumps({"x": 1})))
    assert frames(effects, conn)[0]["highest"] is None


def test_route_timers_of_a_shared_engine_run_only_where_it_leads() -> None:
    engine = shared_engine(AUCTION)
    assert engine.start() == [] and not engine.leading
    (start,) = engine.lead(True)
    assert isinstance(start, StartTimer)
    timer = start.timer
    assert engine.lead(True) == []
    assert [type(e) for e in engine.fire(timer)] == [Log]  # its block does not read the state
    (stop,) = engine.lead(False)
    assert isinstance(stop, StopTimer) and stop.timer is timer and not timer.alive
    assert engine.fire(timer) == []


def test_a_timer_or_a_wait_that_reads_state_is_deferred_one_run_at_a_time() -> None:
    engine = shared_engine(
        """state { n: 0 }
           route /ws {
             every 1s { set state.n = state.n + 1 }
             on message { wait 1s  set state.n = state.n + 10 }
           }"""
    )
    (start,) = engine.lead(True)
    timer = start.timer
    first = engine.fire(timer)
    assert engine.fire(timer) == []  # the run waiting for the state: this tick is skipped
    run(first)
    assert engine.state.data("test.mock") == {"n": 1}
    conn = connect(engine, "/ws")
    # The whole handler reads the state (after its wait): its first part waits for it too.
    (waits,) = [e for e in run(engine.message(conn, "go")) if isinstance(e, StartTimer)]
    resumed = engine.fire(waits.timer)
    assert isinstance(resumed[0], Deferred) and engine.state.data("test.mock") == {"n": 1}
    run(resumed)
    assert engine.state.data("test.mock") == {"n": 11}

"""Timers, waits, session and state in the engine, with time driven by hand.

The engine does no I/O: it asks for timers with ``StartTimer`` effects and runs them when the
test calls ``fire`` — exactly what the server's clock does, minus the waiting.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import engine_connect as connect
from support import engine_of, frames

from scenario_engine.runtime.connection import Connection, Request, Timer
from scenario_engine.runtime.effects import (
    Accepted,
    AuthWait,
    Close,
    Drop,
    Effect,
    Log,
    Send,
    StartTimer,
    StopTimer,
    Unmatched,
)
from scenario_engine.runtime.engine import Engine


def started(effects: list[Effect]) -> list[Timer]:
    return [e.timer for e in effects if isinstance(e, StartTimer)]


def stopped(effects: list[Effect]) -> list[Timer]:
    return [e.timer for e in effects if isinstance(e, StopTimer)]


def texts(effects: list[Effect], conn: Connection) -> list[Any]:
    return [e.data for e in effects if isinstance(e, Send) and e.conn is conn]


TICKER = """
route /ticker {
  on message type "subscribe" {
    set session.symbol = msg.symbol
    every 500ms times 3 as prices {
      send { symbol: session.symbol, n: timer.count, asked: msg.symbol }
    }
  }
  on message type "unsubscribe" { cancel prices }
}
"""


def test_every_runs_its_block_each_interval_with_the_count_and_stops_after_times() -> None:
    engine = engine_of(TICKER)
    conn = connect(engine, "/ticker")
    effects = engine.message(conn, '{"type": "subscribe", "symbol": "ACME"}')
    (timer,) = started(effects)
    assert timer.delay == timer.interval == 0.5
    # The block sees msg as it was when the timer started, whatever comes later.
    assert engine.message(conn, '{"type": "other", "symbol": "NOPE"}') == [
        Unmatched(conn, '{"type": "other", "symbol": "NOPE"}')
    ]
    assert frames(engine.fire(timer), conn) == [{"symbol": "ACME", "n": 1, "asked": "ACME"}]
    assert frames(engine.fire(timer), conn) == [{"symbol": "ACME", "n": 2, "asked": "ACME"}]
    last = engine.fire(timer)
    assert frames(last, conn) == [{"symbol": "ACME", "n": 3, "asked": "ACME"}]
    assert stopped(last) == [timer] and not timer.alive
    assert engine.fire(timer) == []  # a stopped timer does nothing, even if fired


def test_a_timer_started_again_under_its_name_replaces_itself_and_cancel_stops_it() -> None:
    engine = engine_of(TICKER)
    conn = connect(engine, "/ticker")
    (first,) = started(engine.message(conn, '{"type": "subscribe", "symbol": "A"}'))
    again = engine.message(conn, '{"type": "subscribe", "symbol": "B"}')
    assert stopped(again) == [first] and not first.alive
    (second,) = started(again)
    assert list(conn.timers.values()) == [second]
    assert frames(engine.fire(second), conn)[0]["symbol"] == "B"
    assert stopped(engine.message(conn, '{"type": "unsubscribe"}')) == [second]
    assert conn.timers == {}
    # Cancelling a name that is not running does nothing.
    assert engine.message(conn, '{"type": "unsubscribe"}') == []


def test_after_runs_once_and_timer_names_may_be_expressions() -> None:
    engine = engine_of("""
route /ws {
  on message type "sub" {
    after 2s as "sub-${msg.id}" { send "done ${msg.id}" }
  }
  on message type "stop" { cancel "sub-${msg.id}" }
}
""")
    conn = connect(engine, "/ws")
    (one,) = started(engine.message(conn, '{"type": "sub", "id": 1}'))
    (two,) = started(engine.message(conn, '{"type": "sub", "id": 2}'))
    assert (one.name, two.name, one.interval) == ("sub-1", "sub-2", None)
    assert stopped(engine.message(conn, '{"type": "stop", "id": 1}')) == [one]
    effects = engine.fire(two)
    assert texts(effects, conn) == ["done 2"] and stopped(effects) == [two]


def test_wait_runs_the_rest_of_the_handler_later_and_others_meanwhile() -> None:
    engine = engine_of("""
route /ws {
  on message type "slow" {
    let n = msg.n
    send "first ${n}"
    wait 1s
    send "then ${n}"
    if n > 0 { wait 20ms  send "last ${n}" }
  }
  on message type "fast" { send "fast" }
}
""")
    conn = connect(engine, "/ws")
    effects = engine.message(conn, '{"type": "slow", "n": 1}')
    assert texts(effects, conn) == ["first 1"]
    (waiting,) = started(effects)
    assert waiting.delay == 1.0
    # The connection's next messages are handled meanwhile, and its lets do not leak.
    assert texts(engine.message(conn, '{"type": "slow", "n": 2}'), conn) == ["first 2"]
    assert texts(engine.message(conn, '{"type": "fast"}'), conn) == ["fast"]
    resumed = engine.fire(waiting)
    assert texts(resumed, conn) == ["then 1"]
    assert started(resumed) == [waiting] and waiting.delay == 0.02  # the wait inside the if
    finished = engine.fire(waiting)
    assert texts(finished, conn) == ["last 1"] and stopped(finished) == [waiting]
    assert waiting not in conn.waits and len(conn.waits) == 1  # n=2 still waits


def test_runs_of_one_timer_never_overlap() -> None:
    engine = engine_of("""
route /ws {
  on connect { every 100ms { send "start ${timer.count}"  wait 250ms  send "end" } }
}
""")
    effects: list[Effect] = []
    conn = connect(engine, "/ws", effects=effects)
    (timer,) = started(effects)
    first = engine.fire(timer)
    (waiting,) = started(first)
    assert texts(first, conn) == ["start 1"] and timer.running
    assert engine.fire(timer) == [] and engine.fire(timer) == []  # ticks during the wait
    assert texts(engine.fire(waiting), conn) == ["end"] and not timer.running
    assert texts(engine.fire(timer), conn) == ["start 2"]


def test_a_connection_holds_a_bounded_number_of_timers() -> None:
    engine = engine_of("""
route /ws {
  max timers 3
  on message { every 1s { log "t" } }
  on error { send error.message }
}
""")
    conn = connect(engine, "/ws")
    for _ in range(3):
        assert len(started(engine.message(conn, "go"))) == 1
    effects = engine.message(conn, "go")
    assert started(effects) == []
    (message,) = texts(effects, conn)
    assert "3 timers and waits already" in message and "max timers" in message


def test_closing_stops_every_timer_and_wait_of_the_connection() -> None:
    engine = engine_of("""
route /ws {
  on connect { every 1s as a { log "a" }  after 5s { log "b" } }
  on message { wait 1s  send "late" }
}
""")
    effects: list[Effect] = []
    conn = connect(engine, "/ws", effects=effects)
    timers = started(effects) + started(engine.message(conn, "x"))
    assert len(timers) == 3
    closed = engine.close(conn, 1000, "")
    assert set(stopped(closed)) == set(timers)
    assert all(not t.alive for t in timers)
    assert all(engine.fire(t) == [] for t in timers)


def test_route_timers_run_from_start_up_for_every_connection_of_the_route() -> None:
    engine = engine_of("""
state { ticks: 0 }
route /ws {
  every 1s times 2 {
    set state.ticks = state.ticks + 1
    broadcast { tick: state.ticks, n: timer.count }
  }
}
""")
    (timer,) = started(engine.start())
    a, b = connect(engine, "/ws"), connect(engine, "/ws")
    effects = engine.fire(timer)
    assert frames(effects, a) == frames(effects, b) == [{"tick": 1, "n": 1}]
    effects = engine.fire(timer)
    assert frames(effects, a) == [{"tick": 2, "n": 2}] and stopped(effects) == [timer]


AUCTION = """
state { highest: 0, bidder: null, bids: [] }
route /auction {
  on message type "name" { set session.name = msg.name }
  on message type "bid" {
    if msg.amount > state.highest {
      set state.highest = msg.amount
      set state.bidder = session.name ?? conn.id
      set state.bids[len(state.bids)] = msg.amount
      broadcast { type: "new-high", amount: msg.amount, bidder: state.bidder } include self
    } else {
      send { type: "error", message: "bid must exceed ${state.highest}" }
    }
  }
}
"""


def test_state_is_shared_by_the_connections_of_a_file_and_session_is_per_connection() -> None:
    engine = engine_of(AUCTION)
    ann, bob = connect(engine, "/auction"), connect(engine, "/auction")
    engine.message(ann, '{"type": "name", "name": "Ann"}')
    effects = engine.message(ann, '{"type": "bid", "amount": 10}')
    assert frames(effects, bob) == [{"type": "new-high", "amount": 10, "bidder": "Ann"}]
    assert frames(engine.message(bob, '{"type": "bid", "amount": 5}'), bob) == [
        {"type": "error", "message": "bid must exceed 10"}
    ]
    effects = engine.message(bob, '{"type": "bid", "amount": 12}')
    assert frames(effects, ann) == [{"type": "new-high", "amount": 12, "bidder": bob.id}]
    assert engine.state.data("test.mock") == {"highest": 12, "bidder": bob.id, "bids": [10, 12]}
    assert ann.session.data == {"name": "Ann"} and bob.session.data == {}


def test_set_creates_objects_on_the_way_and_unset_removes() -> None:
    engine = engine_of("""
route /ws {
  on message type "set" { set state.users[msg.id].profile.name = msg.name }
  on message type "unset" { unset state.users[msg.id]  unset state.nothing.here }
  on message type "items" { set session.items = [1, 2]  set session.items[2] = 3 }
  on message type "bad" { set session.items[9] = 0 }
  on error { send error.message }
}
""")
    conn = connect(engine, "/ws")
    engine.message(conn, '{"type": "set", "id": 7, "name": "Ann"}')
    assert engine.state.data("test.mock") == {"users": {"7": {"profile": {"name": "Ann"}}}}
    engine.message(conn, '{"type": "unset", "id": 7}')
    assert engine.state.data("test.mock") == {"users": {}}
    engine.message(conn, '{"type": "items"}')
    assert conn.session.data == {"items": [1, 2, 3]}
    (error,) = texts(engine.message(conn, '{"type": "bad"}'), conn)
    assert error == "index 9 is out of session.items, which has 3 items"


def test_a_set_past_the_session_cap_fails_at_its_line_and_changes_nothing() -> None:
    engine = engine_of("""
route /ws {
  max session 1KB
  on message { set session.data = msg }
}
""")
    conn = connect(engine, "/ws")
    engine.message(conn, json.dumps({"small": "x" * 100}))
    kept = json.loads(json.dumps(conn.session.data))
    effects = engine.message(conn, json.dumps({"big": "x" * 2000}))
    (log,) = [e for e in effects if isinstance(e, Log)]
    assert log.location == "test.mock:4:16" and "larger than its 1,024 characters" in log.message
    assert effects[-1] == Close(conn, 1011, "Internal error")
    assert conn.session.data == kept


def test_a_guard_that_cannot_be_read_does_not_match() -> None:
    engine = engine_of("""
route /ws {
  on message where msg.op == 1 { send "op 1" }
  on message { send "other" }
}
""")
    conn = connect(engine, "/ws")
    assert texts(engine.message(conn, "hello"), conn) == ["other"]
    assert texts(engine.message(conn, '{"op": 1}'), conn) == ["op 1"]


def test_text_no_handler_takes_is_reported_unmatched() -> None:
    engine = engine_of('route /ws { on message type "a" { send "a" } }')
    conn = connect(engine, "/ws")
    assert engine.message(conn, '{"type": "b"}') == [Unmatched(conn, '{"type": "b"}')]
    assert engine.message(conn, "plain") == [Unmatched(conn, "plain")]


def test_drop_and_server_close_codes() -> None:
    engine = engine_of("""
route /ws {
  on message type "drop" { drop }
  on message type "flaky" {
    set session.n = (session.n ?? 0) + 1
    if session.n == 3 { close 1011 "flaky" }
  }
}
""")
    conn = connect(engine, "/ws")
    assert engine.message(conn, '{"type": "drop"}') == [Drop(conn)]
    assert engine.message(conn, '{"type": "flaky"}') == []  # dropping: nothing more is taken
    other = connect(engine, "/ws")
    assert engine.message(other, '{"type": "flaky"}') == []
    assert engine.message(other, '{"type": "flaky"}') == []
    assert engine.message(other, '{"type": "flaky"}') == [Close(other, 1011, "flaky")]


def test_rooms_per_connection_are_bounded() -> None:
    engine = engine_of("""
route /ws {
  max rooms 2
  on message { join msg }
  on error { send error.message }
}
""")
    conn = connect(engine, "/ws")
    engine.message(conn, '"a"')
    engine.message(conn, '"b"')
    assert engine.message(conn, '"b"') == []  # already in it: no new room
    (error,) = texts(engine.message(conn, '"c"'), conn)
    assert "in 2 rooms already" in error and conn.rooms == {"a", "b"}


def test_auth_may_wait_before_it_answers() -> None:
    engine = engine_of("""
route /ws {
  auth {
    wait 200ms
    reject 4001 "no" unless query.ok
    wait 50ms
    accept { ok: true }
  }
}
""")
    resolved = engine.resolve("/ws")
    assert resolved is not None
    route = resolved[0]
    verdict, _ = engine.authenticate(route, Request("/ws", {"ok": "1"}), {}, "c")
    assert isinstance(verdict, AuthWait) and verdict.delay == 0.2
    verdict, _ = engine.continue_auth(verdict)
    assert isinstance(verdict, AuthWait) and verdict.delay == 0.05
    assert engine.continue_auth(verdict)[0] == Accepted({"ok": True})


def test_delays_from_expressions_are_checked_when_they_start() -> None:
    engine = engine_of("""
let pingInterval = 250
route /ws {
  on connect { every pingInterval { send "2" } }
  on message { after msg.delay { send "late" } }
  on error { send error.message }
}
""")
    effects: list[Effect] = []
    conn = connect(engine, "/ws", effects=effects)
    assert started(effects)[0].interval == 0.25
    assert started(engine.message(conn, '{"delay": "1.5s"}'))[0].delay == 1.5
    (error,) = texts(engine.message(conn, '{"delay": 1}'), conn)
    assert error == "a delay of 1 is out of range: from 10ms to 30 days"


def test_the_subprotocol_selected_is_conn_subprotocol() -> None:
    engine = engine_of('route /ws { on connect { send conn.subprotocol ?? "none" } }')
    effects: list[Effect] = []
    conn = connect(engine, "/ws", effects=effects, subprotocol="graphql-transport-ws")
    assert texts(effects, conn) == ["graphql-transport-ws"]


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": 1e999999}', "[Infinity]", "-Infinity"])
def test_nan_and_infinity_are_not_json_messages(text: str) -> None:
    engine = engine_of("route /ws { on message { send msg } }")
    conn = connect(engine, "/ws")
    # Not JSON, so the message is its text, and it goes back as that text.
    assert engine.message(conn, text) == [Send(conn, text)]


def test_a_value_that_would_encode_to_nan_fails_at_its_line() -> None:
    engine: Engine = engine_of("route /ws {\n  on message { send { x: msg.n * 1e308 } }\n}\n")
    conn = connect(engine, "/ws")
    effects = engine.message(conn, '{"n": 10}')
    (log,) = [e for e in effects if isinstance(e, Log)]
    assert log.location == "test.mock:2:16" and "not JSON numbers" in log.message

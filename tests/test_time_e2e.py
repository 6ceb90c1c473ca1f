"""Timers, waits, latency, faults and subprotocols over real sockets, with real clients.

The engine's own tests (test_time_and_state.py) drive time by hand; these check that the
server's clock runs what the engine asks, on time and in order, and that the wire says what the
design promises (a drop is a 1006, a required subprotocol an HTTP 400).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from support import (
    BOUND,
    UNIT,
    async_test,
    closed,
    handshake_status,
    recv,
    recv_json,
    serving,
    wait_until_async,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

pytestmark = pytest.mark.e2e

TICKER = """
route /ticker {
  on message type "subscribe" {
    every 100ms times 3 as prices { send { n: timer.count, symbol: msg.symbol } }
  }
  on message type "unsubscribe" { cancel prices  send "stopped" }
}
"""


@async_test
async def test_every_sends_on_its_interval_and_stops_after_times() -> None:
    async with serving(TICKER) as server, connect(server.url("/ticker")) as ws:
        started = time.monotonic()
        await ws.send(json.dumps({"type": "subscribe", "symbol": "ACME"}))
        arrivals = []
        for n in (1, 2, 3):
            assert await recv_json(ws) == {"n": n, "symbol": "ACME"}
            arrivals.append(time.monotonic() - started)
        # First one interval after the start, then one per interval (with slack for a busy
        # machine, never early).
        assert arrivals[0] >= 0.1 and arrivals[2] >= 0.3
        assert arrivals[2] < 0.3 + BOUND
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3 * UNIT)
        # Done: the server keeps no timer for it.
        assert len(server._timers) == 0


@async_test
async def test_cancel_stops_a_running_timer_and_closing_forgets_every_timer() -> None:
    async with serving(TICKER) as server:
        async with connect(server.url("/ticker")) as ws:
            await ws.send(json.dumps({"type": "subscribe", "symbol": "X"}))
            assert (await recv_json(ws))["n"] == 1
            await ws.send(json.dumps({"type": "unsubscribe"}))
            assert await recv(ws) == "stopped"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3 * UNIT)
            await ws.send(json.dumps({"type": "subscribe", "symbol": "Y"}))
            assert await wait_until_async(lambda: len(server._timers) == 1, BOUND)
        assert await wait_until_async(lambda: len(server._timers) == 0, BOUND)


@async_test
async def test_wait_holds_up_neither_the_connection_nor_the_others() -> None:
    scenario = """
route /ws {
  on message type "slow" { send "first"  wait 400ms  send "then" }
  on message type "fast" { send "fast" }
}
"""
    async with (
        serving(scenario) as server,
        connect(server.url("/ws")) as ws,
        connect(server.url("/ws")) as other,
    ):
        started = time.monotonic()
        await ws.send(json.dumps({"type": "slow"}))
        assert await recv(ws) == "first"
        await ws.send(json.dumps({"type": "fast"}))
        await other.send(json.dumps({"type": "fast"}))
        assert await recv(ws) == "fast"
        assert await recv(other) == "fast"
        assert time.monotonic() - started < 0.4
        assert await recv(ws) == "then"
        assert time.monotonic() - started >= 0.4


@async_test
async def test_after_on_connect_and_route_timers_reach_the_clients() -> None:
    scenario = """
state { ticks: 0 }
route /ws {
  every 150ms { set state.ticks = state.ticks + 1  broadcast { tick: state.ticks } }
  on connect { after 50ms { send { type: "hello", id: conn.id } } }
}
"""
    async with serving(scenario) as server, connect(server.url("/ws")) as ws:
        hello = await recv_json(ws, skip=lambda m: "tick" in m)
        assert hello["type"] == "hello"
        first = (await recv_json(ws))["tick"]
        assert (await recv_json(ws))["tick"] == first + 1


@async_test
async def test_latency_delays_every_message_and_keeps_their_order() -> None:
    scenario = """
route /slow {
  latency 50ms..150ms
  on message { send msg  send msg + 1 }
}
"""
    async with serving(scenario) as server, connect(server.url("/slow")) as ws:
        started = time.monotonic()
        for n in range(0, 20, 2):
            await ws.send(str(n))
        received = [json.loads(await recv(ws)) for _ in range(20)]
        assert received == list(range(20))
        assert time.monotonic() - started >= 0.05


@async_test
async def test_drop_cuts_the_connection_without_a_close_frame() -> None:
    scenario = """
route /ws {
  latency 20ms
  on message type "drop" { send "bye"  drop }
  on message { send "still here" }
}
"""
    async with serving(scenario) as server:
        async with connect(server.url("/ws")) as ws, connect(server.url("/ws")) as other:
            await ws.send(json.dumps({"type": "drop"}))
            # The message sent before the drop arrives first: the drop waits for the latency.
            assert await recv(ws) == "bye"
            assert await closed(ws) == (1006, "")
            await other.send("x")
            assert await recv(other) == "still here"
        event = server.journal.wait_for("close", timeout=BOUND)
        assert event["code"] == 1006


@async_test
async def test_the_scenario_closes_with_any_code_a_server_may_send() -> None:
    scenario = """
route /flaky {
  on message {
    set session.n = (session.n ?? 0) + 1
    if session.n == 3 { close 1011 "flaky backend" } else { send "ok ${session.n}" }
  }
}
"""
    async with serving(scenario) as server, connect(server.url("/flaky")) as ws:
        for n in (1, 2):
            await ws.send("hit")
            assert await recv(ws) == f"ok {n}"
        await ws.send("hit")
        assert await closed(ws) == (1011, "flaky backend")


SUBPROTOCOLS = """
route /graphql {
  subprotocols ["graphql-transport-ws", "graphql-ws"] required
  on connect { send conn.subprotocol }
}
route /optional {
  subprotocols ["chat"]
  on connect { send conn.subprotocol ?? "none" }
}
"""


@async_test
async def test_the_first_protocol_of_the_clients_offer_that_the_route_lists_is_selected() -> None:
    async with serving(SUBPROTOCOLS) as server:
        offer = ["unknown", "graphql-ws", "graphql-transport-ws"]
        async with connect(server.url("/graphql"), subprotocols=offer) as ws:  # type: ignore[arg-type]
            assert ws.subprotocol == "graphql-ws"
            assert await recv(ws) == "graphql-ws"
        async with connect(server.url("/optional")) as ws:
            assert ws.subprotocol is None
            assert await recv(ws) == "none"
        async with connect(server.url("/optional"), subprotocols=["chat"]) as ws:  # type: ignore[list-item]
            assert await recv(ws) == "chat"


@async_test
async def test_a_required_subprotocol_refuses_the_handshake_with_400() -> None:
    async with serving(SUBPROTOCOLS) as server:
        refused = await handshake_status(server.url("/graphql"))
        assert refused.response.status_code == 400
        body = (refused.response.body or b"").decode()
        assert "graphql-transport-ws, graphql-ws" in body and "none offered" in body
        refused = await handshake_status(server.url("/graphql"), subprotocols=["soap"])  # type: ignore[list-item]
        assert refused.response.status_code == 400


@async_test
async def test_auth_may_delay_the_handshake_or_let_it_time_out() -> None:
    scenario = """
route /slow { auth { wait 300ms  accept {} } on connect { send "in" } }
route /hung { auth { wait 10s  accept {} } }
"""
    async with serving(scenario, open_timeout=0.5 * UNIT) as server:
        started = time.monotonic()
        async with connect(server.url("/slow")) as ws:
            assert time.monotonic() - started >= 0.3
            assert await recv(ws) == "in"
        with pytest.raises((InvalidHandshake, ConnectionClosed, TimeoutError, OSError)):
            async with connect(server.url("/hung"), open_timeout=BOUND):
                pass


@async_test
async def test_a_message_no_handler_takes_is_journaled_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scenario = 'route /ws { on message type "known" { send "ok" } }'
    with caplog.at_level("INFO", logger="scenario_engine"):
        async with serving(scenario) as server, connect(server.url("/ws")) as ws:
            await ws.send('{"type": "unknown", "x": 1}')
            await ws.send(json.dumps({"type": "known"}))
            assert await recv(ws) == "ok"
            (event,) = [e for e in server.journal.events() if e["event"] == "unmatched"]
            assert event["text"] == '{"type": "unknown", "x": 1}'
    assert any(
        "unmatched" in r.getMessage() and "/ws" in r.getMessage() and "unknown" in r.getMessage()
        for r in caplog.records
    )


@async_test
async def test_past_its_timer_bound_a_connection_fails_at_the_line_others_go_on() -> None:
    scenario = """
route /ws {
  max timers 2
  on message { every 10s { log "t" }  send "started" }
}
"""
    async with (
        serving(scenario) as server,
        connect(server.url("/ws")) as ws,
        connect(server.url("/ws")) as other,
    ):
        for _ in range(2):
            await ws.send("go")
            assert await recv(ws) == "started"
        await ws.send("go")
        assert await closed(ws) == (1011, "Internal error")
        error = server.journal.wait_for("error", timeout=BOUND)
        assert error["location"] == "test.mock:4:16" and "max timers" in error["message"]
        await other.send("go")
        assert await recv(other) == "started"


@async_test
async def test_what_latency_holds_back_is_bounded_like_any_queued_output() -> None:
    scenario = "route /held { latency 2s  on message { send raw } }"
    async with serving(scenario) as server, connect(server.url("/held"), max_size=None) as ws:
        chunk = "x" * (128 * 1024)
        for _ in range(10):  # 1.25 MiB held back: past the 1 MiB a client may have queued
            await ws.send(chunk)
        assert await closed(ws, within=BOUND) == (1008, "Client too slow")

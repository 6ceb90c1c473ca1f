"""The proof with real clients of real protocols: the npm `graphql-ws` client (6.4.2) and
`socket.io-client` (4.8.4, WebSocket transport only) against `scenario-engine serve` of
scenarios/, through the drivers in tests/node (their header comments document them).

The drivers print what the client saw as JSON lines, the last one a summary; the tests assert
on those. They run without retries or reconnection, so a failure shows at once, and every Node
run is bounded twice: by the driver's own `timeoutMs` and by the process timeout here.

Needs node and the packages of tests/node (`npm ci --prefix tests/node`, which CI runs).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import (
    BOUND,
    ROOT,
    SCENARIOS,
    UNIT,
    ServedMock,
    async_test,
    needs,
    recv,
    run_process,
    start_mock,
)
from websockets.asyncio.client import ClientConnection, connect

NODE_DIR = Path(__file__).parent / "node"
GRAPHQL = NODE_DIR / "graphql_ws_client.mjs"
SOCKETIO = NODE_DIR / "socketio_client.mjs"

pytestmark = [
    pytest.mark.e2e,
    needs(
        shutil.which("node") is None
        or not all(
            (NODE_DIR / "node_modules" / package).exists()
            for package in ("ws", "graphql-ws", "socket.io-client")
        ),
        reason="needs node and `npm ci --prefix tests/node`",
    ),
]

#: What a driver may take by its own clock (its `timeoutMs`), and the process on top of that.
DRIVER_MS = int(10_000 * UNIT)
PROCESS_TIMEOUT = 30 * UNIT

#: A GraphQL route that selects no subprotocol (none is listed): a client offering one must
#: refuse the connection.
NO_SUBPROTOCOL = """
route /graphql-no-subprotocol {
  on message type "connection_init" { send { type: "connection_ack" } }
}
"""

#: scenarios/socketio.mock's ping interval and timeout, in milliseconds.
PING_INTERVAL = 500
PING_TIMEOUT = 500
#: The URL socket.io-client opens for the main namespace with transports ["websocket"].
ENGINE_IO_PATH = "/socket.io/?EIO=4&transport=websocket"
GREETINGS = [{"data": {"greetings": g}} for g in ("Hi", "Bonjour", "Hola")]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedMock]:
    """Every example of scenarios/ served together, plus a route without subprotocols."""
    extra = tmp_path_factory.mktemp("routes") / "no-subprotocol.mock"
    extra.write_text(NO_SUBPROTOCOL, encoding="utf-8")
    mock = start_mock(SCENARIOS, extra)
    yield mock
    mock.stop()


@dataclass
class DriverRun:
    """What a driver printed: its observations, in order, and its summary."""

    returncode: int
    observations: list[dict[str, Any]]
    summary: dict[str, Any]
    output: str

    def seen(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.observations if o["obs"] == kind]


def parse_driver_output(returncode: int, stdout: str, stderr: str) -> DriverRun:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    output = f"exit {returncode}\n{stdout}\n{stderr}"
    assert lines and "summary" in lines[-1], f"the driver printed no summary:\n{output}"
    return DriverRun(returncode, [x for x in lines if "obs" in x], lines[-1]["summary"], output)


def drive(script: Path, url: str, scenario: str, options: dict[str, Any]) -> DriverRun:
    """Run a driver to its end (bounded), its options with the driver's own timeout."""
    options = {"timeoutMs": DRIVER_MS, **options}
    result = run_process(
        "node", script, url, scenario, json.dumps(options), timeout=PROCESS_TIMEOUT
    )
    return parse_driver_output(result.returncode, result.stdout, result.stderr)


def passed(run: DriverRun) -> DriverRun:
    assert run.returncode == 0 and run.summary["ok"] is True, run.output
    return run


# ---- graphql-ws ------------------------------------------------------------------------------


def test_graphql_ws_subscription_yields_its_next_results_and_completes(
    served: ServedMock,
) -> None:
    run = passed(drive(GRAPHQL, served.url("/graphql"), "subscribe", {"expectCount": 3}))
    assert run.summary["payloads"] == GREETINGS and run.summary["error"] is None
    assert run.seen("opened")[0]["protocol"] == "graphql-transport-ws"
    assert run.seen("connected")[0]["payload"] is None
    assert [o["payload"] for o in run.seen("next")] == GREETINGS
    assert len(run.seen("complete")) == 1
    # The lazy client closes once its last subscription is over.
    (closed,) = run.seen("closed")
    assert (closed["code"], closed["reason"]) == (1000, "Normal Closure")


def test_graphql_ws_connection_params_and_a_client_chosen_id(served: ServedMock) -> None:
    options = {"connectionParams": {"token": "abc"}, "id": "q1", "expectCount": 3}
    run = passed(drive(GRAPHQL, served.url("/graphql"), "subscribe", options))
    assert run.summary["payloads"] == GREETINGS


@pytest.mark.parametrize(
    ("scenario", "options", "code", "reason"),
    [
        ("subscribe-before-ack", {}, 4401, "Unauthorized"),
        ("duplicate-id", {"id": "dup-1"}, 4409, "Subscriber for dup-1 already exists"),
        ("second-init", {}, 4429, "Too many initialisation requests"),
        ("bad-message", {}, 4400, "Invalid message received"),
        ("bad-message", {"init": True, "raw": "not json"}, 4400, "Invalid message received"),
        (
            "bad-message",
            {
                "init": True,
                "raw": '{"id":"1","type":"next","payload":{}}',
                "expect": {"code": 4500, "reason": "Unexpected message of type next received"},
            },
            4500,
            "Unexpected message of type next received",
        ),
    ],
    ids=[
        "4401-subscribe-before-ack",
        "4409-duplicate-id",
        "4429-second-init",
        "4400-unknown-type",
        "4400-not-json",
        "4500-next-from-the-client",
    ],
)
def test_graphql_ws_closes_with_the_reference_servers_codes_and_reasons(
    served: ServedMock, scenario: str, options: dict[str, Any], code: int, reason: str
) -> None:
    run = passed(drive(GRAPHQL, served.url("/graphql"), scenario, options))
    assert run.summary["close"] == {"code": code, "reason": reason}


def test_graphql_ws_without_connection_init_closes_4408_after_the_init_timeout(
    served: ServedMock,
) -> None:
    run = passed(drive(GRAPHQL, served.url("/graphql"), "no-init", {}))
    assert run.summary["close"] == {"code": 4408, "reason": "Connection initialisation timeout"}
    # connectionInitWaitTimeout is 3 s, counted from the open, as on the reference server.
    assert 2900 <= run.summary["closedAfterMs"] <= 3000 + 2000 * UNIT


def test_graphql_ws_client_refuses_a_server_that_selects_no_subprotocol(
    served: ServedMock,
) -> None:
    run = passed(
        drive(GRAPHQL, served.url("/graphql-no-subprotocol"), "no-subprotocol-selected", {})
    )
    assert run.summary["error"]["message"] == "Server sent no subprotocol"
    assert run.summary["connected"] is False


# ---- socket.io-client ------------------------------------------------------------------------


def packet_data(run: DriverRun, kind: str, prefix: str) -> list[str]:
    """The data of the Engine.IO packets of ``kind`` (packet-in / packet-out) starting with
    ``prefix``."""
    return [
        o["data"]
        for o in run.seen(kind)
        if isinstance(o.get("data"), str) and o["data"].startswith(prefix)
    ]


def test_socketio_connects_with_the_mocks_sid_and_disconnects(served: ServedMock) -> None:
    served.log.mark()
    run = passed(drive(SOCKETIO, served.base, "connect", {}))
    (open_packet,) = [json.loads(o["data"]) for o in run.seen("packet-in") if o["type"] == "open"]
    assert open_packet == {
        "sid": run.summary["engineId"],
        "upgrades": [],
        "pingInterval": PING_INTERVAL,
        "pingTimeout": PING_TIMEOUT,
        "maxPayload": 1_000_000,
    }
    # The client's CONNECT, then the mock's answer: socket.id is the sid it carries.
    assert packet_data(run, "packet-out", "0") == ["0"]
    (answer,) = packet_data(run, "packet-in", "0{")
    assert run.summary["id"] == json.loads(answer[1:])["sid"] != run.summary["engineId"]
    assert run.summary["transport"] == "websocket"
    # disconnect(): a DISCONNECT packet (41 on the wire), then a close without a status.
    assert packet_data(run, "packet-out", "1") == ["1"]
    assert run.seen("disconnect")[0]["reason"] == "io client disconnect"
    served.log.wait_for(rf"socket {re.escape(run.summary['id'])} disconnected")
    served.log.wait_for(rf"close {re.escape(run.summary['engineId'])} /socket\.io/ code=1005")


def test_socketio_acknowledgements_carry_the_clients_ack_id(served: ServedMock) -> None:
    args = ["hello", {"n": [1, 2]}]
    run = passed(drive(SOCKETIO, served.base, "ack", {"args": args, "expectAck": args}))
    assert run.summary["ack"] == args
    # The client's first ack id is 0: 420[…] out, 430[…] back.
    assert packet_data(run, "packet-out", "2") == ['20["echo","hello",{"n":[1,2]}]']
    assert packet_data(run, "packet-in", "3") == ['30["hello",{"n":[1,2]}]']


def test_socketio_refused_connect_is_a_connect_error_with_the_message(
    served: ServedMock,
) -> None:
    options = {"auth": {"token": "bad"}, "expectMessage": "not authorized"}
    run = passed(drive(SOCKETIO, served.base, "refused", options))
    assert run.summary["message"] == "not authorized" and run.summary["type"] is None
    assert run.summary["connects"] == 0
    assert packet_data(run, "packet-out", "0") == ['0{"token":"bad"}']


def test_socketio_an_unknown_namespace_is_refused(served: ServedMock) -> None:
    options = {"expectMessage": "Invalid namespace"}
    run = passed(drive(SOCKETIO, served.base + "/admin", "refused", options))
    assert packet_data(run, "packet-out", "0") == ["0/admin,"]


def test_socketio_stays_connected_across_several_ping_intervals(served: ServedMock) -> None:
    # Without a ping within pingInterval + pingTimeout (1 s) the client would disconnect.
    duration = 2600
    options = {"durationMs": duration, "minPings": 4, "packets": False}
    run = passed(drive(SOCKETIO, served.base, "stay-connected", options))
    assert run.summary["disconnects"] == [] and run.summary["pings"] >= 4
    times = [o["ms"] for o in run.seen("ping")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap < PING_INTERVAL + PING_TIMEOUT for gap in gaps), times


async def next_packet(peer: ClientConnection) -> str:
    """The next Engine.IO packet a raw peer receives, pings passed over (answered with 3)."""
    while True:
        packet = await recv(peer)
        assert isinstance(packet, str), packet
        if packet != "2":
            return packet
        await peer.send("3")


@async_test
async def test_socketio_room_events_between_the_real_client_and_another_socket(
    served: ServedMock,
) -> None:
    async with connect(served.url(ENGINE_IO_PATH), open_timeout=BOUND) as peer:
        assert (await next_packet(peer)).startswith("0{")
        await peer.send("40")
        peer_sid = json.loads((await next_packet(peer))[2:])["sid"]
        await peer.send('42["join","room1"]')
        assert await next_packet(peer) == '42["joined","room1"]'

        options = {
            "timeoutMs": DRIVER_MS,
            "join": {"event": "join", "args": ["room1"]},
            "emits": [{"event": "chat", "args": ["hello from node"]}],
            "expectCount": 3,  # joined, its own chat, the peer's chat
        }
        node = await asyncio.create_subprocess_exec(
            "node",
            str(SOCKETIO),
            served.base,
            "room-events",
            json.dumps(options),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            joined = await next_packet(peer)
            assert joined.startswith('42["user-joined"'), joined
            node_sid = json.loads(joined[2:])[1]["id"]
            assert await next_packet(peer) == (
                '42["chat",{"from":"' + node_sid + '","text":"hello from node"}]'
            )
            await peer.send('42["chat","hello from python"]')
            assert await next_packet(peer) == (
                '42["chat",{"from":"' + peer_sid + '","text":"hello from python"}]'
            )
            stdout, stderr = await asyncio.wait_for(node.communicate(), PROCESS_TIMEOUT)
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
    assert node.returncode is not None
    run = passed(parse_driver_output(node.returncode, stdout.decode(), stderr.decode()))
    assert run.seen("connect")[0]["id"] == node_sid
    # In this order: the peer chats only after it has received the client's chat, which the
    # mock sent to the client at the same time.
    assert [(e["event"], e["args"]) for e in run.summary["events"]] == [
        ("joined", ["room1"]),
        ("chat", [{"from": node_sid, "text": "hello from node"}]),
        ("chat", [{"from": peer_sid, "text": "hello from python"}]),
    ]

"""The admin API over real HTTP: every endpoint, its errors, and who may use it.

Most tests share one real server (``BackgroundServer`` with ``admin=True``) driven by
websockets' synchronous client and http.client over real sockets; the command-line flags run the
real ``serve`` command. Every wait is bounded and a multiple of UNIT.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import BOUND, UNIT, ServedMock, run_cli_process, sync_client
from support import http_call as call
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scenario_engine.errors import UsageError
from scenario_engine.language.limits import MAX_CLOSE_REASON_BYTES
from scenario_engine.runtime.admin import MAX_BODY
from scenario_engine.runtime.background import BackgroundServer

pytestmark = pytest.mark.e2e

SCENARIO = """\
route /echo {
  on message {
    send raw
  }
}

route /room/:name {
  on message type "join" {
    join msg.room
    send { type: "joined", room: msg.room }
  }
}
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("admin") / "admin.mock"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mock(scenario: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer.from_paths([scenario], admin=True, max_connections=2) as server:
        yield server


@pytest.fixture(autouse=True)
def no_connection_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts without connections from the one before (their closes are async)."""
    yield
    if "mock" in request.fixturenames:
        mock: BackgroundServer = request.getfixturevalue("mock")
        mock.reset()


def ids_by_path(mock: BackgroundServer) -> dict[str, str]:
    _, _, answer = call(mock.port, "GET", "/__admin/connections")
    return {c["path"]: c["id"] for c in answer["connections"]}


# ---- reading ---------------------------------------------------------------------------------


def test_health_lists_the_routes(mock: BackgroundServer) -> None:
    status, response, answer = call(mock.port, "GET", "/__admin/health")
    assert status == 200
    assert answer == {"status": "ok", "routes": ["/echo", "/room/:name"]}
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Connection") == "close"


def test_connections_describes_every_open_connection(mock: BackgroundServer) -> None:
    with sync_client(mock, "/echo?user=ann") as echo, sync_client(mock, "/room/blue") as room:
        room.send(json.dumps({"type": "join", "room": "lobby"}))
        assert json.loads(room.recv(timeout=BOUND))["type"] == "joined"
        echo.send("hi")
        echo.recv(timeout=BOUND)
        status, _, answer = call(mock.port, "GET", "/__admin/connections")
    assert status == 200
    first, second = answer["connections"]
    assert first["route"] == "/echo" and first["path"] == "/echo"
    assert first["query"] == {"user": "ann"} and first["rooms"] == []
    assert first["ip"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{12}", first["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["connectedAt"])
    assert second["route"] == "/room/:name" and second["path"] == "/room/blue"
    assert second["rooms"] == ["lobby"]
    assert first["subprotocol"] is None and first["session"] == {}
    assert list(first) == [
        "id",
        "route",
        "path",
        "query",
        "ip",
        "subprotocol",
        "rooms",
        "session",
        "connectedAt",
    ]


def test_journal_pages_filters_and_clears(mock: BackgroundServer) -> None:
    since = mock.journal.last_seq
    with sync_client(mock, "/echo") as ws:
        for text in ("one", "two"):
            ws.send(text)
            assert ws.recv(timeout=BOUND) == text
        conn_id = ids_by_path(mock)["/echo"]
    status, _, answer = call(mock.port, "GET", f"/__admin/journal?since={since}&limit=3")
    assert status == 200
    assert [e["event"] for e in answer["events"]] == ["connect", "in", "out"]
    assert answer["events"][0]["seq"] == since + 1
    assert answer["last"] >= since + 5
    _, _, answer = call(mock.port, "GET", f"/__admin/journal?connection={conn_id}&since={since}")
    assert [e.get("text") for e in answer["events"] if e["event"] == "in"] == ["one", "two"]
    assert all(
        e.get("connection") == conn_id or conn_id in e.get("connections", ())
        for e in answer["events"]
    )
    status, _, answer = call(mock.port, "DELETE", "/__admin/journal")
    assert status == 200 and answer["cleared"] is True
    _, _, answer = call(mock.port, "GET", "/__admin/journal")
    assert answer["events"] == [] and answer["last"] >= since + 5


# ---- pushing ---------------------------------------------------------------------------------


def test_send_to_one_connection_text_json_or_binary(mock: BackgroundServer) -> None:
    with sync_client(mock, "/echo") as ws:
        conn_id = ids_by_path(mock)["/echo"]
        for body, expected in [
            ({"message": "plain text"}, "plain text"),
            (
                {"message": {"type": "pushed", "n": 1.5, "ok": True}},
                '{"type":"pushed","n":1.5,"ok":true}',
            ),
            ({"message": [1, None]}, "[1,null]"),
            ({"binary": base64.b64encode(b"\x00\xff").decode()}, b"\x00\xff"),
        ]:
            status, _, answer = call(
                mock.port, "POST", "/__admin/send", {"connection": conn_id, **body}
            )
            assert (status, answer) == (200, {"delivered": 1})
            assert ws.recv(timeout=BOUND) == expected
    out = [e for e in mock.journal.events(connection=conn_id) if e["event"] == "out"]
    assert [e.get("text", e.get("binary")) for e in out][-1] == "AP8="


def test_send_to_a_room_or_a_whole_route(mock: BackgroundServer) -> None:
    with sync_client(mock, "/room/a") as ann, sync_client(mock, "/room/b") as bob:
        ann.send(json.dumps({"type": "join", "room": "lobby"}))
        ann.recv(timeout=BOUND)
        status, _, answer = call(
            mock.port,
            "POST",
            "/__admin/send",
            {"room": "lobby", "route": "/room/:name", "message": "to room"},
        )
        assert (status, answer) == (200, {"delivered": 1})
        assert ann.recv(timeout=BOUND) == "to room"
        status, _, answer = call(
            mock.port, "POST", "/__admin/send", {"route": "/room/:name", "message": "to all"}
        )
        assert (status, answer) == (200, {"delivered": 2})
        assert ann.recv(timeout=BOUND) == "to all"
        # Nothing arrived for bob before: "to all" is the first message he gets.
        assert bob.recv(timeout=BOUND) == "to all"
        status, _, answer = call(
            mock.port, "POST", "/__admin/send", {"room": "lobby", "message": "which route?"}
        )
        assert status == 400 and 'say which with "route"' in answer["error"]
        status, _, answer = call(
            mock.port, "POST", "/__admin/send", {"room": "empty", "route": "/echo", "message": "x"}
        )
        assert (status, answer) == (200, {"delivered": 0})


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"connection": "nobody", "message": "x"}, 404, "no open connection 'nobody'"),
        ({"route": "/nowhere", "message": "x"}, 404, "no route '/nowhere'"),
        ({"route": "/echo"}, 400, 'give either "message"'),
        ({"route": "/echo", "message": "x", "binary": ""}, 400, 'give either "message"'),
        ({"route": "/echo", "binary": "not base64!"}, 400, "not valid base64"),
        ({"message": "x"}, 400, "say whom to send to"),
        ({"connection": "a", "route": "/echo", "message": "x"}, 400, '"connection" alone'),
        ({"conection": "a", "message": "x"}, 400, "unknown field 'conection'"),
        ({"connection": 5, "message": "x"}, 400, "must be a connection id"),
        ("{not json", 400, "the body is not JSON"),
        ("[1, 2]", 400, "must be a JSON object"),
    ],
)
def test_send_errors(mock: BackgroundServer, body: object, status: int, error: str) -> None:
    got, response, answer = call(mock.port, "POST", "/__admin/send", body)
    assert got == status
    assert response.getheader("Content-Type") == "application/json"
    assert error in answer["error"]


# ---- closing ---------------------------------------------------------------------------------


def test_delete_a_connection_closes_it_with_the_code_and_reason(mock: BackgroundServer) -> None:
    with sync_client(mock, "/echo") as ws:
        conn_id = ids_by_path(mock)["/echo"]
        status, _, answer = call(
            mock.port, "DELETE", f"/__admin/connections/{conn_id}?code=4000&reason=go%20away"
        )
        assert (status, answer) == (200, {"closed": conn_id, "code": 4000, "reason": "go away"})
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=BOUND)
        assert (ws.close_code, ws.close_reason) == (4000, "go away")
    # The answer came once the close was done: it is in the journal already.
    closes = [e for e in mock.journal.events(connection=conn_id) if e["event"] == "close"]
    assert [(e["code"], e["reason"]) for e in closes] == [(4000, "go away")]
    status, _, answer = call(mock.port, "DELETE", f"/__admin/connections/{conn_id}")
    assert status == 404


def test_delete_refuses_a_code_that_cannot_be_sent(mock: BackgroundServer) -> None:
    with sync_client(mock, "/echo"):
        conn_id = ids_by_path(mock)["/echo"]
        for query, error in [
            ("code=1006", "cannot be sent"),
            ("code=abc", "whole number"),
            ("reason=" + "x" * 124, "longer than 123 bytes"),
        ]:
            status, _, answer = call(mock.port, "DELETE", f"/__admin/connections/{conn_id}?{query}")
            assert status == 400 and error in answer["error"]


def test_delete_takes_a_reason_of_the_longest_a_close_frame_carries(mock: BackgroundServer) -> None:
    reason = "é" * (MAX_CLOSE_REASON_BYTES // 2) + "x"
    with sync_client(mock, "/echo") as ws:
        mock.close(ids_by_path(mock)["/echo"], 4000, reason)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=BOUND)
        assert (ws.close_code, ws.close_reason) == (4000, reason)


def test_reset_closes_everyone_with_1012_and_clears_rooms_and_journal(
    mock: BackgroundServer,
) -> None:
    with sync_client(mock, "/echo") as echo, sync_client(mock, "/room/a") as room:
        room.send(json.dumps({"type": "join", "room": "lobby"}))
        room.recv(timeout=BOUND)
        status, _, answer = call(mock.port, "POST", "/__admin/reset")
        assert (status, answer) == (200, {"closed": 2})
        for ws in (echo, room):
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=BOUND)
            assert ws.close_code == 1012
    assert mock.connections() == []
    engine = mock.server.engine
    assert not any(engine.rooms.names(route.index) for route in engine.program.routes)
    assert mock.journal.events() == []


# ---- HTTP errors and the boundary with WebSocket ---------------------------------------------


def test_unknown_endpoint_404_and_wrong_method_405(mock: BackgroundServer) -> None:
    status, _, answer = call(mock.port, "GET", "/__admin/nope")
    assert status == 404 and answer == {"error": "no admin endpoint /__admin/nope"}
    status, response, answer = call(mock.port, "GET", "/__admin/send")
    assert status == 405 and "use POST" in answer["error"]
    assert response.getheader("Allow") == "POST"
    status, response, _ = call(mock.port, "PUT", "/__admin/journal")
    assert status == 405 and response.getheader("Allow") == "GET, DELETE"
    status, _, _ = call(mock.port, "GET", "/__admin/journal?since=-1")
    assert status == 400


def test_a_body_over_the_limit_is_refused_unread(mock: BackgroundServer) -> None:
    with socket.create_connection(("127.0.0.1", mock.port), timeout=BOUND) as sock:
        sock.sendall(
            b"POST /__admin/send HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
        )
        answer = sock.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"larger than 1048576 bytes" in answer


def test_a_malformed_admin_request_is_dropped_like_websockets_does(mock: BackgroundServer) -> None:
    with socket.create_connection(("127.0.0.1", mock.port), timeout=BOUND) as sock:
        sock.sendall(b"POST /__admin/send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert sock.makefile("rb").read() == b""


def test_admin_paths_are_not_websocket_routes(mock: BackgroundServer) -> None:
    with pytest.raises(InvalidStatus) as info:
        sync_client(mock, "/__admin/connections")
    assert info.value.response.status_code == 200  # the JSON answer, never an upgrade


def test_admin_requests_do_not_count_as_connections(mock: BackgroundServer) -> None:
    # The server allows 2 connections at once.
    with sync_client(mock, "/echo"), sync_client(mock, "/echo"):
        status, _, answer = call(mock.port, "GET", "/__admin/connections")
        assert status == 200 and len(answer["connections"]) == 2
        with pytest.raises(InvalidStatus) as info:
            sync_client(mock, "/echo")
        assert info.value.response.status_code == 503


def test_peers_outside_the_allow_list_get_403(scenario: Path) -> None:
    elsewhere = [ipaddress.ip_network("10.0.0.0/8")]
    with BackgroundServer.from_paths([scenario], admin=True, admin_allow=elsewhere) as mock:
        status, _, answer = call(mock.port, "GET", "/__admin/health")
        assert status == 403
        assert answer == {
            "error": "the admin API is not open to 127.0.0.1, only to 10.0.0.0/8 "
            "(serve --admin-allow CIDR opens it to a network)"
        }
        with sync_client(mock, "/echo") as ws:  # WebSocket routes are not restricted
            ws.send("still served")
            assert ws.recv(timeout=BOUND) == "still served"


# ---- the serve command's flags ---------------------------------------------------------------


def test_serve_admin_allow_replaces_loopback(serve: Any, scenario: Path) -> None:
    served: ServedMock = serve(
        scenario,
        extra=("--admin", "--admin-allow", "10.0.0.0/8", "--admin-allow", "192.168.0.0/16"),
    )
    status, _, answer = call(served.port, "GET", "/__admin/health")
    assert status == 403 and "not open to 127.0.0.1" in answer["error"]
    assert served.stop() == 0


def test_without_admin_its_paths_are_unknown(mock_server: ServedMock) -> None:
    status, response, text = call(mock_server.port, "GET", "/__admin/health")
    assert status == 404 and text == "No WebSocket route at /__admin/health\n"
    assert response.getheader("Content-Type", "").startswith("text/plain")


@pytest.mark.parametrize(
    ("scenario_text", "flags", "error"),
    [
        ("route /__admin/ws {\n}\n", ("--admin",), "route /__admin/ws is under /__admin"),
        ("route /ws {\n}\n", ("--admin-allow", "10.0.0.0/8"), "--admin-allow needs --admin"),
        ("route /ws {\n}\n", ("--admin", "--admin-allow", "nonsense"), "not a network"),
        ("route /ws {\n}\n", ("--admin-host", "mock.test"), "--admin-host needs --admin"),
        ("route /ws {\n}\n", ("--admin", "--admin-host", "mock.test:80"), "not a host name"),
        ("route /ws {\n}\n", ("--admin", "--admin-host", "http://x.test"), "not a host name"),
    ],
)
def test_serve_usage_errors(
    tmp_path: Path, scenario_text: str, flags: tuple[str, ...], error: str
) -> None:
    path = tmp_path / "s.mock"
    path.write_text(scenario_text, encoding="utf-8")
    result = run_cli_process("serve", path, "--port", "0", *flags, timeout=20 * UNIT)
    assert result.returncode == 2, result.stderr
    assert error in result.stderr


def test_a_route_under_the_admin_prefix_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.mock"
    path.write_text("route /ws {\n}\n\nroute /__admin/ws {\n}\n", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        BackgroundServer.from_paths([path], admin=True)
    assert re.fullmatch(
        r".*s\.mock:4:\d+: route /__admin/ws is under /__admin, which the "
        r"admin API reserves: serve without --admin, or move the route",
        str(info.value),
    ), str(info.value)
    BackgroundServer.from_paths([path])  # without the admin API, the route is the scenario's
    result = run_cli_process("serve", path, "--port", "0", "--admin", timeout=20 * UNIT)
    assert result.returncode == 2
    assert result.stderr == f"scenario-engine: error: {info.value}\n"


def test_serve_admin_answers_on_the_websocket_port(serve: Any, scenario: Path) -> None:
    served: ServedMock = serve(scenario, extra=("--admin", "--quiet"))
    with sync_client(served, "/echo") as ws:
        _, _, answer = call(served.port, "GET", "/__admin/connections")
        conn_id = answer["connections"][0]["id"]
        status, _, answer = call(
            served.port,
            "POST",
            "/__admin/send",
            {"connection": conn_id, "message": {"hello": "cli"}},
        )
        assert (status, answer) == (200, {"delivered": 1})
        assert ws.recv(timeout=BOUND) == '{"hello":"cli"}'
    assert served.stop() == 0

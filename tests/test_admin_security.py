"""The admin API's guards against the browser it runs next to (docs/admin.md, "Security model"):
the Host check (DNS rebinding); writes from another site refused by Origin, Sec-Fetch-Site and
the JSON content type (cross-site requests); WebSocket handshakes held to the same origin
(cross-site WebSocket hijacking); the flags that widen them.

Requests are written as raw bytes on real sockets, with exactly the headers a browser, a page of
another site or curl would send. The attacks of issue 13 run against a real ``serve --admin``
process; the rest share a BackgroundServer. Every wait is bounded by BOUND.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from support import BOUND, ServedMock, start_mock, sync_client
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request
from websockets.sync.client import ClientConnection

from scenario_engine.runtime.background import BackgroundServer

pytestmark = pytest.mark.e2e

SCENARIO = """\
state { n: 0 }

route /ws {
  on message {
    set state.n = state.n + 1
    send { n: state.n }
  }
}
"""

EVIL = ("Origin", "http://evil.example")
JSON_TYPE = ("Content-Type", "application/json")
#: The answers to refused requests, word for word; {port} is the server's.
HOST_REFUSED = (
    "Host {host} is not a name of this server: the admin API answers requests to localhost, "
    "a loopback address or 127.0.0.1 (a guard against DNS rebinding; serve --admin-host NAME "
    "adds a name)"
)
ORIGIN_REFUSED = (
    "cross-site request refused: Origin {origin} is not this server's (http://127.0.0.1:{port}); "
    "{method} is taken only from pages of http://127.0.0.1:{port} or from clients that send no "
    "Origin"
)
FETCH_REFUSED = (
    "cross-site request refused: Sec-Fetch-Site {site}; {method} is taken only from pages of "
    "http://127.0.0.1:{port} or from clients that are not browsers"
)
TYPE_REFUSED = (
    "Content-Type {type} refused: a {method} to the admin API must say Content-Type: "
    "application/json, with a body or without (curl -H 'Content-Type: application/json'), "
    "which a page of another site cannot send"
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("security") / "counter.mock"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mock(scenario: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer.from_paths([scenario], admin=True) as server:
        yield server


@pytest.fixture(scope="module")
def served(scenario: Path) -> Iterator[ServedMock]:
    """A real ``serve --admin`` process, as a developer leaves it running."""
    process = start_mock(scenario, extra=("--admin", "--quiet"))
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts from the initial state, without connections."""
    yield
    if "mock" in request.fixturenames:
        mock: BackgroundServer = request.getfixturevalue("mock")
        mock.reset()


class Answer(NamedTuple):
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def error(self) -> str:
        answer: dict[str, str] = json.loads(self.body)
        return answer["error"]


def send(
    port: int,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    host: str | None = "127.0.0.1:{port}",
) -> Answer:
    """Write one request to 127.0.0.1:``port`` as it is: ``host`` (None: no Host header), then
    ``headers`` (``{port}`` in a value is the port), then ``body``; read the answer."""
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host.format(port=port)}")
    lines += [f"{name}: {value.format(port=port)}" for name, value in headers]
    if body or method not in ("GET", "HEAD", "OPTIONS"):
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Answer(response.status, response.headers, response.read())


def ask(ws: ClientConnection) -> Any:
    """Send a message to the counter: its answer, the count so far."""
    ws.send("{}")
    return json.loads(ws.recv(timeout=BOUND))


def only_connection(mock: BackgroundServer) -> str:
    (conn,) = mock.connections()
    conn_id: str = conn["id"]
    return conn_id


# ---- the attacks of the issue, on a real serve process ---------------------------------------


def test_a_cross_site_text_plain_post_cannot_reset_a_served_mock(served: ServedMock) -> None:
    with sync_client(served, "/ws") as ws:
        assert ask(ws) == {"n": 1}
        # What <form method=post enctype=text/plain action=http://127.0.0.1:PORT/__admin/reset>
        # on a page of evil.example sends.
        answer = send(
            served.port,
            "POST",
            "/__admin/reset",
            [EVIL, ("Content-Type", "text/plain"), ("Sec-Fetch-Site", "cross-site")],
            b"x=y",
        )
        assert answer.status == 403
        assert answer.error() == ORIGIN_REFUSED.format(
            origin="http://evil.example", method="POST", port=served.port
        )
        # The client is still connected and the state was not reset.
        assert ask(ws) == {"n": 2}


def test_a_rebound_name_cannot_read_the_journal_of_a_served_mock(served: ServedMock) -> None:
    token = "Bearer s3cret-token"
    with sync_client(served, "/ws", additional_headers={"Authorization": token}) as ws:
        ask(ws)
        # evil.example now resolves to 127.0.0.1: to the browser, the request is same-origin.
        refused = send(
            served.port,
            "GET",
            "/__admin/journal",
            [("Sec-Fetch-Site", "same-origin")],
            host="evil.example:{port}",
        )
        assert refused.status == 403
        assert refused.error() == HOST_REFUSED.format(host=f"evil.example:{served.port}")
        assert b"s3cret" not in refused.body and b"events" not in refused.body
        # What was at stake: under its own name, the journal holds the handshake's token.
        answered = send(served.port, "GET", "/__admin/journal")
        assert answered.status == 200 and token.encode() in answered.body


# ---- writes from another site ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "error"),
    [
        pytest.param(
            "POST", "/__admin/reset", [EVIL, ("Content-Type", "text/plain")], b"x", 403,
            ORIGIN_REFUSED.format(origin="http://evil.example", method="POST", port="{port}"),
            id="text-plain-form",
        ),
        pytest.param(
            "POST", "/__admin/reset",
            [EVIL, ("Content-Type", "application/x-www-form-urlencoded")], b"a=b", 403,
            ORIGIN_REFUSED.format(origin="http://evil.example", method="POST", port="{port}"),
            id="urlencoded-form",
        ),
        pytest.param(
            "POST", "/__admin/send",
            [EVIL, ("Content-Type", "multipart/form-data; boundary=x")], b"--x--\r\n", 403,
            ORIGIN_REFUSED.format(origin="http://evil.example", method="POST", port="{port}"),
            id="multipart-form",
        ),
        pytest.param(
            "POST", "/__admin/send", [EVIL, JSON_TYPE],
            b'{"route": "/ws", "message": "pushed"}', 403,
            ORIGIN_REFUSED.format(origin="http://evil.example", method="POST", port="{port}"),
            id="json-from-another-origin",
        ),
        pytest.param(
            "POST", "/__admin/reset", [JSON_TYPE, ("Sec-Fetch-Site", "cross-site")], b"", 403,
            FETCH_REFUSED.format(site="cross-site", method="POST", port="{port}"),
            id="sec-fetch-site-cross-site",
        ),
        pytest.param(
            "POST", "/__admin/reset", [JSON_TYPE, ("Sec-Fetch-Site", "same-site")], b"", 403,
            FETCH_REFUSED.format(site="same-site", method="POST", port="{port}"),
            id="sec-fetch-site-same-site",
        ),
        pytest.param(
            "DELETE", "/__admin/connections/{conn}", [EVIL, JSON_TYPE], b"", 403,
            ORIGIN_REFUSED.format(origin="http://evil.example", method="DELETE", port="{port}"),
            id="delete-connection",
        ),
        pytest.param(
            "PUT", "/__admin/state", [EVIL, JSON_TYPE], b'{"n": 666}', 403,
            ORIGIN_REFUSED.format(origin="http://evil.example", method="PUT", port="{port}"),
            id="put-state",
        ),
        pytest.param(
            "PATCH", "/__admin/state", [EVIL, JSON_TYPE], b'{"n": 666}', 403,
            ORIGIN_REFUSED.format(origin="http://evil.example", method="PATCH", port="{port}"),
            id="patch",
        ),
        pytest.param(
            "DELETE", "/__admin/journal", [("Origin", "null"), JSON_TYPE], b"", 403,
            ORIGIN_REFUSED.format(origin="null", method="DELETE", port="{port}"),
            id="sandboxed-page",
        ),
        pytest.param(
            "PUT", "/__admin/state", [("Origin", "https://127.0.0.1:{port}"), JSON_TYPE],
            b'{"n": 666}', 403,
            ORIGIN_REFUSED.format(origin="https://127.0.0.1:{port}", method="PUT", port="{port}"),
            id="another-scheme",
        ),
        pytest.param(
            "PUT", "/__admin/state", [("Origin", "http://127.0.0.1:1"), JSON_TYPE],
            b'{"n": 666}', 403,
            ORIGIN_REFUSED.format(origin="http://127.0.0.1:1", method="PUT", port="{port}"),
            id="another-port",
        ),
        pytest.param(
            "PUT", "/__admin/state", [("Origin", "http://localhost:{port}"), JSON_TYPE],
            b'{"n": 666}', 403,
            ORIGIN_REFUSED.format(origin="http://localhost:{port}", method="PUT", port="{port}"),
            id="another-host-than-host",
        ),
        # A browser that sends no Origin (an old one, or an extension that strips it) is held
        # back by the content type: a page cannot send application/json without a preflight.
        pytest.param(
            "POST", "/__admin/reset", [("Content-Type", "text/plain")], b"x", 415,
            TYPE_REFUSED.format(type="text/plain", method="POST"),
            id="text-plain-without-origin",
        ),
        pytest.param(
            "POST", "/__admin/reset", [("Content-Type", "application/x-www-form-urlencoded")],
            b"a=b", 415,
            TYPE_REFUSED.format(type="application/x-www-form-urlencoded", method="POST"),
            id="urlencoded-without-origin",
        ),
        pytest.param(
            "POST", "/__admin/send", [("Content-Type", "multipart/form-data; boundary=x")],
            b"--x--\r\n", 415,
            TYPE_REFUSED.format(type="multipart/form-data; boundary=x", method="POST"),
            id="multipart-without-origin",
        ),
        pytest.param(
            "POST", "/__admin/reset", [], b"", 415,
            TYPE_REFUSED.format(type="(none)", method="POST"),
            id="bodiless-post-without-type",
        ),
        pytest.param(
            "DELETE", "/__admin/connections/{conn}", [], b"", 415,
            TYPE_REFUSED.format(type="(none)", method="DELETE"),
            id="delete-without-type",
        ),
        pytest.param(
            "PUT", "/__admin/state", [JSON_TYPE, ("Content-Type", "text/plain")], b'{"n": 666}',
            415, TYPE_REFUSED.format(type="application/json, text/plain", method="PUT"),
            id="two-types",
        ),
    ],
)  # fmt: skip
def test_writes_from_another_site_change_nothing(
    mock: BackgroundServer,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    status: int,
    error: str,
) -> None:
    with sync_client(mock, "/ws") as ws:
        assert ask(ws) == {"n": 1}
        conn_id = only_connection(mock)
        before = mock.journal.events()
        answer = send(mock.port, method, path.format(conn=conn_id), headers, body)
        assert answer.status == status
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.error() == error.format(port=mock.port)
        # Nothing happened: nothing pushed, nothing cleared, nobody closed, the state as it was.
        assert mock.journal.events() == before
        assert [c["id"] for c in mock.connections()] == [conn_id]
        assert ask(ws) == {"n": 2}


def test_preflights_get_no_permission_and_answers_no_cors_headers(mock: BackgroundServer) -> None:
    preflight = send(
        mock.port,
        "OPTIONS",
        "/__admin/reset",
        [
            EVIL,
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
    )
    read = send(mock.port, "GET", "/__admin/state", [EVIL])
    assert preflight.status == 405
    assert read.status == 200 and json.loads(read.body)["state"] == {"n": 0}
    for answer in (preflight, read):
        assert not [name for name in answer.headers if name.lower().startswith("access-control")]
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


# ---- what is let in --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"])
def test_pages_of_the_same_origin_write(mock: BackgroundServer, host: str) -> None:
    browser = [
        ("Origin", f"http://{host}"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-Mode", "cors"),
        JSON_TYPE,
    ]
    with sync_client(mock, "/ws") as ws:
        answer = send(mock.port, "PUT", "/__admin/state", browser, b'{"n": 10}', host=host)
        assert answer.status == 200
        assert ask(ws) == {"n": 11}
        answer = send(
            mock.port,
            "POST",
            "/__admin/send",
            browser,
            b'{"route": "/ws", "message": "pushed"}',
            host=host,
        )
        assert answer.status == 200 and ws.recv(timeout=BOUND) == "pushed"
        answer = send(mock.port, "DELETE", "/__admin/journal", browser, host=host)
        assert answer.status == 200 and mock.journal.events() == []
        answer = send(mock.port, "POST", "/__admin/reset", browser, host=host)
        assert (answer.status, json.loads(answer.body)) == (200, {"closed": 1})
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=BOUND)
        assert ws.close_code == 1012


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_clients_that_are_not_browsers_write_with_the_json_type(
    mock: BackgroundServer, content_type: str
) -> None:
    # What curl -X PUT -H 'Content-Type: application/json' -d … sends: no Origin, no Sec-Fetch-*.
    answer = send(
        mock.port,
        "PUT",
        "/__admin/state",
        [("User-Agent", "curl/8.5.0"), ("Content-Type", content_type)],
        b'{"n": 5}',
        host="localhost:{port}",
    )
    assert answer.status == 200 and mock.state() == {"n": 5}


# ---- Host ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:{port}", "LocalHost:1", "127.0.0.1", "127.0.0.1:{port}",
     "127.1.2.3:80", "[::1]", "[::1]:{port}", "[0:0::1]:{port}", "[::ffff:127.0.0.1]:9"],
)  # fmt: skip
def test_loopback_host_names_are_served(mock: BackgroundServer, host: str) -> None:
    answer = send(mock.port, "GET", "/__admin/health", host=host)
    assert (answer.status, json.loads(answer.body)["status"]) == (200, "ok")


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}",
     "localhost.evil.example", "app.localhost:{port}", "ann@127.0.0.1:{port}", "10.0.0.1",
     "[::2]:{port}", "127.0.0.1:{port}/x", ""],
)  # fmt: skip
def test_foreign_host_names_are_refused(mock: BackgroundServer, host: str) -> None:
    mock.set_state({"n": 5})
    shown = host.format(port=mock.port)
    answer = send(mock.port, "GET", "/__admin/state", host=host)
    assert answer.status == 403
    assert answer.error() == HOST_REFUSED.format(host=shown or "(empty)")
    answer = send(mock.port, "PUT", "/__admin/state", [JSON_TYPE], b"{}", host=host)
    assert answer.status == 403
    assert mock.state() == {"n": 5}


def test_no_host_or_two_hosts_are_refused(mock: BackgroundServer) -> None:
    answer = send(mock.port, "GET", "/__admin/health", host=None)
    assert answer.status == 403 and answer.error().startswith("Host (none) is not a name")
    answer = send(mock.port, "GET", "/__admin/health", [("Host", "evil.example")])
    assert answer.status == 403
    assert answer.error().startswith(f"Host 127.0.0.1:{mock.port}, evil.example is not")


def test_the_address_listened_on_is_a_name_of_the_server(scenario: Path) -> None:
    with BackgroundServer.from_paths([scenario], host="0.0.0.0", admin=True) as mock:
        for host in ("0.0.0.0", f"{socket.gethostname()}:{mock.port}"):
            assert send(mock.port, "GET", "/__admin/health", host=host).status == 200, host
        answer = send(mock.port, "GET", "/__admin/health", host="evil.example")
        assert answer.status == 403
        assert f"or {socket.gethostname()} (a guard" in answer.error()


def test_an_api_open_to_other_networks_still_checks_host(scenario: Path) -> None:
    everywhere = [ipaddress.ip_network("0.0.0.0/0")]
    with BackgroundServer.from_paths([scenario], admin=True, admin_allow=everywhere) as mock:
        # A browser of the LAN can be rebound to the mock's address as well as a local one.
        answer = send(mock.port, "GET", "/__admin/health", host="mock.lan")
        assert answer.status == 403 and answer.error().startswith("Host mock.lan is not a name")
    hosts = ["MOCK.lan", "10.1.2.3"]
    with BackgroundServer.from_paths(
        [scenario], admin=True, admin_allow=everywhere, admin_hosts=hosts
    ) as mock:
        for host in ("mock.lan", "mock.lan:8765", "10.1.2.3:{port}"):
            assert send(mock.port, "GET", "/__admin/health", host=host).status == 200, host
        page = [("Origin", "http://mock.lan:8765"), JSON_TYPE]
        answer = send(mock.port, "PUT", "/__admin/state", page, b'{"n": 1}', host="mock.lan:8765")
        assert answer.status == 200
        answer = send(mock.port, "POST", "/__admin/reset", [EVIL, JSON_TYPE], host="mock.lan:8765")
        assert answer.status == 403 and answer.error().startswith("cross-site request refused")
        assert mock.state() == {"n": 1}
        answer = send(mock.port, "GET", "/__admin/health", host="other.lan")
        assert answer.status == 403
        assert "127.0.0.1, mock.lan or 10.1.2.3 (a guard" in answer.error()


def test_serve_admin_host_adds_names(serve: Any, scenario: Path) -> None:
    served: ServedMock = serve(
        scenario, extra=("--admin", "--quiet", "--admin-host", "mock.test", "--admin-host", "::2")
    )
    for host in ("mock.test:{port}", "Mock.Test", "[::2]:{port}", "localhost:{port}"):
        assert send(served.port, "GET", "/__admin/health", host=host).status == 200, host
    page = [("Origin", "http://mock.test:{port}"), JSON_TYPE]
    answer = send(served.port, "POST", "/__admin/reset", page, host="mock.test:{port}")
    assert (answer.status, json.loads(answer.body)) == (200, {"closed": 0})
    answer = send(served.port, "GET", "/__admin/health", host="other.test")
    assert answer.status == 403 and "127.0.0.1, mock.test or ::2 (a guard" in answer.error()
    assert served.stop() == 0


def test_serve_admin_host_star_takes_any_name(serve: Any, scenario: Path) -> None:
    served: ServedMock = serve(scenario, extra=("--admin", "--quiet", "--admin-host", "*"))
    assert send(served.port, "GET", "/__admin/health", host="evil.example").status == 200
    # The other checks stay: a write from a page of another site than the one named is refused
    # (a page whose name was rebound is of the site it names: '*' lets it in, as documented).
    answer = send(served.port, "POST", "/__admin/reset", [EVIL, JSON_TYPE])
    assert answer.status == 403
    assert served.stop() == 0


# ---- WebSocket handshakes under /__admin (the inspector's live feed) -------------------------


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({}, 200),
        ({"origin": "http://127.0.0.1:{port}"}, 200),
        ({"origin": "http://evil.example"}, 403),
        ({"origin": "http://localhost:{port}"}, 403),
        ({"additional_headers": {"Sec-Fetch-Site": "cross-site"}}, 403),
    ],
)
def test_websocket_handshakes_under_admin_come_from_the_same_origin(
    mock: BackgroundServer, options: dict[str, Any], status: int
) -> None:
    if "origin" in options:
        options = {"origin": options["origin"].format(port=mock.port)}
    with pytest.raises(InvalidStatus) as info:  # answered as JSON, never upgraded
        sync_client(mock, "/__admin/health", **options)
    response = info.value.response
    assert response.status_code == status
    if status == 403:
        assert json.loads(response.body)["error"].startswith("cross-site request refused")
        assert "; a WebSocket is taken only from pages of" in json.loads(response.body)["error"]


def handshake(
    *headers: tuple[str, str], host: str = "localhost:8765", method: str = "GET"
) -> Request:
    """A browser's handshake of a WebSocket under /__admin, as websockets parses it."""
    fields = Headers([("Host", host), ("Upgrade", "websocket"), *headers])
    return Request("/__admin/live", fields, method)


SAME = ("Origin", "http://localhost:8765")


def test_refusal_lets_in_a_handshake_of_the_same_origin_or_of_no_browser(
    mock: BackgroundServer,
) -> None:
    """What the live feed calls with a handshake that websockets parsed (no AdminRequest)."""
    admin = mock.server.admin
    assert admin is not None
    assert admin.refusal("127.0.0.1", handshake(SAME), changes_state=False) is None
    assert admin.refusal("::1", handshake(), changes_state=False) is None


@pytest.mark.parametrize(
    ("peer", "request_", "changes_state", "status", "error"),
    [
        ("127.0.0.1", handshake(EVIL), False, 403, "cross-site request refused: Origin"),
        ("127.0.0.1", handshake(("Origin", "http://localhost:8766")), False, 403,
         "cross-site request refused: Origin"),
        ("127.0.0.1", handshake(SAME, ("Sec-Fetch-Site", "cross-site")), False, 403,
         "cross-site request refused: Sec-Fetch-Site"),
        ("10.0.0.1", handshake(SAME), False, 403, "the admin API is not open to 10.0.0.1"),
        (None, handshake(SAME), False, 403, "the admin API is not open to an unknown address"),
        ("127.0.0.1", handshake(("Origin", "http://evil.example:8765"), host="evil.example:8765"),
         False, 403, "Host evil.example:8765 is not a name of this server"),
        # A request that changes something must also say it is JSON; a method other than GET,
        # HEAD and OPTIONS changes something, whatever the caller says.
        ("127.0.0.1", handshake(SAME), True, 415, "Content-Type (none) refused: a GET"),
        ("127.0.0.1", handshake(SAME, method="POST"), False, 415,
         "Content-Type (none) refused: a POST"),
    ],
)  # fmt: skip
def test_refusal_refuses_a_handshake(
    mock: BackgroundServer,
    peer: str | None,
    request_: Request,
    changes_state: bool,
    status: int,
    error: str,
) -> None:
    admin = mock.server.admin
    assert admin is not None
    refused = admin.refusal(peer, request_, changes_state=changes_state)
    assert refused is not None
    assert refused.status == status and refused.message.startswith(error), refused.message

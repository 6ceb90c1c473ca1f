"""``state`` and ``session`` through the admin API and BackgroundServer (the admin API's guards
against browsers are in test_admin_security.py).

Real servers on port 0, real WebSocket and HTTP clients; every wait is bounded by BOUND.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import BOUND, sync_client
from support import http_call as call
from websockets.sync.client import ClientConnection

from scenario_engine.errors import AdminError
from scenario_engine.runtime.admin import MAX_BODY
from scenario_engine.runtime.background import BackgroundServer
from scenario_engine.runtime.program import DEFAULT_MAX_SESSION

pytestmark = pytest.mark.e2e

AUCTION = """\
state { highest: 0, bids: [] }

route /ws {
  max session 1KB
  subprotocols ["bid.v1"]

  on message type "bid" {
    if msg.amount > state.highest {
      set state.highest = msg.amount
    }
    send { highest: state.highest }
  }

  on message type "remember" {
    set session.name = msg.name
    send { remembered: session.name }
  }

  on message type "whoami" {
    send { name: session.name ?? null, session: session }
  }
}
"""

#: A second file, without a state block: its state starts as {}.
COUNTER = """\
route /count {
  on message {
    set state.n = (state.n ?? 0) + 1
    send { n: state.n }
  }
}
"""

#: A state larger than the state's cap (a million characters of JSON), in a body the admin
#: API still reads (up to MAX_BODY).
TOO_LARGE_STATE = json.dumps({"big": "x" * 1_000_000})
assert len(TOO_LARGE_STATE) < MAX_BODY


@pytest.fixture(scope="module")
def auction(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("state") / "auction.mock"
    path.write_text(AUCTION, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mock(auction: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer.from_paths([auction], admin=True) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts from the file's initial state, without connections."""
    yield
    if "mock" in request.fixturenames:
        mock: BackgroundServer = request.getfixturevalue("mock")
        mock.reset()


def ask(ws: ClientConnection, message: dict[str, Any]) -> Any:
    ws.send(json.dumps(message))
    raw = ws.recv(timeout=BOUND)
    assert isinstance(raw, str)
    return json.loads(raw)


def only_connection(mock: BackgroundServer) -> str:
    (conn,) = mock.connections()
    conn_id: str = conn["id"]
    return conn_id


# ---- state -----------------------------------------------------------------------------------


def test_state_is_read_replaced_and_reset_over_http(mock: BackgroundServer, auction: Path) -> None:
    status, _, answer = call(mock.port, "GET", "/__admin/state")
    assert (status, answer) == (200, {"file": str(auction), "state": {"highest": 0, "bids": []}})
    with sync_client(mock, "/ws") as ws:
        assert ask(ws, {"type": "bid", "amount": 10}) == {"highest": 10}
        _, _, answer = call(mock.port, "GET", f"/__admin/state?file={auction}")
        assert answer["state"] == {"highest": 10, "bids": []}

        replaced = {"highest": 100, "note": {"by": "admin"}}
        status, _, answer = call(mock.port, "PUT", "/__admin/state", replaced)
        assert (status, answer) == (200, {"file": str(auction), "state": replaced})
        # The handler reads the new state: 50 no longer beats it.
        assert ask(ws, {"type": "bid", "amount": 50}) == {"highest": 100}
        assert ask(ws, {"type": "bid", "amount": 150}) == {"highest": 150}
        _, _, answer = call(mock.port, "GET", "/__admin/state")
        assert answer["state"] == {"highest": 150, "note": {"by": "admin"}}

        status, _, answer = call(mock.port, "POST", "/__admin/reset")
        assert (status, answer) == (200, {"closed": 1})
    _, _, answer = call(mock.port, "GET", "/__admin/state")
    assert answer["state"] == {"highest": 0, "bids": []}
    with sync_client(mock, "/ws") as ws:
        assert ask(ws, {"type": "bid", "amount": 1}) == {"highest": 1}


def test_state_through_background_server(mock: BackgroundServer, auction: Path) -> None:
    assert mock.state() == {"highest": 0, "bids": []}
    mock.set_state({"highest": 7})
    assert mock.state(auction) == {"highest": 7}
    with sync_client(mock, "/ws") as ws:
        assert ask(ws, {"type": "bid", "amount": 5}) == {"highest": 7}
        assert ask(ws, {"type": "bid", "amount": 9}) == {"highest": 9}
    # A copy: changing it changes nothing on the server.
    copy = mock.state()
    copy["highest"] = -1
    assert mock.state() == {"highest": 9}
    mock.reset()
    assert mock.state() == {"highest": 0, "bids": []}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ([1, 2], "the state must be a JSON object, not an array"),
        ("text", "the state must be a JSON object, not a string"),
        (json.loads(TOO_LARGE_STATE), "larger than its 1,000,000 characters of JSON"),
    ],
)
def test_set_state_refuses_what_cannot_be_the_state(
    mock: BackgroundServer, value: Any, error: str
) -> None:
    with pytest.raises(AdminError) as info:
        mock.set_state(value)
    assert info.value.status == 400 and error in info.value.message
    assert mock.state() == {"highest": 0, "bids": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("PUT", "/__admin/state", "[1]", 400, "the state must be a JSON object, not an array"),
        ("PUT", "/__admin/state", "null", 400, "the state must be a JSON object, not null"),
        ("PUT", "/__admin/state", "{", 400, "the body is not JSON"),
        ("PUT", "/__admin/state", '{"n": NaN}', 400, "NaN is not JSON (RFC 8259)"),
        ("PUT", "/__admin/state", "", 400, "the body is not JSON"),
        (
            "PUT",
            "/__admin/state",
            TOO_LARGE_STATE,
            400,
            "cannot replace the state: state would be larger than its 1,000,000 characters",
        ),
        ("GET", "/__admin/state?file=nope.mock", None, 404, "no scenario file 'nope.mock'"),
        ("PUT", "/__admin/state?file=nope.mock", "{}", 404, "no scenario file 'nope.mock'"),
        ("DELETE", "/__admin/state", None, 405, "use GET or PUT"),
    ],
)
def test_state_errors_over_http(
    mock: BackgroundServer, method: str, path: str, body: str | None, status: int, error: str
) -> None:
    got, response, answer = call(mock.port, method, path, body)
    assert got == status, answer
    assert response.getheader("Content-Type") == "application/json"
    assert error in answer["error"]
    if status == 404:
        assert "auction.mock" in answer["error"]  # the files there are
    assert mock.state() == {"highest": 0, "bids": []}


def test_several_files_each_have_their_state_and_file_is_required(tmp_path: Path) -> None:
    auction, counter = tmp_path / "auction.mock", tmp_path / "counter.mock"
    auction.write_text(AUCTION, encoding="utf-8")
    counter.write_text(COUNTER, encoding="utf-8")
    with BackgroundServer.from_paths([auction, counter], admin=True) as mock:
        status, _, answer = call(mock.port, "GET", "/__admin/state")
        assert status == 400
        assert answer["error"] == (
            "state belongs to a scenario file and this server serves several: say which "
            f'with "file" ({auction}, {counter})'
        )
        status, _, answer = call(mock.port, "PUT", "/__admin/state", {"n": 1})
        assert status == 400 and 'say which with "file"' in answer["error"]
        with pytest.raises(AdminError) as info:
            mock.state()
        assert info.value.status == 400

        status, _, answer = call(mock.port, "GET", f"/__admin/state?file={counter}")
        assert (status, answer) == (200, {"file": str(counter), "state": {}})
        status, _, answer = call(mock.port, "PUT", f"/__admin/state?file={counter}", {"n": 41})
        assert (status, answer) == (200, {"file": str(counter), "state": {"n": 41}})
        with sync_client(mock, "/count") as ws:
            assert ask(ws, {}) == {"n": 42}
        mock.set_state({"highest": 3}, file=auction)
        assert mock.state(auction) == {"highest": 3}
        assert mock.state(str(counter)) == {"n": 42}

        status, _, answer = call(mock.port, "GET", "/__admin/state?file=other.mock")
        assert status == 404
        assert answer["error"] == f"no scenario file 'other.mock' (files: {auction}, {counter})"

        mock.reset()  # a file without a state block goes back to {}
        assert mock.state(auction) == {"highest": 0, "bids": []}
        assert mock.state(counter) == {}


# ---- session ---------------------------------------------------------------------------------


def test_session_of_a_live_connection_is_read_and_replaced(mock: BackgroundServer) -> None:
    with sync_client(mock, "/ws", subprotocols=["bid.v1"]) as ws:
        assert ask(ws, {"type": "remember", "name": "ann"}) == {"remembered": "ann"}
        conn_id = only_connection(mock)
        status, _, answer = call(mock.port, "GET", f"/__admin/connections/{conn_id}/session")
        assert (status, answer) == (200, {"connection": conn_id, "session": {"name": "ann"}})

        replaced = {"name": "bob", "tags": ["vip"]}
        status, _, answer = call(
            mock.port, "PUT", f"/__admin/connections/{conn_id}/session", replaced
        )
        assert (status, answer) == (200, {"connection": conn_id, "session": replaced})
        assert ask(ws, {"type": "whoami"}) == {"name": "bob", "session": replaced}

        assert mock.session(conn_id) == replaced
        mock.set_session(conn_id, {})
        assert ask(ws, {"type": "whoami"}) == {"name": None, "session": {}}


def test_the_listing_shows_each_connections_subprotocol_and_session(
    mock: BackgroundServer,
) -> None:
    with (
        sync_client(mock, "/ws", subprotocols=["other", "bid.v1"]) as speaking,
        sync_client(mock, "/ws") as plain,
    ):
        assert speaking.subprotocol == "bid.v1" and plain.subprotocol is None
        assert ask(speaking, {"type": "remember", "name": "ann"}) == {"remembered": "ann"}
        status, _, answer = call(mock.port, "GET", "/__admin/connections")
    assert status == 200
    first, second = answer["connections"]
    assert (first["subprotocol"], first["session"]) == ("bid.v1", {"name": "ann"})
    assert (second["subprotocol"], second["session"]) == (None, {})


def test_session_errors(mock: BackgroundServer) -> None:
    assert DEFAULT_MAX_SESSION > 2048  # the route's own cap (1KB) is what applies
    with sync_client(mock, "/ws") as ws:
        conn_id = only_connection(mock)
        session = f"/__admin/connections/{conn_id}/session"
        for body, error in [
            ("[]", "the session must be a JSON object, not an array"),
            ("3", "the session must be a JSON object, not a number"),
            ("{oops", "the body is not JSON"),
            (
                {"blob": "x" * 2000},
                "cannot replace the session: session would be larger than its 1,024 characters "
                "of JSON (the route's max session)",
            ),
        ]:
            status, _, answer = call(mock.port, "PUT", session, body)
            assert status == 400 and answer["error"].startswith(error)
        assert ask(ws, {"type": "whoami"}) == {"name": None, "session": {}}
        with pytest.raises(AdminError) as info:
            mock.set_session(conn_id, {"blob": "x" * 2000})
        assert info.value.status == 400
    for method, body in [("GET", None), ("PUT", {})]:
        status, _, answer = call(mock.port, method, "/__admin/connections/gone/session", body)
        assert (status, answer) == (404, {"error": "no open connection 'gone'"})
    with pytest.raises(AdminError) as info:
        mock.session("gone")
    assert info.value.status == 404


# ---- the journal -----------------------------------------------------------------------------


def test_a_message_no_handler_takes_is_journaled_unmatched(mock: BackgroundServer) -> None:
    since = mock.journal.last_seq
    with sync_client(mock, "/ws") as ws:
        ws.send(json.dumps({"type": "nobody-handles-this"}))
        assert ask(ws, {"type": "bid", "amount": 0}) == {"highest": 0}
        conn_id = only_connection(mock)
    _, _, answer = call(mock.port, "GET", f"/__admin/journal?since={since}&connection={conn_id}")
    unmatched = [e for e in answer["events"] if e["event"] == "unmatched"]
    assert [(e["connection"], e["text"]) for e in unmatched] == [
        (conn_id, '{"type": "nobody-handles-this"}')
    ]

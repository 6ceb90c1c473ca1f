"""`scenario-engine test`: conversation tests run against real mocks and real backends.

Every server here is real (the scenario's own mock on a free port, a hand-written websockets
backend in a subprocess, a socket that never answers), and so are the clients the runner drives.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import SCENARIOS, UNIT, run_cli, run_cli_process, self_signed_certificate

BACKEND = Path(__file__).parent / "backends" / "chat_backend.py"

CHAT_ROUTE = """
route /ws/chat {
  on connect { send { type: "connected", id: conn.id } }
  on message type "join" {
    join "chat"
    broadcast { type: "user-joined", username: msg.username } to "chat"
  }
  on message type "hello" { send { type: "hi" } send { type: "hi-again" } }
}
"""


def run_tests(*args: str) -> tuple[int, str]:
    """The test command in this process: its exit status, and stdout and stderr together."""
    status, out, err = run_cli("test", *args)
    return status, out + err


def scenario(tmp_path: Path, text: str, name: str = "t.mock") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The hand-written chat backend (``--differ`` if the test is parametrized so)."""
    extra = ["--differ"] if getattr(request, "param", False) else []
    process = subprocess.Popen(
        [sys.executable, str(BACKEND), *extra], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.match(r"ready (\d+)", line)
    assert match, f"backend did not start: {line!r}"
    yield f"ws://127.0.0.1:{match.group(1)}"
    process.kill()
    process.wait()


# ---- the examples and the "done when" of the feature -------------------------------------


@pytest.mark.e2e
def test_every_example_scenario_has_tests_and_they_pass() -> None:
    result = run_cli("test", "scenarios")
    assert result.status == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert all(line.startswith("PASS") for line in lines), result.stdout
    files = {re.match(r"PASS  (\S+)::", line).group(1) for line in lines}  # type: ignore[union-attr]
    examples = {f"scenarios/{p.name}" for p in SCENARIOS.iterdir() if p.suffix == ".mock"}
    assert files == examples  # chat.yaml is chat.mock in another spelling: run once
    assert result.stdout.endswith(f"\n{len(lines)} passed, 0 failed\n")


@pytest.mark.e2e
def test_a_wrong_expectation_fails_with_a_diff_and_exit_1(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        CHAT_ROUTE
        + """
test "right" {
  connect alice to /ws/chat
  alice expect { type: "connected" }
}

test "wrong" {
  connect alice to /ws/chat
  connect bob to /ws/chat
  alice send { type: "join", username: "Alice" }
  bob send { type: "join", username: "Bob" }
  alice expect { type: "user-joined", username: "Alicia" } within 300ms
}
""",
    )
    result = run_cli("test", path)
    assert result.status == 1
    out = result.stdout
    assert re.search(r"^PASS  .*t\.mock::right  \(\d+ ms\)$", out, re.M)
    assert re.search(r"^FAIL  .*t\.mock::wrong  \(\d+ ms\)$", out, re.M)
    assert f"{path}:21:3: error: alice did not receive the expected message within 300ms" in out
    assert '   21 |   alice expect { type: "user-joined", username: "Alicia" } within 300ms' in out
    assert '    expected {"type": "user-joined", "username": "Alicia"}' in out
    assert '    received {"type": "user-joined", "username": "Bob"}' in out
    assert '      at msg.username: expected "Alicia", received "Bob"' in out
    assert re.search(r"^ran 2 tests in \d+\.\d\ds\n1 passed, 1 failed\n\Z", out, re.M)


@pytest.mark.e2e
def test_the_chat_tests_pass_against_a_backend_that_implements_chat(backend: str) -> None:
    result = run_cli("test", "scenarios/chat.mock", "--target", backend)
    assert result.status == 0, result.stdout + result.stderr
    assert re.search(r"^5 passed, 0 failed", result.stdout, re.M)


@pytest.mark.e2e
@pytest.mark.parametrize("backend", [True], indirect=True, ids=["differs"])
def test_the_chat_tests_fail_against_a_backend_that_differs(backend: str) -> None:
    result = run_cli("test", "scenarios/chat.mock", "--target", backend)
    assert result.status == 1
    out = result.stdout
    assert "FAIL  scenarios/chat.mock::joining is announced to the others in the chat" in out
    assert '      at msg.username: missing (expected "Bob")' in out
    assert re.search(r"^3 passed, 2 failed", out, re.M)


@pytest.mark.e2e
def test_github_format_annotates_the_failing_step(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        CHAT_ROUTE
        + """
test "bad" {
  connect a to /ws/chat
  a expect { type: "nope" } within 100ms
}
""",
    )
    status, out = run_tests(path, "--format", "github")
    assert status == 1
    (annotation,) = [line for line in out.splitlines() if line.startswith("::error ")]
    assert annotation.startswith(
        f"::error file={path},line=13,col=3,endColumn=41::a did not "
        "receive the expected message within 100ms%0Ain test: bad%0A"
        'expected {"type": "nope"}%0Areceived {"type": "connected"'
    )


@pytest.mark.e2e
def test_junit_xml_lists_every_test_with_its_failure(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        CHAT_ROUTE
        + """
test "ok" { connect a to /ws/chat  a expect { type: "connected" } }
test "bad" { connect a to /ws/chat  a expect { type: "nope" } within 100ms }
""",
    )
    report = tmp_path / "reports" / "junit.xml"  # the folder is made
    status, _ = run_tests(path, "--junit", str(report))
    assert status == 1
    root = ET.parse(report).getroot()
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "2", "1")
    (suite,) = root.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == (path, "2", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["ok"].find("failure") is None
    failure = cases["bad"].find("failure")
    assert failure is not None
    assert failure.get("message") == "a did not receive the expected message within 100ms"
    assert f"{path}:12:37: error:" in (failure.text or "")
    assert cases["bad"].get("line") == "12"


# ---- steps ---------------------------------------------------------------------------------


@pytest.mark.e2e
def test_capture_feeds_later_steps_and_paths(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        """
route /ws/game/:gameId {
  on connect { send { type: "in-game", game: params.gameId, token: query.token } }
}
route /ws/lobby {
  on connect { send { type: "game-created", gameId: id("game") } }
}
test "join the game the lobby created" strict {
  connect host to /ws/lobby
  host expect { type: "game-created" } capture gameId = msg.gameId
  connect player to "/ws/game/${gameId}" query { token: "t-${gameId}" }
  player expect { type: "in-game", game: gameId, token: "t-${gameId}" }
}
""",
    )
    status, out = run_tests(path)
    assert status == 0, out


@pytest.mark.e2e
def test_headers_and_subprotocols_reach_the_server(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        """
route /ws {
  origins ["http://app.test"]
  subprotocols ["v2"]
  on connect {
    send { agent: headers["x-agent"], offered: headers["sec-websocket-protocol"],
           selected: conn.subprotocol }
  }
}
test "allowed origin" {
  connect a to /ws headers { Origin: "http://app.test", "X-Agent": "t" } protocols ["v1", "v2"]
  a expect { agent: "t", offered: "v1, v2", selected: "v2" }
}
test "other origin" {
  connect a to /ws headers { Origin: "http://evil.test" } expect reject 403
}
""",
    )
    status, out = run_tests(path)
    assert status == 0, out


SUBPROTOCOL_ROUTES = """
route /strict {
  subprotocols ["graphql-transport-ws"] required
  on connect { send { selected: conn.subprotocol } }
}
route /lenient {
  subprotocols ["graphql-transport-ws"]
  on connect { send { selected: conn.subprotocol } }
}
route /plain {
  on connect { send { selected: conn.subprotocol } }
}
"""


@pytest.mark.e2e
def test_a_connect_passes_when_the_server_selects_an_offered_subprotocol(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        SUBPROTOCOL_ROUTES
        + """
test "selected" strict {
  connect a to /strict protocols ["other", "graphql-transport-ws"]
  a expect { selected: "graphql-transport-ws" }
  connect b to /lenient protocols ["graphql-transport-ws"]
  b expect { selected: "graphql-transport-ws" }
  connect c to /lenient
  c expect { selected: null }
}
""",
    )
    status, out = run_tests(path)
    assert status == 0, out


@pytest.mark.e2e
@pytest.mark.parametrize("route", ["/lenient", "/plain"])
def test_a_connect_fails_when_the_server_selects_none_of_the_offered_subprotocols(
    tmp_path: Path, route: str
) -> None:
    # As browsers and Node's ws (\"Server sent no subprotocol\"): the connection is refused by
    # the client, whatever the server thought of it.
    path = scenario(
        tmp_path,
        SUBPROTOCOL_ROUTES
        + f"""
test "none selected" {{
  connect a to {route} protocols ["chat.v1", "chat.v2"]
  a expect {{ selected: null }}
}}
""",
    )
    status, out = run_tests(path)
    assert status == 1, out
    assert (
        f'{path}:15:3: error: a offered the subprotocols "chat.v1", "chat.v2", '
        "and the server selected none\n"
    ) in out
    assert (
        "    the handshake response has no Sec-WebSocket-Protocol header: a browser or Node's ws "
        'refuses such a connection (ws: "Server sent no subprotocol")'
    ) in out
    assert "0 passed, 1 failed" in out


@pytest.mark.e2e
def test_a_route_that_requires_a_subprotocol_refuses_a_client_offering_none(
    tmp_path: Path,
) -> None:
    path = scenario(
        tmp_path,
        SUBPROTOCOL_ROUTES
        + """
test "none offered" {
  connect a to /strict expect reject 400
  connect b to /strict protocols ["chat.v1"] expect reject 400
}
test "none offered, connection expected" {
  connect a to /strict
}
""",
    )
    status, out = run_tests(path)
    assert status == 1, out
    assert f"PASS  {path}::none offered  (" in out
    assert (
        "    expected the connection to open, got HTTP 400 'Unsupported subprotocol: this route "
        "speaks graphql-transport-ws (none offered)'"
    ) in out
    assert "1 passed, 1 failed" in out


@pytest.mark.e2e
def test_close_codes_and_reasons_are_checked(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        """
route /ws {
  auth { reject 4001 "No token" unless query.token  accept {} }
  on message { close 4000 "bye" }
}
test "right" {
  connect a to /ws
  a expect close 4001 "No token"
  connect b to /ws query { token: "x" }
  b send "anything"
  b expect close 4000
}
test "wrong code" {
  connect a to /ws
  a expect close 4002 "No token"
}
test "wrong reason" {
  connect a to /ws
  a expect close 4001 "Bad token"
}
test "no close" {
  connect a to /ws query { token: "x" }
  a expect close within 200ms
}
""",
    )
    status, out = run_tests(path)
    assert status == 1
    assert "PASS  " + path + "::right" in out
    assert 'a\'s connection closed (code 4001, reason "No token"), not as expected' in out
    assert "    expected code 4002, received 4001" in out
    assert '    expected reason "Bad token", received "No token"' in out
    assert "a's connection did not close within 200ms" in out
    assert "1 passed, 3 failed" in out


@pytest.mark.e2e
def test_a_client_can_close_and_others_see_it(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        """
route /ws {
  on connect { join "all" }
  on close { broadcast { type: "left", code: code, reason: reason } to "all" }
}
test "close with a code" {
  connect a to /ws
  connect b to /ws
  a close 4100 "done"
  b expect { type: "left", code: 4100, reason: "done" }
}
""",
    )
    status, out = run_tests(path)
    assert status == 0, out


@pytest.mark.e2e
def test_http_rejections(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        """
route /ws {
  auth { reject http 401 "Login first" unless query.token  accept {} }
}
test "rejected as expected" { connect a to /ws expect reject 401 }
test "other status" { connect a to /ws expect reject 403 }
test "not rejected" { connect a to /ws query { token: "t" } expect reject 401 }
test "unexpectedly rejected" { connect a to /ws }
""",
    )
    status, out = run_tests(path)
    assert status == 1
    assert "    expected HTTP 403, got HTTP 401 'Login first'" in out
    assert "a connected, but the server was expected to refuse the handshake with HTTP 401" in out
    assert "    expected the connection to open, got HTTP 401 'Login first'" in out
    assert "1 passed, 3 failed" in out


@pytest.mark.e2e
def test_a_failure_says_what_went_wrong_in_the_mock(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        """
route /ws {
  on message type "deep" { send { v: msg.a.b } }
}
test "handler fails" {
  connect a to /ws
  a send { type: "deep" }
  a expect { v: 1 }
}
""",
    )
    status, out = run_tests(path)
    assert status == 1
    assert (
        'a\'s connection closed (code 1011, reason "Internal error") before the expected '
        "message came"
    ) in out
    assert f"    the mock reported: {path}:3:28: handler failed: cannot read 'b' of null" in out
    assert out.count("handler failed") == 1  # in the report, not also as a log line


@pytest.mark.e2e
def test_strict_tests_allow_no_unexpected_message(tmp_path: Path) -> None:
    body = """
test "skips" {
  connect a to /ws/chat
  a send { type: "hello" }
  a expect { type: "hi-again" }
}
test "in order" strict {
  connect a to /ws/chat
  a expect { type: "connected" }
  a send { type: "hello" }
  a expect { type: "hi-again" }
}
test "left unread" strict {
  connect a to /ws/chat
  a expect { type: "connected" }
  a send { type: "hello" }
  a expect { type: "hi" }
  wait 100ms
}
"""
    status, out = run_tests(scenario(tmp_path, CHAT_ROUTE + body))
    assert status == 1
    assert "PASS  " in out and "::skips" in out
    assert "a received another message than expected (strict test)" in out
    assert '    received {"type": "hi"}' in out
    assert "a has messages no step expected (strict test)" in out
    assert '    received {"type": "hi-again"}' in out
    assert "1 passed, 2 failed" in out


@pytest.mark.e2e
def test_expect_no_message(tmp_path: Path) -> None:
    body = """
test "quiet" {
  connect a to /ws/chat
  a expect { type: "connected" }
  a expect no message for 100ms
}
test "not quiet" {
  connect a to /ws/chat
  a expect { type: "connected" }
  a send { type: "hello" }
  a expect no message for 300ms
}
"""
    status, out = run_tests(scenario(tmp_path, CHAT_ROUTE + body))
    assert status == 1
    assert "a received a message within 300ms, where none was expected" in out
    assert '    received {"type": "hi"}' in out
    assert "1 passed, 1 failed" in out


@pytest.mark.e2e
def test_a_wait_may_be_an_expression_and_timers_are_waited_for(tmp_path: Path) -> None:
    body = """
let pause = 150
route /ws/later { on connect { after 100ms { send "late" } } }
test "waits as long as a constant says" strict {
  connect a to /ws/later
  a expect no message for 50ms
  wait pause
  a expect "late" within 10ms
}
"""
    status, out = run_tests(scenario(tmp_path, body))
    assert (status, out.splitlines()[-1]) == (0, "1 passed, 0 failed"), out


@pytest.mark.e2e
def test_set_replaces_constants_as_the_tests_see_them(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        """
let users = { "alice-token": { name: "Alice" }, "bob-token": { name: "Bob" } }
let token = "alice-token"
let who = { name: "Alice" }
route /ws {
  auth { reject 4001 "Invalid token" unless query.token in users  accept users[query.token] }
  on connect { send { user: auth } }
}
test "the token's user" {
  connect a to /ws query { token: token }
  a expect { user: who }
}
""",
    )
    status, out = run_tests(path)
    assert status == 0, out
    status, out = run_tests(path, "--set", "token=bob-token", "--set", 'who={"name": "Bob"}')
    assert status == 0, out
    status, out = run_tests(path, "--set", "token=bob-token")
    assert status == 1
    assert '      at msg.user.name: expected "Alice", received "Bob"' in out
    status, _, err = run_cli("test", path, "--set", "tokn=x")
    assert status == 2
    assert "--set tokn: no file defines a constant 'tokn'" in err


@pytest.mark.e2e
def test_insecure_accepts_a_self_signed_target(
    tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    path = scenario(
        tmp_path,
        CHAT_ROUTE
        + """
test "over TLS" {
  connect a to /ws/chat
  a expect { type: "connected" }
}
""",
    )
    served = serve(path, extra=("--certfile", str(cert), "--keyfile", str(key)))
    refused = run_cli("test", path, "--target", served.base)
    assert refused.status == 1
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout
    assert run_cli("test", path, "--target", served.base, "--insecure").status == 0
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    trusted = run_cli("test", path, "--target", served.base)
    assert trusted.status == 0, trusted.stdout


# ---- servers that misbehave ----------------------------------------------------------------


@pytest.mark.e2e
def test_a_server_that_never_answers_fails_at_the_timeout(tmp_path: Path) -> None:
    """A socket that listens and never accepts: TCP connects, the handshake never ends."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        path = scenario(
            tmp_path,
            """
test "hangs" { connect a to /ws within 300ms }
test "also hangs" { connect a to /ws within 300ms }
""",
        )
        started = time.monotonic()
        status, out = run_tests(path, "--target", f"ws://127.0.0.1:{port}", "--jobs", "2")
        elapsed = time.monotonic() - started
    assert status == 1
    assert f"a could not connect to ws://127.0.0.1:{port}/ws within 300ms" in out
    assert "0 passed, 2 failed" in out
    assert elapsed < 10 * UNIT


@pytest.mark.e2e
def test_the_whole_test_is_bounded_by_timeout(tmp_path: Path) -> None:
    path = scenario(tmp_path, CHAT_ROUTE + 'test "slow" { wait 10s }\n')
    status, out = run_tests(path, "--timeout", "0.3")
    assert status == 1
    assert "the test did not finish within 300ms" in out


def test_nothing_listening(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        path = scenario(tmp_path, 'test "t" { connect a to /ws }\n')
        status, out = run_tests(path, "--target", f"ws://127.0.0.1:{port}")
    assert status == 1
    assert f"a could not connect to ws://127.0.0.1:{port}/ws:" in out


@pytest.mark.e2e
def test_tests_run_concurrently_each_against_a_fresh_mock(tmp_path: Path) -> None:
    """Eight strict tests join the same room: with a mock each they cannot hear one another,
    and side by side they take about as long as one."""
    tests = "\n".join(
        f"""
test "t{i}" strict {{
  connect a to /ws/chat
  a expect {{ type: "connected" }}
  connect b to /ws/chat
  b expect {{ type: "connected" }}
  a send {{ type: "join", username: "a" }}
  b send {{ type: "join", username: "b{i}" }}
  a expect {{ type: "user-joined", username: "b{i}" }}
  wait 500ms
}}"""
        for i in range(8)
    )
    started = time.monotonic()
    status, out = run_tests(scenario(tmp_path, CHAT_ROUTE + tests))
    elapsed = time.monotonic() - started
    assert status == 0, out
    assert "8 passed, 0 failed" in out
    assert elapsed < 3.5 * UNIT  # one at a time: over 4 s


# ---- the command itself --------------------------------------------------------------------


@pytest.mark.e2e
def test_filter_selects_tests() -> None:
    status, out = run_tests("scenarios", "-k", "token")
    assert status == 0, out
    assert "3 passed, 0 failed" in out
    assert all("private.mock::" in line for line in out.splitlines() if line.startswith("PASS"))


def test_no_tests_is_a_failure(tmp_path: Path) -> None:
    status, out = run_tests(scenario(tmp_path, CHAT_ROUTE))
    assert status == 1
    assert "no tests in 1 file" in out


def test_a_file_with_errors_is_not_run(tmp_path: Path) -> None:
    path = scenario(tmp_path, CHAT_ROUTE + 'test "t" { bob send 1 }\n')
    status, out = run_tests(path)
    assert status == 1
    assert f"{path}:10:12: error: client 'bob' is not connected here" in out
    assert "not testing: 1 error" in out


CONTRACT = """\
# A contract for the chat backend: tests only, no routes.
tests:
  - name: join
    steps:
      - { connect: alice, path: /api/ws/chat }
      - { connect: bob, path: /api/ws/chat }
      - { client: alice, send: { type: join, username: Alice } }
      - { client: bob, send: { type: join, username: Bob } }
      - { client: alice, expect: { type: user-joined, username: Bob } }
"""


@pytest.mark.e2e
def test_a_file_of_tests_only_runs_against_a_target(tmp_path: Path, backend: str) -> None:
    path = scenario(tmp_path, CONTRACT, "contract.yaml")
    assert run_cli("check", path).stdout == "ok: 1 file, 0 routes, 1 test\n"
    status, out = run_tests(path, "--target", backend)
    assert status == 0, out
    status, out = run_tests(path)
    assert status == 1
    assert "this file has no routes to test: run its tests against a server with --target" in out
    served = run_cli_process("serve", path, "--port", "0", timeout=20 * UNIT)
    assert served.returncode == 1
    assert "not serving: the files define no routes" in served.stderr


def test_target_must_be_a_websocket_url() -> None:
    result = run_cli("test", "scenarios", "--target", "http://localhost:8080")
    assert result.status == 2
    assert "must be a ws:// or wss:// URL" in result.stderr


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("ws://", "hostname isn't provided"),
        ("ws://h:99999", "Port out of range"),
        ("ws://h/base?x=1", "a target has no query or fragment"),
    ],
)
def test_a_bad_target_stops_the_command(target: str, problem: str) -> None:
    result = run_cli("test", "scenarios", "--target", target)
    assert result.status == 2
    assert problem in result.stderr
    assert "PASS" not in result.stdout and "FAIL" not in result.stdout


def test_an_unwritable_junit_file_stops_the_command_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("", encoding="utf-8")
    status, out, err = run_cli("test", "scenarios", "--junit", blocker / "x.xml")
    assert status == 2
    assert "cannot write it: a file stands where its folder should be" in err
    assert "PASS" not in out


@pytest.mark.e2e
def test_a_test_out_of_time_points_at_the_step_it_was_on(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        CHAT_ROUTE
        + """
test "slow" {
  connect a to /ws/chat
  wait 10s
}
""",
    )
    status, out = run_tests(path, "--timeout", "0.3")
    assert status == 1
    assert f"{path}:13:3: error: the test did not finish within 300ms" in out


@pytest.mark.e2e
def test_a_subprotocol_the_handshake_cannot_carry_fails_its_step(tmp_path: Path) -> None:
    path = scenario(tmp_path, CHAT_ROUTE + 'test "t" { connect a to /ws/chat protocols ["a b"] }\n')
    status, out = run_tests(path)
    assert status == 1
    assert f"{path}:10:12: error: a could not connect to ws://127.0.0.1:" in out
    assert "/ws/chat: invalid subprotocol: a b" in out


@pytest.mark.e2e
def test_junit_xml_stays_xml_with_control_characters(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        CHAT_ROUTE
        + """
test "bell \\u0007 name" {
  connect a to /ws/chat
  a expect { type: "nope" } within 100ms
}
""",
    )
    report = tmp_path / "junit.xml"
    assert run_tests(path, "--junit", str(report))[0] == 1
    (case,) = ET.parse(report).getroot().iter("testcase")
    assert case.get("name") == "bell \\x07 name"


def test_a_password_in_the_target_is_not_printed(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        path = scenario(tmp_path, 'test "t" { connect a to /ws }\n')
        status, out = run_tests(path, "--target", f"ws://user:s3cret@127.0.0.1:{port}")
    assert status == 1
    assert f"ws://user:***@127.0.0.1:{port}/ws" in out
    assert "s3cret" not in out

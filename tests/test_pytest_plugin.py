"""The pytest plugin, as a user's test suite sees it: generated test files run by pytester,
against real scenario files served on real sockets."""

from __future__ import annotations

# Imported here so that pytester's in-process runs find asyncio already loaded: a run that
# imports it first has it removed afterwards, and the next run's fresh copy no longer agrees
# with the C accelerator's classes (its CancelledError is not the one asyncio.timeout catches).
import asyncio  # noqa: F401

import pytest
from support import BOUND

pytest_plugins = ["pytester"]

ECHO = """\
route /echo {
  on message {
    send raw
  }
}
"""

BROKEN = """\
route /ws {
  on connect {
    sned "hi"
  }
}
"""


PLUGINS_LEFT_OUT = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:asyncio")


def run(suite: pytest.Pytester) -> pytest.RunResult:
    """Run the generated suite in this process. Hypothesis's plugin is left out: pytester
    forgets imported modules after each run, and it would import hypothesis anew (a second).
    So is pytest-asyncio's (there for the language server's tests): the generated suite does
    not use it, and it warns about a setting of its own in every run."""
    return suite.runpytest(*PLUGINS_LEFT_OUT)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A user's project: scenarios/echo.mock beside its tests."""
    pytester.mkdir("scenarios")
    (pytester.path / "scenarios" / "echo.mock").write_text(ECHO, encoding="utf-8")
    return pytester


@pytest.mark.e2e
def test_the_fixtures_serve_scenarios_to_sync_and_async_tests(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_user="""
        import asyncio

        import pytest
        from websockets.asyncio.client import connect as async_connect
        from websockets.sync.client import connect

        def test_factory(scenario_mock):
            mock = scenario_mock("scenarios/echo.mock")
            assert mock.url("/echo") == f"ws://127.0.0.1:{mock.port}/echo"
            with connect(mock.url("/echo"), open_timeout=BOUND) as ws:
                ws.send("hi")
                assert ws.recv(timeout=BOUND) == "hi"
                (conn,) = mock.connections()
                assert conn["route"] == "/echo"
                assert mock.send(connection=conn["id"], message={"pushed": 1}) == 1
                assert ws.recv(timeout=BOUND) == '{"pushed":1}'
                assert mock.send(route="/echo", binary=b"\\x00") == 1
                assert ws.recv(timeout=BOUND) == b"\\x00"
            assert mock.journal.wait_for("close", conn["id"], timeout=BOUND)["code"] == 1000
            assert mock.journal.messages_in() == ["hi"]
            assert mock.journal.messages_out(conn["id"]) == ["hi", '{"pushed":1}', b"\\x00"]

        @pytest.mark.scenario("scenarios/echo.mock")
        def test_marker(scenario_server):
            with connect(scenario_server.url("/echo"), open_timeout=BOUND) as ws:
                ws.send("marked")
                assert ws.recv(timeout=BOUND) == "marked"

        def test_async_client_on_its_own_loop(scenario_mock):
            mock = scenario_mock("scenarios/echo.mock")

            async def talk():
                async with async_connect(mock.url("/echo"), open_timeout=BOUND) as ws:
                    await ws.send("async")
                    return await asyncio.wait_for(ws.recv(), BOUND)

            assert asyncio.run(talk()) == "async"
            mock.journal.wait_for("close", timeout=BOUND)
            assert mock.reset() == 0

        PORTS = []

        def test_first_records_its_port(scenario_mock):
            PORTS.append(scenario_mock("scenarios/echo.mock").port)

        def test_the_server_of_an_ended_test_is_stopped():
            with pytest.raises(OSError):
                with connect(f"ws://127.0.0.1:{PORTS[0]}/echo", open_timeout=BOUND):
                    pass
    """.replace("BOUND", repr(BOUND))
    )
    result = run(suite)
    result.assert_outcomes(passed=5)


AUCTION = """\
state { highest: 0 }

route /ws {
  on message type "bid" {
    if msg.amount > state.highest {
      set state.highest = msg.amount
    }
    send { highest: state.highest }
  }
}
"""


@pytest.mark.e2e
def test_the_fixture_reads_and_sets_state_and_session(suite: pytest.Pytester) -> None:
    (suite.path / "scenarios" / "auction.mock").write_text(AUCTION, encoding="utf-8")
    suite.makepyfile(
        test_user="""
        import json

        import pytest
        from websockets.sync.client import connect

        from scenario_engine import AdminError

        def bid(ws, amount):
            ws.send(json.dumps({"type": "bid", "amount": amount}))
            return json.loads(ws.recv(timeout=BOUND))["highest"]

        def test_state(scenario_mock):
            mock = scenario_mock("scenarios/auction.mock")
            assert mock.state() == {"highest": 0}
            with connect(mock.url("/ws"), open_timeout=BOUND) as ws:
                assert bid(ws, 10) == 10
                assert mock.state("scenarios/auction.mock") == {"highest": 10}
                mock.set_state({"highest": 99})
                assert bid(ws, 50) == 99
                (conn,) = mock.connections()
                mock.set_session(conn["id"], {"name": "ann"})
                assert mock.session(conn["id"]) == {"name": "ann"}
                with pytest.raises(AdminError) as info:
                    mock.set_state([1])
                assert info.value.status == 400
            mock.journal.wait_for("close", conn["id"], timeout=BOUND)
            assert mock.reset() == 0
            assert mock.state() == {"highest": 0}

        def test_two_files_need_the_file(scenario_mock):
            mock = scenario_mock("scenarios/auction.mock", "scenarios/echo.mock")
            with pytest.raises(AdminError, match="say which"):
                mock.state()
            assert mock.state(file="scenarios/echo.mock") == {}
    """.replace("BOUND", repr(BOUND))
    )
    result = run(suite)
    result.assert_outcomes(passed=2)


def test_a_broken_scenario_fails_the_test_with_its_file_line_and_column(
    suite: pytest.Pytester,
) -> None:
    (suite.path / "scenarios" / "broken.mock").write_text(BROKEN, encoding="utf-8")
    suite.makepyfile(
        test_user="""
        def test_uses_broken(scenario_mock):
            scenario_mock("scenarios/broken.mock")
    """
    )
    result = run(suite)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*scenarios/broken.mock:3:5: error: unknown action 'sned'",
            '*3 |     sned "hi"',
            "*hint: did you mean 'send'?",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "another exception occurred" not in result.stdout.str()


def test_the_marker_fixture_says_what_it_needs(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        test_user="""
        def test_without_marker(scenario_server):
            pass

        def test_missing_file(scenario_mock):
            scenario_mock("scenarios/nope.mock")
    """
    )
    result = run(suite)
    result.assert_outcomes(errors=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*the scenario_server fixture needs @pytest.mark.scenario(PATH, ...)*",
            "*scenarios/nope.mock: no such file or directory*",
        ]
    )


TESTED_ECHO = (
    ECHO
    + """
test "echoes" {
  connect c to /echo
  c send { n: 1 }
  c expect { n: 1 }
}

test "expects too much" {
  connect c to /echo
  c send { n: 1 }
  c expect { n: 2 } within 200ms
}
"""
)


@pytest.mark.e2e
def test_test_blocks_are_collected_when_asked(suite: pytest.Pytester) -> None:
    (suite.path / "scenarios" / "echo.mock").write_text(TESTED_ECHO, encoding="utf-8")
    suite.makeini("[pytest]\nscenario_tests = true\n")
    result = run(suite)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "scenarios/echo.mock:16:3: error: c did not receive the expected message within 200ms",
            "   16 |   c expect { n: 2 } within 200ms",
            '*    expected {"n": 2}',
            '*    received {"n": 1}',
            "*      at msg.n: expected 2, received 1",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_test_blocks_are_not_collected_by_default(suite: pytest.Pytester) -> None:
    (suite.path / "scenarios" / "echo.mock").write_text(TESTED_ECHO, encoding="utf-8")
    result = run(suite)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_test_blocks_of_a_broken_file_are_a_collection_error(suite: pytest.Pytester) -> None:
    (suite.path / "scenarios" / "broken.mock").write_text(BROKEN, encoding="utf-8")
    result = suite.runpytest(*PLUGINS_LEFT_OUT, "--scenario-tests")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*scenarios/broken.mock:3:5: error: unknown action 'sned'*"])


def test_a_bad_scenario_target_is_a_usage_error(suite: pytest.Pytester) -> None:
    result = suite.runpytest(
        *PLUGINS_LEFT_OUT,
        "--scenario-tests",
        "--scenario-target",
        "localhost:1",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--scenario-target 'localhost:1': not a WebSocket URL*"])

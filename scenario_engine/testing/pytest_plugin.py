"""pytest plugin: scenario mocks as fixtures (registered as the ``scenario_engine`` pytest11
entry point, so installing the package is enough).

- ``scenario_mock``: a factory; ``scenario_mock("scenarios/chat.mock")`` serves those files on a
  free port for the test and returns a ``BackgroundServer`` (``url()``, ``journal``,
  ``send()``, ``connections()``, ``close()``, ``reset()``, ``state()``, ``set_state()``,
  ``session()``, ``set_session()``); every server it started stops when the test ends.
- ``scenario_server``: the server of the test's ``@pytest.mark.scenario(PATH, ...)`` marker.

Relative scenario paths are taken from pytest's rootdir. Scenarios with errors fail the test with
the errors as ``check`` prints them (``file:line:col: error: …``).

The server runs on an event loop of its own in a background thread, so sync and async tests (on
any loop) use it alike. The plugin imports the server only when a fixture is used: being
installed costs other test suites nothing.

With ``scenario_tests = true`` in the pytest configuration (or ``--scenario-tests``), the
``test`` blocks of the ``.mock`` files pytest collects become test items, each run against a
fresh mock of its file (or the server of ``--scenario-target``), and reported with the step's
file:line and the expected and received messages. Only ``.mock`` files are collected: a
``.yaml`` file may be anything, and a scenario kept in both spellings would run twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..runtime.background import BackgroundServer

__all__ = [
    "pytest_addoption",
    "pytest_collect_file",
    "pytest_configure",
    "scenario_mock",
    "scenario_server",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scenario-engine")
    group.addoption(
        "--scenario-tests",
        action="store_true",
        default=None,
        help="collect the test blocks of .mock files as tests",
    )
    group.addoption(
        "--scenario-target",
        metavar="URL",
        help="run the test blocks against this server (ws://host:port) instead of "
        "each file's own mock",
    )
    parser.addini(
        "scenario_tests",
        type="bool",
        default=False,
        help="collect the test blocks of .mock files as tests",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".mock":
        return None
    config = parent.config
    enabled = config.getoption("scenario_tests")
    if not (enabled if enabled is not None else config.getini("scenario_tests")):
        return None
    from .pytest_items import ScenarioFile

    collector: pytest.Collector = ScenarioFile.from_parent(parent, path=file_path)
    return collector


def pytest_configure(config: pytest.Config) -> None:
    target = config.getoption("scenario_target", None)
    if target is not None:
        from .conversation import check_target

        try:
            check_target(target)
        except ValueError as err:
            raise pytest.UsageError(f"--scenario-target {target!r}: {err}") from None
    config.addinivalue_line(
        "markers",
        "scenario(*paths, **options): serve these scenario files for the test "
        "(fixture scenario_server); options as the scenario_mock factory's",
    )


@pytest.fixture
def scenario_mock(request: pytest.FixtureRequest) -> Iterator[Callable[..., BackgroundServer]]:
    """Start mocks from scenario files: ``scenario_mock(*paths, **options)``, options as
    BackgroundServer's (``host``, ``journal_size``, ``admin``…)."""
    started: list[BackgroundServer] = []

    def start(*paths: str | Path, **options: Any) -> BackgroundServer:
        if not paths:
            raise TypeError("scenario_mock() needs at least one scenario file or directory")
        mock = _load(request.config.rootpath, paths, options)
        mock.start()
        started.append(mock)
        return mock

    yield start
    for mock in reversed(started):
        mock.stop()


@pytest.fixture
def scenario_server(
    request: pytest.FixtureRequest, scenario_mock: Callable[..., BackgroundServer]
) -> BackgroundServer:
    """The mock of the test's ``@pytest.mark.scenario(PATH, ...)`` marker."""
    marker = request.node.get_closest_marker("scenario")
    if marker is None or not marker.args:
        pytest.fail(
            "the scenario_server fixture needs @pytest.mark.scenario(PATH, ...) on "
            "the test, its class or its module",
            pytrace=False,
        )
    return scenario_mock(*marker.args, **marker.kwargs)


def _load(
    rootdir: Path, paths: tuple[str | Path, ...], options: dict[str, Any]
) -> BackgroundServer:
    """A (not yet started) server for the scenarios; fails the test on scenario errors."""
    from ..errors import ScenarioErrors, UsageError
    from ..runtime.background import BackgroundServer
    from .pytest_items import shown_path

    try:
        return BackgroundServer.from_paths([shown_path(rootdir / p) for p in paths], **options)
    except ScenarioErrors as err:
        message = err.format_text()
    except UsageError as err:
        message = str(err)
    # Outside the except clause: the report is the errors alone, not a chain of exceptions.
    pytest.fail(message, pytrace=False)

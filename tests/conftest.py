"""Shared fixtures: a real `scenario-engine serve` process on a free port; a real Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import SCENARIOS, RedisServer, ServedMock, start_mock


@pytest.fixture(scope="session")
def mock_server() -> Iterator[ServedMock]:
    """All of scenarios/ served together, shared by the tests that only talk to it."""
    served = start_mock(SCENARIOS)
    yield served
    served.stop()


@pytest.fixture
def serve() -> Iterator[Callable[..., ServedMock]]:
    """Start a private server for a test (for scenarios written by the test)."""
    started: list[ServedMock] = []

    def run(*paths: str | Path, extra: tuple[str, ...] = ()) -> ServedMock:
        served = start_mock(*paths, extra=extra)
        started.append(served)
        return served

    yield run
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server for the tests of a module (mark them with support.NEEDS_REDIS)."""
    server = RedisServer().start()
    yield server
    server.stop()

"""Shared fixtures: a real `scenario-engine serve` process on a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
#: Every wait in the suite is a multiple of this, so a slow machine can scale them all.
UNIT = float(os.environ.get("SCENARIO_TEST_UNIT", "1.0"))


@dataclass
class ServedMock:
    """A running ``scenario-engine serve``: its process, base URL, and route URLs."""

    process: subprocess.Popen[str]
    base: str
    urls: list[str]
    log_lines: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10 * UNIT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def stderr_text(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read()


def start_mock(*paths: str | Path, extra: tuple[str, ...] = ()) -> ServedMock:
    """Start ``serve`` on port 0 and wait until it has printed every route URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scenario_engine", "serve", *map(str, paths), "--port", "0",
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    urls: list[str] = []
    deadline = time.monotonic() + 20 * UNIT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("serve exited early:\n" + (process.stderr.read()
                                                          if process.stderr else ""))
        match = re.match(r"serving (wss?://[^/]+)(/\S*)", line)
        if match:
            urls.append(match.group(1) + match.group(2))
        elif line.startswith("ready:"):
            base = re.match(r"(wss?://[^/]+)", urls[0]).group(1)  # type: ignore[union-attr]
            return ServedMock(process, base, urls)
    process.kill()
    raise RuntimeError("serve did not print its routes in time")


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

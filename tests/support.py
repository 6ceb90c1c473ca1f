"""What the tests share: paths, the time unit, and a real `scenario-engine serve` process on a
free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
#: Every wait in the suite is a multiple of this, so a slow machine can scale them all.
UNIT = float(os.environ.get("SCENARIO_TEST_UNIT", "1.0"))


class LogTail:
    """Drains a server's stderr in a thread (so its pipe never fills and blocks the server)
    and lets a test wait for a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, within: float = 10 * UNIT) -> str:
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((x for x in self.lines if regex.search(x)), None), within)
        assert found, (f"no server log line matching {pattern!r} within {within:.1f}s; log:\n"
                       + "\n".join(self.lines[-30:]))
        return found

    def join(self) -> None:
        self._thread.join(timeout=10 * UNIT)


@dataclass
class ServedMock:
    """A running ``scenario-engine serve``: its process, base URL, route URLs and log."""

    process: subprocess.Popen[str]
    base: str
    urls: list[str]
    log: LogTail

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10 * UNIT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def stderr_text(self) -> str:
        """What the server has logged so far."""
        return "\n".join(self.log.lines)


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
            assert process.stderr is not None
            return ServedMock(process, base, urls, LogTail(process.stderr))
    process.kill()
    raise RuntimeError("serve did not print its routes in time")

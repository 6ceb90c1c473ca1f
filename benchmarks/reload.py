"""How long ``serve --watch`` takes from a file's write to serving its new version.

    python benchmarks/reload.py [--runs 20] [--file basic.mock] [--loop auto|asyncio|uvloop]

A copy of scenarios/ is served with ``--watch``. Each run writes the file (``--file``; its
first ``send`` of ``on connect`` gets a new ``"rev"`` field) as an editor saves it, into a
temporary file renamed over the original (every file of the folder is loaded again, as on any
change: which one is edited matters little); a client connected to the edited route waits for
its close (1012: the new version is in place), then a new client connects and must get the
new ``rev``. Reported, median and max over the runs:

  write → 1012    the file's write to the old client's close: the watcher's wait for the
                  writes to settle (cli/serve.py WATCH_STEP_MS), loading, checking and
                  compiling every file, the swap;
  write → served  the same, to the new client's first message (its handshake included);
  server's own    the time the server's log line gives: from the change handed over by the
                  watcher to the new version served.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
#: Up to the first ``send {`` of the first ``on connect``.
ON_CONNECT_SEND = re.compile(r"(on connect \{.*?\bsend \{)", re.S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    # Not chat.mock: chat.yaml is the same scenario, and must stay the same.
    parser.add_argument("--file", default="basic.mock", help="file of scenarios/ to edit")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        served = Path(folder) / "scenarios"
        shutil.copytree(ROOT / "scenarios", served)
        edited = served / args.file
        original = edited.read_text(encoding="utf-8")
        if not ON_CONNECT_SEND.search(original):
            raise SystemExit(f"{args.file}: no 'send' in an 'on connect' to edit")
        server = Server(served, args.loop)
        try:
            url = server.url_of(original, edited)
            print(
                f"{len(server.urls)} routes served; editing {args.file} ({url}), {args.runs} runs"
            )
            closes, serving, reported = [], [], []
            for rev in range(1, args.runs + 1):
                with connect(url, open_timeout=10) as before:
                    before.recv(timeout=10)
                    text = ON_CONNECT_SEND.sub(rf'\1 rev: "r{rev}",', original, count=1)
                    started = time.perf_counter()
                    save(edited, text)
                    try:
                        got = before.recv(timeout=10)
                    except ConnectionClosed:
                        closes.append(time.perf_counter() - started)
                    else:
                        raise SystemExit(f"the old client got {got!r} instead of a close")
                    if before.close_code != 1012:
                        raise SystemExit(f"the old client was closed with {before.close_code}")
                with connect(url, open_timeout=10) as after:
                    first = after.recv(timeout=10)
                    serving.append(time.perf_counter() - started)
                if json.loads(first).get("rev") != f"r{rev}":
                    raise SystemExit(f"run {rev}: the new client got {first!r}")
                reported.append(server.reload_ms(rev))
        finally:
            server.stop()
    print(f"{'':16} {'median':>8} {'max':>8}")
    for name, values in (
        ("write → 1012", [s * 1000 for s in closes]),
        ("write → served", [s * 1000 for s in serving]),
        ("server's own", reported),
    ):
        print(f"{name:16} {statistics.median(values):6.0f}ms {max(values):6.0f}ms")


def save(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class Server:
    """``scenario-engine serve FOLDER --watch`` on a free port, its log read in a thread."""

    def __init__(self, folder: Path, loop: str) -> None:
        command = [sys.executable, "-m", "scenario_engine", "serve", str(folder), "--watch"]
        self.process = subprocess.Popen(
            [*command, "--port", "0", "--loop", loop],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.urls: list[str] = []
        for line in self.process.stdout:
            if line.startswith("serving "):
                self.urls.append(line.split()[1])
            elif line.startswith("ready:"):
                break
        else:
            raise SystemExit("serve exited:\n" + self.process.stderr.read())
        self.reloads: list[float] = []
        self._logged = threading.Condition()
        threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            found = re.search(r"reloaded .* in (\d+) ms", line)
            if found:
                with self._logged:
                    self.reloads.append(float(found[1]))
                    self._logged.notify_all()

    def reload_ms(self, count: int) -> float:
        """The server's own time of the ``count``-th reload, once it has logged it."""
        with self._logged:
            if not self._logged.wait_for(lambda: len(self.reloads) >= count, timeout=10):
                raise SystemExit(f"reload {count} was not logged")
        return self.reloads[count - 1]

    def url_of(self, text: str, path: Path) -> str:
        """The URL of the first route of the file (the one whose ``on connect`` is edited)."""
        prefix = re.search(r"^prefix (\S+)", text, re.M)
        route = re.search(r"^route (\S+)", text, re.M)
        assert route is not None, path
        full = (prefix[1] if prefix else "") + route[1]
        return next(url for url in self.urls if url.endswith(full))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


if __name__ == "__main__":
    main()

"""Profile a server under one benchmark workload with py-spy; print its top functions.

    pip install py-spy
    python benchmarks/profile.py fanout|reqreply|accept|timers [--server engine|baseline]
                                 [--duration 8] [--out DIR]

Runs the workload of benchmarks/run.py (same scenario, same load generator) while
``py-spy record`` samples the server process during the measured window (the accept storm: from
its start until every client is open; timers: 10,000 connections with a 1 s timer each that sets
the session, or with ``--variant send`` sends, sampled once every timer has run). Prints the
functions with the most samples, by self time (the function itself was running) and by total
time (the function was on the stack), and writes the collapsed stacks (``--out``, default a
temporary folder) for a flame graph (``flamegraph.pl``, speedscope.app, or
``py-spy record --format speedscope`` instead). py-spy counts a server waiting in ``select``
as running (timers: most samples): read the shares of the other frames relative to each other.

Sampling slows the server: profile runs are for finding where the time goes, not for the
numbers of the table. py-spy pauses the process for each sample, which over-represents the
frames that make system calls (``_SelectorSocketTransport.write``); for the split between the
interpreter and the kernel use ``perf record -g -p PID`` (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import TIMER_FILES, TIMER_PATHS, Load, Server, ensure_node, next_event, raise_open_files

PATHS = {"fanout": "/ws/chat", "reqreply": "/ws/ping", "accept": "/ws/idle", "timers": ""}
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    """'send (websockets/asyncio/connection.py:412)' without the line: one entry per function."""
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3.", "/scenario_engine/", "/benchmarks/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = path.split("/", 1)[1] if "/" in path else path
            elif marker == "/scenario_engine/":
                path = "scenario_engine/" + path
            break
    return f"{match.group('function')} ({path})"


def summarize(collapsed: Path, top: int) -> str:
    self_samples: collections.Counter[str] = collections.Counter()
    total_samples: collections.Counter[str] = collections.Counter()
    overall = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        overall += count
        frames = [short(f) for f in stack.split(";")]
        # py-spy puts "process …" / "thread …" first with some options; keep only frames.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        self_samples[frames[-1]] += count
        for name in set(frames):
            total_samples[name] += count
    lines = [f"{overall} samples"]
    for title, counter in (("self", self_samples), ("total (on the stack)", total_samples)):
        lines.append(f"\ntop {top} by {title}:")
        for name, count in counter.most_common(top):
            lines.append(f"  {count / overall:6.1%}  {name}")
    return "\n".join(lines)


def py_spy(pid: int, seconds: float, collapsed: Path, rate: int, nonblocking: bool) -> list[str]:
    return [
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--duration",
        str(int(seconds + 0.999)),
        "--format",
        "raw",
        "--output",
        str(collapsed),
        *(["--nonblocking"] if nonblocking else []),
    ]


def spy_on_timers(args: argparse.Namespace, collapsed: Path) -> None:
    """Hold the connections of the timer workload and sample the server for --duration s."""
    clients = args.clients or 10_000
    raise_open_files(clients + 1000)
    with Server(args.server, files=TIMER_FILES) as server:
        url = server.url(TIMER_PATHS[args.variant])
        with Load("hold", url, clients=clients) as load:
            events = load.events()
            next_event(events, "ready")
            time.sleep(3)  # every timer has run
            spy = subprocess.run(
                py_spy(server.pid, args.duration, collapsed, args.rate, args.nonblocking),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            load.tell("close")
            for _ in events:
                pass
    if not collapsed.exists():
        sys.exit(f"py-spy wrote nothing: {spy.stderr.decode(errors='replace')}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workload", choices=sorted(PATHS))
    parser.add_argument("--server", choices=("engine", "baseline"), default="engine")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument(
        "--clients", type=int, help="accept: clients (default 5000); timers: (default 10000)"
    )
    parser.add_argument("--variant", choices=("set", "send"), default="set", help="timers")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--out", help="folder for the collapsed stacks")
    parser.add_argument(
        "--nonblocking",
        action="store_true",
        help="do not pause the server for each sample (less overhead, but stacks may be torn)",
    )
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("profile.py needs py-spy: pip install py-spy")
    ensure_node()
    out = Path(args.out or tempfile.mkdtemp(prefix="profile-"))
    out.mkdir(parents=True, exist_ok=True)
    collapsed = out / f"{args.workload}-{args.server}.txt"
    if args.workload == "timers":
        spy_on_timers(args, collapsed)
        print(f"\n{args.server} server, timers ({args.variant}): collapsed stacks in {collapsed}")
        print(summarize(collapsed, args.top))
        return
    with Server(args.server) as server:
        url = server.url(PATHS[args.workload])
        if args.workload == "accept":
            with Load("accept", url, clients=100) as warm:
                for _ in warm.events():
                    pass
            options = {"clients": args.clients or 5000}
            seconds = 30.0  # stopped once the storm is over
        else:
            options = {"duration": args.duration, "warmup": 2}
            seconds = args.duration
        spy = None
        with Load(args.workload, url, **options) as load:
            for event in load.events():
                if event["event"] == "start":
                    spy = subprocess.Popen(
                        py_spy(server.pid, seconds, collapsed, args.rate, args.nonblocking),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                    time.sleep(0.3)  # py-spy attaches
                elif event["event"] == "end" and spy is not None and args.workload == "accept":
                    spy.send_signal(2)  # SIGINT: py-spy writes what it has
                elif event["event"] == "result":
                    print({k: v for k, v in event.items() if k != "event"})
        if spy is not None:
            _, err = spy.communicate(timeout=60)
            if not collapsed.exists():
                sys.exit(f"py-spy wrote nothing: {err.decode(errors='replace')}")
    print(f"\n{args.server} server, {args.workload}: collapsed stacks in {collapsed}")
    print(summarize(collapsed, args.top))


if __name__ == "__main__":
    main()

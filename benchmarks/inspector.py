"""What an open inspector costs the mock: fan-out with ``serve --ui`` and no inspector open,
against the same with one feed client reading as an open tab does.

    python benchmarks/inspector.py [--duration 8] [--warmup 2] [--rounds 3] [--json FILE]

Three engine servers of benchmarks/fanout.mock, driven by run.py's fan-out workload (100
clients in room "chat", 10 senders in a closed loop, Node's load generator):

  admin     ``serve --admin``: the admin API and its journal, no inspector;
  ui        ``serve --ui``, no inspector open: the same journal, and the feed's timer does not
            run (the target: the same as admin);
  ui+feed   ``serve --ui`` and one feed client on /__admin/live from the start: this script
            run with ``--read-feed URL``, a Python process that reads every message and parses
            it as JSON, as the page does.

The feed's cost is ui+feed against ui: deliveries/s (the target: at least 0.95x) and server CPU
per delivery; ui against admin is what --ui costs with no inspector open (nothing). Each round
runs the three, the order reversed every other round; the figures are over every round. The
machine's settings (pinning, malloc, waiting for a quiet machine) are run.py's; the feed reader
runs on the load generator's CPU and its CPU time is not counted as noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import run
from run import Load, Server, ServerSpec, Window, measure, proc_cpu

FEED_PATH = "/__admin/live"
COLUMNS = ("admin", "ui", "ui+feed")


# ---- the feed reader ---------------------------------------------------------------------------


def read_feed(url: str) -> None:
    """Read the feed until SIGTERM, parsing every message; then print what was read as JSON."""
    from websockets.asyncio.client import connect

    counts = {"messages": 0, "bytes": 0, "events": 0, "dropped": 0, "rows": 0}

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with connect(url, max_size=None) as feed:
            print(json.dumps({"event": "ready"}), flush=True)

            async def consume() -> None:
                async for message in feed:
                    data = json.loads(message)
                    counts["messages"] += 1
                    counts["bytes"] += len(message)
                    counts["events"] += len(data.get("events", ()))
                    counts["dropped"] += data.get("dropped", 0)
                    counts["rows"] += len(data.get("connections", ()))

            reading = asyncio.create_task(consume())
            await stop.wait()
            reading.cancel()
        print(json.dumps({"event": "result", **counts}), flush=True)

    asyncio.run(main())


class FeedReader:
    """``--read-feed`` in a process of its own, on the load generator's CPU."""

    def __init__(self, url: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--read-feed", url],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=run.pin_to(run.LOAD_CPU),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line or json.loads(line)["event"] != "ready":
            raise RuntimeError("the feed reader did not connect")

    def cpu(self) -> float:
        return proc_cpu(self.process.pid)

    def stop(self) -> dict[str, Any]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=10)
        return dict(json.loads(out.strip().splitlines()[-1]))


# ---- runs --------------------------------------------------------------------------------------


@dataclass
class Run:
    window: Window
    feed: dict[str, Any] | None  # what the reader read (None: no reader)
    feed_cpu: float  # the reader's CPU seconds over the whole run


def fanout(column: str, spec: ServerSpec, duration: float, warmup: float) -> Run:
    options = ("--admin",) if column == "admin" else ("--ui",)

    def attempt() -> Run:
        with Server(spec, options=options) as server:
            reader = FeedReader(server.url(FEED_PATH)) if column == "ui+feed" else None
            before = reader.cpu() if reader else 0.0
            try:
                with Load(
                    "fanout", server.url("/ws/chat"), duration=duration, warmup=warmup, client="raw"
                ) as load:
                    window = measure(server, load)
            finally:
                used = reader.cpu() - before if reader else 0.0
                read = reader.stop() if reader else None
        # The reader is part of the experiment, not noise from other processes.
        window.other_cpu = max(0.0, window.other_cpu - used * window.seconds / (duration + warmup))
        return Run(window, read, used)

    result: Run = run.least_noisy(attempt, lambda r: r.window.other_share)
    return result


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--read-feed":
        read_feed(sys.argv[2])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each column (default 3)")
    parser.add_argument("--quiet-wait", type=float, default=run.QUIET_WAIT)
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    run.QUIET_WAIT = args.quiet_wait
    run.PIN = len(os.sched_getaffinity(0)) >= 2
    if run.PIN:
        run.SERVER_CPU, run.LOAD_CPU = sorted(os.sched_getaffinity(0))[:2]
    run.ensure_node()
    spec = run.SERVERS["engine"]
    runs: dict[str, list[Run]] = {column: [] for column in COLUMNS}
    for r in range(args.rounds):
        for column in COLUMNS if r % 2 == 0 else COLUMNS[::-1]:
            print(f"… fanout {column} (round {r + 1} of {args.rounds})", file=sys.stderr)
            runs[column].append(fanout(column, spec, args.duration, args.warmup))

    def rate(column: str) -> float:
        windows = [x.window for x in runs[column]]
        return sum(w.result["deliveries"] for w in windows) / sum(
            w.result["seconds"] for w in windows
        )

    def cpu_us(column: str) -> float:
        windows = [x.window for x in runs[column]]
        return (
            sum(w.server_cpu for w in windows) / sum(w.result["deliveries"] for w in windows) * 1e6
        )

    info = run.versions()
    print(f"date: {info['date']}; {info['cpus']} CPUs, {info['cpu']}; Python {info['python']}")
    print(f"{'':28}" + "".join(f"{c:>14}" for c in COLUMNS))
    print(f"{'fan-out deliveries/s':28}" + "".join(f"{rate(c):>14,.0f}" for c in COLUMNS))
    print(f"{'server CPU µs/delivery':28}" + "".join(f"{cpu_us(c):>14.3f}" for c in COLUMNS))
    ratio = rate("ui+feed") / rate("ui")
    print(
        f"\nthe open inspector's cost: ui+feed / ui = {ratio:.3f}x the deliveries/s "
        f"({'met' if ratio >= 0.95 else 'MISSED'}: target ≥ 0.95x), "
        f"{cpu_us('ui+feed') / cpu_us('ui'):.3f}x the server CPU per delivery"
    )
    print(
        f"--ui with no inspector open: ui / admin = {rate('ui') / rate('admin'):.3f}x the "
        f"deliveries/s, {cpu_us('ui') / cpu_us('admin'):.3f}x the server CPU per delivery"
    )
    for column in COLUMNS:
        print(
            f"{column}: each round "
            + ", ".join(
                f"{x.window.result['deliveries'] / x.window.result['seconds']:,.0f}/s "
                f"(server {x.window.server_share:.0%}, load generator "
                f"{x.window.client_share:.0%}, others {x.window.other_share:.0%})"
                for x in runs[column]
            )
        )
    for x in runs["ui+feed"]:
        feed = x.feed or {}
        seconds = args.duration + args.warmup
        print(
            f"feed read: {feed.get('messages', 0):,} messages, {feed.get('bytes', 0) / 1e6:.1f} "
            f"MB, {feed.get('events', 0):,} events shown, {feed.get('dropped', 0):,} left out; "
            f"reader CPU {x.feed_cpu / seconds:.0%} of a core"
        )
    if args.json:
        raw = {
            column: [{"window": vars(x.window), "feed": x.feed} for x in xs]
            for column, xs in runs.items()
        }
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": info, "runs": raw, "at": time.time()}, out, indent=2)


if __name__ == "__main__":
    main()

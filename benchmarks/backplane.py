"""What the Redis backplane costs: the same load on one process, and on several processes
joined through Redis (``serve --backplane``).

    python benchmarks/backplane.py [--only fanout,state] [--duration 8] [--warmup 2]
                                   [--rounds 3] [--json FILE]

fanout  run.py's fan-out workload (benchmarks/fanout.mock: 100 clients in room "chat", 10
        senders in a closed loop, every message broadcast to the room, sender included;
        Node's load generator), on
          one   one engine process, every client on it;
          two   two engine processes with ``--backplane redis://…`` to a redis-server this
                script starts (no persistence), the clients (and the senders) on each in turn:
                each broadcast reaches 50 clients of its process directly and 50 of the other
                through one PUBLISH.
        Reported: deliveries/s, CPU per delivery (servers, and Redis), and the backplane's cost
        per broadcast: the CPU two processes and Redis use per broadcast beyond what one
        process uses, also counted in deliveries of one process (how many more clients a
        broadcast could have reached for it).
state   run.py's request-reply workload (50 clients in a closed loop) on benchmarks/state.mock,
        where every request is a read-then-set of the file's state, on
          one        one process, its state in memory;
          one+redis  one process with --backplane: every request waits for the state's lock;
          two        two processes with --backplane, the clients on each in turn.
        Reported: replies/s, CPU per reply (servers and Redis), latency.

The servers and Redis run on the server's CPU, the load generator on the other (run.py's
pinning): every column has one core, so that their CPU figures compare. Each round runs every
column, the order reversed every other round; the figures are over every round. Needs
redis-server and the [redis] extra.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import run
from run import Load, Server, Snapshot, proc_cpu

#: Each workload's columns: how many processes, with a backplane or not.
COLUMNS = {
    "fanout": {"one": (1, False), "two": (2, True)},
    "state": {"one": (1, False), "one+redis": (1, True), "two": (2, True)},
}


class Redis:
    """redis-server on a free port, without persistence, on the server's CPU."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--logfile", ""),
            ],
            stdout=subprocess.DEVNULL,
            preexec_fn=run.pin_to(run.SERVER_CPU),
        )
        self.pid = self.process.pid
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Measured:
    """One measured window: the load generator's result, and CPU seconds of each process."""

    result: dict[str, Any]
    seconds: float
    servers_cpu: float
    redis_cpu: float
    other_cpu: float

    @property
    def other_share(self) -> float:
        return self.other_cpu / self.seconds


def measured_run(workload: str, column: str, duration: float, warmup: float) -> Measured:
    processes, backplane = COLUMNS[workload][column]
    files, path = (
        (("fanout.mock",), "/ws/chat") if workload == "fanout" else (("state.mock",), "/ws/ping")
    )
    mode, options = ("fanout", {"client": "raw"}) if workload == "fanout" else ("reqreply", {})

    def attempt() -> Measured:
        with Redis() as redis:
            extra = ("--backplane", redis.url) if backplane else ()
            servers = [Server("engine", files=files, options=extra) for _ in range(processes)]
            try:
                urls = ",".join(server.url(path) for server in servers)
                with Load(mode, urls, duration=duration, warmup=warmup, **options) as load:
                    pids = [server.pid for server in servers]
                    return measure(load, pids, redis.pid if backplane else None)
            finally:
                for server in servers:
                    server.__exit__()

    result: Measured = run.least_noisy(attempt, lambda m: m.other_share)
    return result


def measure(load: Load, pids: list[int], redis: int | None) -> Measured:
    def cpu() -> tuple[float, float, float, float]:
        moment = Snapshot.take(pids[0])
        return (
            moment.time,
            sum(proc_cpu(pid) for pid in pids),
            proc_cpu(redis) if redis is not None else 0.0,
            moment.machine,
        )

    start = end = None
    result: dict[str, Any] = {}
    for event in load.events():
        if event["event"] == "start":
            start = cpu()
        elif event["event"] == "end":
            end = cpu()
        elif event["event"] == "result":
            result = event
    if start is None or end is None or not result:
        raise RuntimeError("load generator ended without a measured window")
    seconds = end[0] - start[0]
    servers, redis_cpu = end[1] - start[1], end[2] - start[2]
    other = (end[3] - start[3]) - servers - redis_cpu - result["client_cpu_seconds"]
    return Measured(result, seconds, servers, redis_cpu, max(0.0, other))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="fanout,state", help="workloads (default both)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each column (default 3)")
    parser.add_argument("--quiet-wait", type=float, default=run.QUIET_WAIT)
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("benchmarks/backplane.py: redis-server is needed (apt-get install redis-server)")
    run.QUIET_WAIT = args.quiet_wait
    run.PIN = len(os.sched_getaffinity(0)) >= 2
    if run.PIN:
        run.SERVER_CPU, run.LOAD_CPU = sorted(os.sched_getaffinity(0))[:2]
    run.ensure_node()
    workloads = [w for w in args.only.split(",") if w]
    runs: dict[str, dict[str, list[Measured]]] = {}
    for workload in workloads:
        columns = tuple(COLUMNS[workload])
        runs[workload] = {column: [] for column in columns}
        for r in range(args.rounds):
            for column in columns if r % 2 == 0 else columns[::-1]:
                print(f"… {workload} {column} (round {r + 1} of {args.rounds})", file=sys.stderr)
                runs[workload][column].append(
                    measured_run(workload, column, args.duration, args.warmup)
                )
    info = run.versions()
    print(
        f"date: {info['date']}; {info['cpus']} CPUs, {info['cpu']}; Python {info['python']}; "
        f"load average {info['loadavg']}"
    )
    if "fanout" in runs:
        report_fanout(runs["fanout"])
    if "state" in runs:
        report_state(runs["state"])
    if args.json:
        raw = {
            workload: {column: [vars(m) for m in ms] for column, ms in columns.items()}
            for workload, columns in runs.items()
        }
        Path(args.json).write_text(json.dumps({"info": info, "runs": raw}, indent=2) + "\n")


def table(columns: dict[str, list[Measured]], rows: list[tuple[str, Any, str]]) -> None:
    names = list(columns)
    print(
        f"\n{'':42}"
        + "".join(f"{c:>12}" for c in names)
        + "".join(f"{c + ' / one':>18}" for c in names[1:])
    )
    for label, figure, shape in rows:
        values = [figure(columns[c]) for c in names]
        print(
            f"{label:42}"
            + "".join(shape.format(v) for v in values)
            + "".join(f"{v / values[0]:>17.2f}x" for v in values[1:])
        )


def total(measured: list[Measured], key: str) -> float:
    return float(sum(m.result[key] for m in measured))


def cpu_per(measured: list[Measured], key: str, redis: bool = True) -> float:
    """CPU µs of the servers (and Redis) per item counted under ``key``."""
    cpu = sum(m.servers_cpu + (m.redis_cpu if redis else 0.0) for m in measured)
    return cpu / total(measured, key) * 1e6


def rounds(columns: dict[str, list[Measured]], key: str) -> None:
    for column, measured in columns.items():
        print(
            f"{column}: each round "
            + ", ".join(
                f"{m.result[key] / m.result['seconds']:,.0f}/s (servers "
                f"{m.servers_cpu / m.seconds:.0%}, Redis {m.redis_cpu / m.seconds:.0%}, load "
                f"generator {m.result['client_cpu_share']:.0%}, others {m.other_share:.0%})"
                for m in measured
            )
        )


def report_fanout(columns: dict[str, list[Measured]]) -> None:
    table(
        columns,
        [
            (
                "fan-out: deliveries/s",
                lambda m: total(m, "deliveries") / total(m, "seconds"),
                "{:>12,.0f}",
            ),
            (
                "  CPU µs per delivery (servers + Redis)",
                lambda m: cpu_per(m, "deliveries"),
                "{:>12.3f}",
            ),
            ("  … servers alone", lambda m: cpu_per(m, "deliveries", redis=False), "{:>12.3f}"),
            ("  CPU µs per broadcast (to 100 clients)", lambda m: cpu_per(m, "sent"), "{:>12.1f}"),
        ],
    )
    one, two = columns["one"], columns["two"]
    extra = cpu_per(two, "sent") - cpu_per(one, "sent")
    delivery = cpu_per(one, "deliveries")
    redis = sum(m.redis_cpu for m in two) / total(two, "sent") * 1e6
    print(
        f"the backplane's cost per broadcast: {extra / cpu_per(one, 'sent'):.2f}x the CPU of a "
        f"broadcast in one process, as much as {extra / delivery:.0f} deliveries there "
        f"(Redis's own part: {redis / delivery:.1f} deliveries)"
    )
    rounds(columns, "deliveries")


def report_state(columns: dict[str, list[Measured]]) -> None:
    table(
        columns,
        [
            ("state: replies/s", lambda m: total(m, "replies") / total(m, "seconds"), "{:>12,.0f}"),
            ("  CPU µs per reply (servers + Redis)", lambda m: cpu_per(m, "replies"), "{:>12.1f}"),
            ("  … servers alone", lambda m: cpu_per(m, "replies", redis=False), "{:>12.1f}"),
            (
                "  latency p50 ms (median of rounds)",
                lambda m: statistics.median(x.result["latency_ms"]["p50"] for x in m),
                "{:>12.2f}",
            ),
            (
                "  latency p99 ms (median of rounds)",
                lambda m: statistics.median(x.result["latency_ms"]["p99"] for x in m),
                "{:>12.2f}",
            ),
        ],
    )
    rounds(columns, "replies")


if __name__ == "__main__":
    main()

"""Run the benchmarks: the engine against the same behaviour written by hand on websockets.

    python benchmarks/run.py [--only fanout,reqreply,accept,idle,compile] [--duration 8]
                             [--rounds 2] [--json results.json]   (--help: every option)

Each server workload starts the engine (``scenario-engine serve benchmarks/fanout.mock
benchmarks/reqreply.mock --quiet``) and then the baseline (benchmarks/baseline_server.py, the
same routes on websockets' asyncio server), one after the other, each on a free port, and drives
it with benchmarks/node/load.mjs (Node's ``ws``, a separate process). The server's CPU time
(utime + stime of /proc/PID/stat) is read when the measured window opens and closes, as is the
CPU time of the whole machine (/proc/stat), so that the table shows how much the load generator
and any other process used meanwhile.

fanout    100 clients join room "chat" on /ws/chat; 10 of them send chat messages in a closed
          loop (the next message once the sender has received its own back); every message is
          broadcast to the room, sender included. Deliveries/s (messages received by all
          clients), server CPU per delivery, latency from send to receipt of one's own message.
reqreply  50 clients on /ws/ping send {"type":"ping","seq":n} in a closed loop and get
          {"type":"pong","seq":n,"id":conn id,"timestamp":ms}. Replies/s, server CPU per reply.
accept    5,000 raw TCP clients send the opening handshake to /ws/idle at once; time until the
          last one has its "101 Switching Protocols". SYN retransmissions and listen-queue
          overflows from the kernel's counters (/proc/net/netstat). Listen backlog 4096 on both
          sides, then the baseline once more with asyncio's default backlog (100).
idle      (RSS with N idle connections - RSS before) / N, on /ws/idle, with permessage-deflate
          offered by the client and negotiated by both servers; the baseline is plain
          websockets with its default compression ("deflate").
compile   `scenario-engine check` of a generated 10,000-line scenario, as a whole process
          (start-up, parsing, schema and semantic checks), median of N runs after a warm-up.
timers    10,000 raw clients (one Node process) hold a connection each: on /ws/tick/later
          (no timers), /ws/tick/set (a 1 s timer per connection that sets session.n) and
          /ws/tick/send (the same timer sending {"n":count}; the clients read); each on a fresh
          server. Server CPU over a steady window (--timer-duration, 20 s), as a share of one
          core; the timers' own share = that of a timer route - that of the idle one, and per
          timer run. Memory per idle timer: the idle clients then send "start", which starts the
          set timer on each; (RSS after - RSS before) / connections, in the same process.
          Baseline: the same timers by hand, one loop.call_at per connection. Needs ulimit -n
          above the clients (the soft limit is raised up to the hard one).
rooms     one client joins 200,000 distinct rooms (benchmarks/timers.mock /ws/rooms): the default
          bound ('max rooms', 10,000) closes it 1011 at the 10,001st join; the server's peak RSS
          growth, against the same route with the bound lifted (/ws/rooms/unbounded).

Compression: the throughput workloads' clients (fanout, reqreply, accept) do not offer
permessage-deflate, so neither server compresses there; only idle negotiates it.

The load generator's CPU is reported as a share of one core: Node runs on one thread, so a
share near 100% would mean that the client, not the server, is the bottleneck.

Keeping the numbers steady (docs/performance.md says why each matters):
- the server runs on CPU 0 and the load generator on CPU 1 (--pin off: not pinned);
- both servers run with glibc's malloc thresholds fixed (MALLOC_TUNABLES; --malloc default:
  not fixed);
- before each run, wait (--quiet-wait s) for other processes to use < 30% of a core; a run
  during which they used more is made again (--retries) and the least noisy one kept; the notes
  under the table say how much CPU the server, the load generator and the others used;
- fanout and reqreply alternate engine and baseline over --rounds rounds; timers over
  --timer-rounds.

Profiles of a server under one workload: benchmarks/profile.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_DIR = HERE / "node"
LOAD = NODE_DIR / "load.mjs"

sys.path.insert(0, str(HERE))

from generate_large import generate  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
WORKLOADS = ("fanout", "reqreply", "accept", "idle", "compile", "timers", "rooms")
#: The scenario files the engine serves: the throughput, accept and idle workloads'; the
#: timer and rooms workloads'.
ENGINE_FILES = ("fanout.mock", "reqreply.mock")
TIMER_FILES = ("timers.mock",)
#: The timer workload's routes: connections without timers (until they send "start"), and
#: the two kinds of timer.
TIMER_PATHS = {"idle": "/ws/tick/later", "set": "/ws/tick/set", "send": "/ws/tick/send"}
#: The interval of the timers of benchmarks/timers.mock and of the baseline (seconds).
TIMER_INTERVAL = 1.0
#: glibc's malloc serves the 256 KiB buffer of every asyncio socket read with mmap (then mremap,
#: munmap: three system calls and two page faults per message received) until the process
#: happens to free a large block, which raises its dynamic mmap threshold for good. Whether and
#: when that happens differs from run to run (the engine's CPU per reply jumps between ~40 and
#: ~60 µs with it). Both servers run with the thresholds fixed, as glibc would set them after
#: such a free, so that they are compared in the same state; --malloc default runs without.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=2097152"
MALLOC_PINNED = True  # set from --malloc
#: Load-generator CPU above this share of one core: it may be what limits the throughput.
CLIENT_SATURATED = 0.85


# ---- /proc -------------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (its threads included)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_minflt(pid: int) -> int:
    """Minor page faults of a process (field 10 of /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[7])


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLK_TCK  # without guest time (counted in user already)


def tcp_counters() -> dict[str, int]:
    """TcpExt counters of /proc/net/netstat (this network namespace: server and clients)."""
    lines = [
        line.split()
        for line in Path("/proc/net/netstat").read_text().splitlines()
        if line.startswith("TcpExt:")
    ]
    return dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))


def wait_for_quiet(limit: float, threshold: float = 0.3) -> float:
    """Wait (at most `limit` s) until the other processes of the machine use less than
    `threshold` of a core; the share seen last. Called between runs, when none of ours runs."""
    deadline = time.monotonic() + limit
    told = False
    while True:
        before = machine_busy()
        time.sleep(0.5)
        busy = (machine_busy() - before) / 0.5
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        if not told:
            print(
                f"… waiting for the machine to be quieter (other processes use {busy:.0%} of "
                f"a core; up to {limit:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            told = True


QUIET_WAIT = 30.0  # set from --quiet-wait


def proc_preempted(pid: int) -> int:
    """How many times the process was descheduled while it could run (another wanted the CPU)."""
    return proc_status_int(pid, "nonvoluntary_ctxt_switches:")


def proc_sleeps(pid: int) -> int:
    """How many times the process gave up the CPU to wait (for its sockets or its next timer):
    an event loop's wake-ups."""
    return proc_status_int(pid, "voluntary_ctxt_switches:")


def proc_status_int(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def raise_open_files(needed: int) -> int:
    """Raise this process's (and so its children's) soft limit of open files to ``needed``, up
    to the hard limit; the limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


@dataclass
class Snapshot:
    time: float
    server_cpu: float
    machine: float
    preempted: int
    minflt: int

    @classmethod
    def take(cls, pid: int) -> Snapshot:
        return cls(
            time.perf_counter(),
            proc_cpu(pid),
            machine_busy(),
            proc_preempted(pid),
            proc_minflt(pid),
        )


# ---- processes ---------------------------------------------------------------------------------

#: The server runs on CPU 0 and the load generator on CPU 1 (each is one thread): the same
#: placement in every run, none of the scheduler's migrations between them (--pin off: none).
SERVER_CPU, LOAD_CPU = 0, 1
PIN = True  # set from --pin


def pin_to(cpu: int) -> Any:
    """A preexec_fn that binds the child to one CPU, or None when not pinning."""
    if not PIN:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


class Server:
    """A server process (engine or baseline) on a free port, stopped on exit."""

    def __init__(
        self,
        kind: str,
        backlog: int = 4096,
        compression: str = "deflate",
        files: tuple[str, ...] = ENGINE_FILES,
    ) -> None:
        self.kind = kind
        if kind == "engine":
            command = [
                sys.executable,
                "-m",
                "scenario_engine",
                "serve",
                *(str(HERE / name) for name in files),
                "--port",
                "0",
                "--quiet",
            ]
        else:
            command = [
                sys.executable,
                str(HERE / "baseline_server.py"),
                "--port",
                "0",
                "--backlog",
                str(backlog),
                "--compression",
                compression,
            ]
        self.command = command
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        env = dict(os.environ)
        if MALLOC_PINNED:
            env["GLIBC_TUNABLES"] = ":".join(
                filter(None, [env.get("GLIBC_TUNABLES"), MALLOC_TUNABLES])
            )
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            preexec_fn=pin_to(SERVER_CPU),
        )
        self.pid = self.process.pid
        self.port = self._wait_ready()

    def _wait_ready(self) -> int:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            match = re.match(r"ready: .*:(\d+)", line)
            if match:
                return int(match.group(1))
        self.stderr.seek(0)
        raise RuntimeError(
            f"{self.kind} server did not start: {self.stderr.read().decode(errors='replace')}"
        )

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.seek(0)
        errors = self.stderr.read().decode(errors="replace").strip()
        self.stderr.close()
        if errors:
            print(f"  [{self.kind} server stderr] {errors[-2000:]}", file=sys.stderr)


class Load:
    """benchmarks/node/load.mjs: one JSON event per line."""

    def __init__(self, mode: str, url: str, **options: Any) -> None:
        command = ["node", str(LOAD), mode, "--url", url]
        for name, value in options.items():
            command += [f"--{name}", str(value)]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pin_to(LOAD_CPU),
        )
        self.pid = self.process.pid

    def events(self) -> Iterator[dict[str, Any]]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            if event["event"] == "error":
                raise RuntimeError(f"load generator: {event['message']}")
            if event["event"] == "warning":
                print(f"  [load] {event['message']}", file=sys.stderr)
                continue
            yield event
        if self.process.wait() != 0:
            raise RuntimeError(f"load generator exited with {self.process.returncode}")

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def ensure_node() -> None:
    if shutil.which("node") is None:
        sys.exit("benchmarks/run.py: node is needed for the load generator (Node 18 or newer)")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        print(
            "installing the load generator's dependencies (npm ci in benchmarks/node)…",
            file=sys.stderr,
        )
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            check=True,
            stdout=subprocess.DEVNULL,
        )


# ---- workloads ---------------------------------------------------------------------------------


@dataclass
class Window:
    """One measured window of a throughput workload."""

    result: dict[str, Any]
    seconds: float
    server_cpu: float
    other_cpu: float  # CPU of every other process (machine - server - load generator), s
    preempted: int  # involuntary context switches of the server in the window
    minflt: int  # minor page faults of the server in the window
    attempts: int = 1  # runs made to get one with little noise (see NOISY)

    @property
    def server_share(self) -> float:
        return self.server_cpu / self.seconds

    @property
    def client_share(self) -> float:
        return float(self.result["client_cpu_share"])

    @property
    def other_share(self) -> float:
        return self.other_cpu / self.seconds


def measure(server: Server, load: Load) -> Window:
    start = end = None
    result: dict[str, Any] = {}
    for event in load.events():
        if event["event"] == "start":
            start = Snapshot.take(server.pid)
        elif event["event"] == "end":
            end = Snapshot.take(server.pid)
        elif event["event"] == "result":
            result = event
    if start is None or end is None or not result:
        raise RuntimeError("load generator ended without a measured window")
    seconds = end.time - start.time
    server_cpu = end.server_cpu - start.server_cpu
    other = (end.machine - start.machine) - server_cpu - result["client_cpu_seconds"]
    return Window(
        result,
        seconds,
        server_cpu,
        max(0.0, other),
        end.preempted - start.preempted,
        end.minflt - start.minflt,
    )


#: Other processes using more than this share of a core during a window make it noisy: the run
#: is made again (up to RETRIES times) and the least noisy one kept.
NOISY = 0.3
RETRIES = 2  # set from --retries


def least_noisy(attempt: Any, noise: Any) -> Any:
    best = None
    for n in range(1 + RETRIES):
        wait_for_quiet(QUIET_WAIT)
        result = attempt()
        if best is None or noise(result) < noise(best):
            best = result
        if noise(result) <= NOISY:
            break
        print(
            f"… noisy run (other processes used {noise(result):.0%} of a core): "
            f"{'again' if n < RETRIES else 'keeping the least noisy'}",
            file=sys.stderr,
            flush=True,
        )
    return best


def run_throughput(
    kind: str, mode: str, path: str, duration: float, warmup: float, **options: Any
) -> Window:
    attempts = 0

    def attempt() -> Window:
        nonlocal attempts
        attempts += 1
        with (
            Server(kind) as server,
            Load(mode, server.url(path), duration=duration, warmup=warmup, **options) as load,
        ):
            return measure(server, load)

    window: Window = least_noisy(attempt, lambda w: w.other_share)
    window.attempts = attempts
    return window


@dataclass
class Storm:
    window: Window
    counters: dict[str, int]


def run_accept(kind: str, clients: int, backlog: int = 4096) -> Storm:
    storm: Storm = least_noisy(
        lambda: accept_storm(kind, clients, backlog), lambda s: s.window.other_share
    )
    return storm


def accept_storm(kind: str, clients: int, backlog: int) -> Storm:
    with Server(kind, backlog=backlog) as server:
        with Load("accept", server.url("/ws/idle"), clients=100) as warm:  # imports, caches
            for _ in warm.events():
                pass
        time.sleep(0.5)
        before = tcp_counters()
        with Load("accept", server.url("/ws/idle"), clients=clients) as load:
            window = measure(server, load)
        after = tcp_counters()
    names = ("TCPSynRetrans", "ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "SyncookiesSent")
    return Storm(window, {name: after.get(name, 0) - before.get(name, 0) for name in names})


@dataclass
class Idle:
    clients: int
    negotiated: int
    rss_before_kb: int
    rss_after_kb: int

    @property
    def per_connection_kb(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.clients


def idle_connections(server: Server, clients: int, settle: float) -> tuple[int, int]:
    """Open `clients` idle connections; (how many negotiated compression, RSS while open)."""
    rss = negotiated = 0
    with Load("idle", server.url("/ws/idle"), clients=clients) as load:
        for event in load.events():
            if event["event"] == "ready":
                negotiated = event["negotiated"]
                time.sleep(settle)
                rss = proc_rss_kb(server.pid)
                load.tell("close")
    return negotiated, rss


def run_idle(kind: str, clients: int, compression: str = "deflate") -> Idle:
    wait_for_quiet(QUIET_WAIT)
    with Server(kind, compression=compression) as server:
        idle_connections(server, 20, 0.2)  # warm-up: imports and first allocations
        time.sleep(0.5)
        before = proc_rss_kb(server.pid)
        negotiated, after = idle_connections(server, clients, 1.0)
    return Idle(clients, negotiated, before, after)


def next_event(events: Iterator[dict[str, Any]], name: str) -> dict[str, Any]:
    for event in events:
        if event["event"] == name:
            return event
    raise RuntimeError(f"load generator ended before its {name!r} event")


@dataclass
class Held:
    """A server holding many connections (with or without timers) over a measured window."""

    kind: str
    variant: str  # a key of TIMER_PATHS
    clients: int
    open_seconds: float  # from the first connect until every client is open
    seconds: float
    server_cpu: float
    client_cpu: float
    other_cpu: float
    preempted: int
    sleeps: int  # the server's voluntary context switches in the window: its wake-ups
    messages: int  # received by the clients in the window
    closed: int  # clients the server closed (0 expected)
    rss_before_kb: int
    rss_after_kb: int
    #: idle: RSS once every client has sent "start" and its timer has run (0: not measured).
    rss_started_kb: int = 0

    @property
    def server_share(self) -> float:
        return self.server_cpu / self.seconds

    @property
    def other_share(self) -> float:
        return self.other_cpu / self.seconds

    @property
    def client_share(self) -> float:
        return self.client_cpu / self.seconds

    @property
    def per_connection_kb(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / self.clients

    @property
    def per_started_timer_kb(self) -> float:
        """idle: what starting a timer on each connection added, same process."""
        return (self.rss_started_kb - self.rss_after_kb) / self.clients


def hold_connections(kind: str, variant: str, clients: int, warmup: float, duration: float) -> Held:
    """Open ``clients`` connections on the variant's route of a fresh server, let their timers
    (if any) run for ``warmup`` s, then measure the server over ``duration`` s. The idle
    variant's clients then send "start", which starts a timer on each: the RSS it adds."""
    with Server(kind, files=TIMER_FILES) as server:
        url = server.url(TIMER_PATHS[variant])
        with Load("hold", url, clients=100) as warm:  # imports, first allocations
            events = warm.events()
            next_event(events, "ready")
            if variant == "idle":
                warm.tell("send start")
            time.sleep(TIMER_INTERVAL + 0.2)
            warm.tell("close")
            for _ in events:
                pass
        time.sleep(0.5)
        before = proc_rss_kb(server.pid)
        with Load("hold", url, clients=clients) as load:
            events = load.events()
            opening = time.perf_counter()
            next_event(events, "ready")
            open_seconds = time.perf_counter() - opening
            time.sleep(warmup)
            load.tell("mark")
            first = next_event(events, "mark")
            start = Snapshot.take(server.pid)
            sleeps = proc_sleeps(server.pid)
            time.sleep(duration)
            load.tell("mark")
            last = next_event(events, "mark")
            end = Snapshot.take(server.pid)
            sleeps = proc_sleeps(server.pid) - sleeps
            after = proc_rss_kb(server.pid)
            started = 0
            if variant == "idle":
                load.tell("send start")
                next_event(events, "sent")
                time.sleep(TIMER_INTERVAL * 2 + 1)  # received, started, run at least once
                started = proc_rss_kb(server.pid)
            load.tell("close")
            for _ in events:
                pass
    server_cpu = end.server_cpu - start.server_cpu
    client_cpu = last["client_cpu_seconds"] - first["client_cpu_seconds"]
    return Held(
        kind=kind,
        variant=variant,
        clients=clients,
        open_seconds=open_seconds,
        seconds=end.time - start.time,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        other_cpu=max(0.0, (end.machine - start.machine) - server_cpu - client_cpu),
        preempted=end.preempted - start.preempted,
        sleeps=sleeps,
        messages=last["messages"] - first["messages"],
        closed=last["closed"],
        rss_before_kb=before,
        rss_after_kb=after,
        rss_started_kb=started,
    )


def run_hold(kind: str, variant: str, clients: int, warmup: float, duration: float) -> Held:
    held: Held = least_noisy(
        lambda: hold_connections(kind, variant, clients, warmup, duration),
        lambda h: h.other_share,
    )
    return held


@dataclass
class RoomsRun:
    path: str
    rooms: int
    done: bool  # the server answered "done": every join was taken
    close_code: int | None  # the server closed the connection first, with this code
    rss_before_kb: int
    peak_kb: int  # the server's peak RSS while the client joined
    rss_after_kb: int  # once the client has gone

    @property
    def growth_mb(self) -> float:
        return (self.peak_kb - self.rss_before_kb) / 1024


def run_rooms(path: str, rooms: int) -> RoomsRun:
    wait_for_quiet(QUIET_WAIT)
    with Server("engine", files=TIMER_FILES) as server:
        url = server.url(path)
        with Load("rooms", url, rooms=100) as warm:  # imports, first allocations
            for _ in warm.events():
                pass
        time.sleep(0.5)
        before = proc_rss_kb(server.pid)
        reset_peak_rss(server.pid)
        with Load("rooms", url, rooms=rooms) as load:
            result = next_event(load.events(), "result")
        time.sleep(0.5)
        peak = proc_status_int(server.pid, "VmHWM:")
        after = proc_rss_kb(server.pid)
    return RoomsRun(path, rooms, result["done"], result["close_code"], before, peak, after)


def time_command(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return times


def bench_compile(runs: int) -> tuple[int, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "large.mock"
        text = generate(10_000)
        path.write_text(text, encoding="utf-8")
        lines = text.count("\n")
        times = time_command([sys.executable, "-m", "scenario_engine", "check", str(path)], runs)
    return lines, times


# ---- report ------------------------------------------------------------------------------------


@dataclass
class Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        metric: str,
        engine: float | str | None,
        baseline: float | str | None,
        fmt: str = "{:,.1f}",
        target: str = "",
        ok: bool | None = None,
        ratio: bool = True,
    ) -> None:
        def show(value: float | str | None) -> str:
            if value is None:
                return "—"
            return value if isinstance(value, str) else fmt.format(value)

        r = ""
        if (
            ratio
            and isinstance(engine, int | float)
            and isinstance(baseline, int | float)
            and baseline
        ):
            r = f"{engine / baseline:.2f}x"
        status = "" if ok is None else ("met" if ok else "MISSED")
        self.rows.append((metric, show(engine), show(baseline), r, target, status))

    def print(self) -> None:
        header = ("metric", "engine", "baseline", "ratio", "target", "")
        widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(6)]
        line = "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{widths[i]}}}" for i in range(6))
        print(line.format(*header).rstrip())
        print("  ".join("-" * w for w in widths))
        for row in self.rows:
            print(line.format(*row).rstrip())


def versions() -> dict[str, str]:
    import websockets

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    ws_version = json.loads((NODE_DIR / "node_modules" / "ws" / "package.json").read_text())[
        "version"
    ]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "websockets": websockets.__version__,
        "node": node,
        "ws": ws_version,
        "libc": " ".join(platform.libc_ver()),
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def load_line(engine: list[Window], baseline: list[Window]) -> str:
    """Who used the CPUs during the measured windows (shares of one core, averaged)."""

    def shares(windows: list[Window]) -> tuple[float, float, float]:
        seconds = sum(w.seconds for w in windows)
        return (
            sum(w.server_cpu for w in windows) / seconds,
            sum(w.result["client_cpu_seconds"] for w in windows) / seconds,
            sum(w.other_cpu for w in windows) / seconds,
        )

    def one(windows: list[Window]) -> str:
        server, client, other = shares(windows)
        preempted = sum(w.preempted for w in windows) / sum(w.seconds for w in windows)
        return (
            f"server {server:.0%} of a core (preempted {preempted:,.0f}/s), load generator "
            f"{client:.0%}, other processes {other:.0%}"
        )

    note = f"engine runs: {one(engine)}; baseline runs: {one(baseline)}"
    if max(w.client_share for w in engine + baseline) > CLIENT_SATURATED:
        note += "  [WARNING: the load generator is near a full core: it may be the bottleneck]"
    if max(shares(engine)[2], shares(baseline)[2]) > NOISY:
        note += "  [WARNING: other processes used the CPUs meanwhile: noisy]"
    return note


def main() -> None:
    global QUIET_WAIT, RETRIES, MALLOC_PINNED, PIN, SERVER_CPU, LOAD_CPU
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads (default: all of {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=8.0,
        help="measured seconds per throughput run (default 8)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="seconds of load before the measured window (default 2)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="fanout, reqreply: engine/baseline runs each, alternating "
        "which goes first (default 2)",
    )
    parser.add_argument(
        "--fanout-client",
        choices=("raw", "ws"),
        default="raw",
        help="fanout's clients: a minimal frame splitter on raw sockets "
        "(default, ~10%% less CPU per delivery) or Node's ws",
    )
    parser.add_argument("--storm-clients", type=int, default=5000)
    parser.add_argument("--idle-clients", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7, help="compile: timed runs (default 7)")
    parser.add_argument(
        "--timer-clients", type=int, default=10_000, help="timers: connections (default 10000)"
    )
    parser.add_argument(
        "--timer-duration",
        type=float,
        default=20.0,
        help="timers: measured seconds per run (default 20)",
    )
    parser.add_argument(
        "--timer-warmup",
        type=float,
        default=3.0,
        help="timers: seconds between the last connection opened and the window (default 3)",
    )
    parser.add_argument(
        "--timer-rounds",
        type=int,
        default=1,
        help="timers: runs of each server and route, alternating the order (default 1)",
    )
    parser.add_argument(
        "--rooms", type=int, default=200_000, help="rooms: distinct rooms joined (default 200000)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=QUIET_WAIT,
        help="before each run, wait up to this many seconds for other "
        "processes to use < 30%% of a core (default 30; 0: do not wait)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=RETRIES,
        help="runs made again when other processes used > 30%% of a core "
        "during the measured window (default 2)",
    )
    parser.add_argument(
        "--malloc",
        choices=("pinned", "default"),
        default="pinned",
        help="pinned (default): both servers run with glibc's malloc "
        "thresholds fixed (GLIBC_TUNABLES, see MALLOC_TUNABLES); default: "
        "glibc's dynamic thresholds (CPU per message varies run to run)",
    )
    parser.add_argument(
        "--pin",
        choices=("on", "off"),
        default="on",
        help="on (default, with 2+ CPUs): server on CPU 0, load generator on "
        "CPU 1; off: where the scheduler puts them",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")

    QUIET_WAIT, RETRIES = args.quiet_wait, args.retries
    MALLOC_PINNED = args.malloc == "pinned"
    PIN = args.pin == "on" and len(os.sched_getaffinity(0)) >= 2
    if PIN:
        SERVER_CPU, LOAD_CPU = sorted(os.sched_getaffinity(0))[:2]
    ensure_node()
    info = versions()
    print(f"command: {shlex.join(['python', 'benchmarks/run.py', *sys.argv[1:]])}")
    print(f"date: {info['date']}   load average before: {info['loadavg']}")
    print(f"machine: {info['cpus']} CPUs, {info['cpu']}, Linux {info['kernel']}")
    print(
        f"software: Python {info['python']}, websockets {info['websockets']}, "
        f"Node {info['node']}, ws {info['ws']}, {info['libc']}"
    )
    print(
        "placement: "
        + (f"server on CPU {SERVER_CPU}, load generator on CPU {LOAD_CPU}" if PIN else "not pinned")
    )
    print(
        "servers' malloc: "
        + (
            f"GLIBC_TUNABLES={MALLOC_TUNABLES}"
            if MALLOC_PINNED
            else "glibc defaults (dynamic mmap threshold)"
        )
    )
    print()
    table = Table()
    raw: dict[str, Any] = {"machine": info, "args": vars(args)}

    def progress(text: str) -> None:
        print(f"… {text}", file=sys.stderr, flush=True)

    def throughput(mode: str, path: str, **options: Any) -> dict[str, list[Window]]:
        """Rounds of engine and baseline runs, alternating which goes first (ABBA…), so that
        a drift of the machine's speed affects both alike."""
        runs: dict[str, list[Window]] = {"engine": [], "baseline": []}
        for r in range(args.rounds):
            for kind in ("engine", "baseline") if r % 2 == 0 else ("baseline", "engine"):
                progress(f"{mode}: {kind} (round {r + 1} of {args.rounds})")
                runs[kind].append(
                    run_throughput(kind, mode, path, args.duration, args.warmup, **options)
                )
        raw[mode] = {k: [vars(w) for w in v] for k, v in runs.items()}
        return runs

    def per_item_us(windows: list[Window], key: str) -> float:
        return sum(w.server_cpu for w in windows) / sum(w.result[key] for w in windows) * 1e6

    def rate(windows: list[Window], key: str) -> float:
        return sum(w.result[key] for w in windows) / sum(w.result["seconds"] for w in windows)

    def latency(windows: list[Window], p: str) -> float:
        return statistics.mean(w.result["latency_ms"][p] for w in windows)

    def spread(mode: str, runs: dict[str, list[Window]], key: str, item: str) -> str:
        parts = []
        for kind, windows in runs.items():
            values = [
                f"{w.result['per_second']:,.0f}/s {w.server_cpu / w.result[key] * 1e6:.2f}"
                f" (faults {w.minflt / w.result[key]:.1f}, others {w.other_share:.0%})"
                for w in windows
            ]
            parts.append(f"{kind} " + ", ".join(values))
        return (
            f"{mode}: each round ({key}/s, server CPU µs and page faults per {item}): "
            + "; ".join(parts)
        )

    if "fanout" in only:
        runs = throughput("fanout", "/ws/chat", client=args.fanout_client)
        e, b = runs["engine"], runs["baseline"]
        e_rate, b_rate = rate(e, "deliveries"), rate(b, "deliveries")
        e_cpu, b_cpu = per_item_us(e, "deliveries"), per_item_us(b, "deliveries")
        table.add(
            "fan-out: deliveries/s", e_rate, b_rate, "{:,.0f}", "≥ 0.95x", e_rate >= 0.95 * b_rate
        )
        table.add(
            "fan-out: server CPU µs/delivery",
            e_cpu,
            b_cpu,
            "{:.2f}",
            "≤ 1.1x",
            e_cpu <= 1.1 * b_cpu,
        )
        table.add("fan-out: latency p50 ms", latency(e, "p50"), latency(b, "p50"), "{:.2f}")
        table.add("fan-out: latency p99 ms", latency(e, "p99"), latency(b, "p99"), "{:.2f}")
        table.notes.append(f"fan-out: {load_line(e, b)}")
        table.notes.append(spread("fan-out", runs, "deliveries", "delivery"))

    if "reqreply" in only:
        runs = throughput("reqreply", "/ws/ping")
        e, b = runs["engine"], runs["baseline"]
        e_cpu, b_cpu = per_item_us(e, "replies"), per_item_us(b, "replies")
        table.add("request-reply: replies/s", rate(e, "replies"), rate(b, "replies"), "{:,.0f}")
        table.add(
            "request-reply: server CPU µs/reply",
            e_cpu,
            b_cpu,
            "{:.2f}",
            "≤ 1.15x",
            e_cpu <= 1.15 * b_cpu,
        )
        table.add("request-reply: latency p50 ms", latency(e, "p50"), latency(b, "p50"), "{:.2f}")
        table.add("request-reply: latency p99 ms", latency(e, "p99"), latency(b, "p99"), "{:.2f}")
        table.notes.append(f"request-reply: {load_line(e, b)}")
        table.notes.append(spread("request-reply", runs, "replies", "reply"))
        for kind, windows in runs.items():
            bad = sum(w.result["bad"] for w in windows)
            if bad:
                table.notes.append(f"request-reply: {kind}: {bad} wrong replies")

    if "accept" in only:
        storms = {}
        for kind, backlog in (("engine", 4096), ("baseline", 4096), ("baseline-100", 100)):
            progress(f"accept: {kind}")
            storms[kind] = run_accept(
                "engine" if kind == "engine" else "baseline", args.storm_clients, backlog
            )
        raw["accept"] = {
            k: {"window": vars(v.window), "kernel": v.counters} for k, v in storms.items()
        }
        e, b, b100 = storms["engine"], storms["baseline"], storms["baseline-100"]

        def all_open(storm: Storm) -> float:
            return storm.window.result["all_open_ms"] / 1000

        def waited(storm: Storm) -> int:
            return storm.counters["TCPSynRetrans"] + storm.window.result["tcp_connect_over_1s"]

        n = args.storm_clients
        for kind, storm in storms.items():
            if storm.window.result["opened"] != n:
                table.notes.append(
                    f"accept: {kind}: only {storm.window.result['opened']} of "
                    f"{n} opened ({storm.window.result['first_error']})"
                )
        table.add(
            f"accept {n:,}: all open, s",
            all_open(e),
            all_open(b),
            "{:.2f}",
            "≤ 1.5x",
            all_open(e) <= 1.5 * all_open(b),
        )
        table.add(
            "accept: SYN retransmits (kernel)",
            e.counters["TCPSynRetrans"],
            b.counters["TCPSynRetrans"],
            "{:,}",
            "0",
            waited(e) == 0,
            ratio=False,
        )
        table.add(
            "accept: connects > 1 s (client)",
            e.window.result["tcp_connect_over_1s"],
            b.window.result["tcp_connect_over_1s"],
            "{:,}",
            ratio=False,
        )
        table.add(
            "accept: server CPU µs/connection",
            e.window.server_cpu / n * 1e6,
            b.window.server_cpu / n * 1e6,
            "{:.0f}",
        )
        table.add(
            "accept: baseline with backlog 100, s", None, all_open(b100), "{:.2f}", ratio=False
        )
        table.add(
            "  … its SYN retransmits / > 1 s",
            None,
            f"{b100.counters['TCPSynRetrans']:,} / {b100.window.result['tcp_connect_over_1s']:,}",
            ratio=False,
        )
        table.notes.append(
            "accept: server / load generator / other processes, shares of a core over the "
            "storm: "
            + ", ".join(
                f"{k} {v.window.server_share:.0%} / {v.window.client_share:.0%} / "
                f"{v.window.other_share:.0%}"
                for k, v in storms.items()
            )
            + "; kernel listen overflows "
            + ", ".join(f"{k} {v.counters['ListenOverflows']}" for k, v in storms.items())
        )

    if "idle" in only:
        idles = {}
        for kind, compression in (
            ("engine", "deflate"),
            ("baseline", "deflate"),
            ("baseline-plain", "none"),
        ):
            progress(f"idle: {kind}")
            idles[kind] = run_idle(
                "engine" if kind == "engine" else "baseline", args.idle_clients, compression
            )
        raw["idle"] = {
            k: {**vars(v), "per_connection_kb": v.per_connection_kb} for k, v in idles.items()
        }
        e, b = idles["engine"], idles["baseline"]
        table.add(
            f"idle {args.idle_clients:,}, deflate: KB/connection",
            e.per_connection_kb,
            b.per_connection_kb,
            "{:.1f}",
            "≤ 0.5x",
            e.per_connection_kb <= 0.5 * b.per_connection_kb,
        )
        table.add(
            "  … baseline without compression",
            None,
            idles["baseline-plain"].per_connection_kb,
            "{:.1f}",
            ratio=False,
        )
        for kind, idle in idles.items():
            expected = 0 if kind == "baseline-plain" else idle.clients
            if idle.negotiated != expected:
                table.notes.append(
                    f"idle: {kind}: compression negotiated on "
                    f"{idle.negotiated} of {idle.clients} connections"
                )

    if "compile" in only:
        progress("compile")
        lines, times = bench_compile(args.runs)
        median = statistics.median(times)
        raw["compile"] = {"lines": lines, "times": times}
        table.add(
            f"compile: check {lines:,} lines, s",
            median,
            None,
            "{:.3f}",
            "< 1 s",
            median < 1,
            ratio=False,
        )
        table.notes.append(
            f"compile: min {min(times):.3f} s, max {max(times):.3f} s over {len(times)} runs"
        )

    if "timers" in only:
        n = args.timer_clients
        limit = raise_open_files(n + 1000)
        if limit < n + 100:
            sys.exit(
                f"benchmarks/run.py: timers needs {n + 100} open files per process, the hard "
                f"limit is {limit}: raise it (ulimit -Hn) or lower --timer-clients"
            )
        helds: dict[tuple[str, str], list[Held]] = {}
        order = [(k, v) for k in ("engine", "baseline") for v in TIMER_PATHS]
        for r in range(args.timer_rounds):
            for kind, variant in order if r % 2 == 0 else order[::-1]:
                progress(f"timers: {kind} {variant} (round {r + 1} of {args.timer_rounds})")
                helds.setdefault((kind, variant), []).append(
                    run_hold(kind, variant, n, args.timer_warmup, args.timer_duration)
                )
        raw["timers"] = {
            f"{k} {v}": [
                {
                    **vars(h),
                    "per_connection_kb": h.per_connection_kb,
                    "per_started_timer_kb": h.per_started_timer_kb,
                }
                for h in hs
            ]
            for (k, v), hs in helds.items()
        }

        def share(kind: str, variant: str) -> float:
            hs = helds[(kind, variant)]
            return sum(h.server_cpu for h in hs) / sum(h.seconds for h in hs)

        def alone(kind: str, variant: str) -> float:
            """The timers' own share of a core: the route's minus that of /ws/idle."""
            return share(kind, variant) - share(kind, "idle")

        def kb(kind: str, variant: str) -> float:
            return statistics.mean(h.per_connection_kb for h in helds[(kind, variant)])

        runs_per_s = n / TIMER_INTERVAL
        table.add(
            f"idle {n:,} (no timers): server CPU, % of a core",
            share("engine", "idle") * 100,
            share("baseline", "idle") * 100,
            "{:.2f}",
            ratio=False,
        )
        for variant, what in (("set", "set session"), ("send", "send")):
            table.add(
                f"timers {n:,} x 1 s, {what}: CPU alone, % of a core",
                alone("engine", variant) * 100,
                alone("baseline", variant) * 100,
                "{:.2f}",
                "< 10%" if variant == "set" else "",
                alone("engine", variant) < 0.10 if variant == "set" else None,
                ratio=False,
            )
            table.add(
                f"  … server CPU µs per timer run ({what})",
                alone("engine", variant) / runs_per_s * 1e6,
                alone("baseline", variant) / runs_per_s * 1e6,
                "{:.2f}",
            )

        def started_kb(kind: str) -> float:
            return statistics.mean(h.per_started_timer_kb for h in helds[(kind, "idle")])

        table.add(
            "timers: KB per idle timer (started, same process)",
            started_kb("engine"),
            started_kb("baseline"),
            "{:.2f}",
        )
        table.add(
            "  … per set-session connection - per idle one",
            kb("engine", "set") - kb("engine", "idle"),
            kb("baseline", "set") - kb("baseline", "idle"),
            "{:.2f}",
        )
        table.add(
            f"  … KB per idle connection, {n:,}",
            kb("engine", "idle"),
            kb("baseline", "idle"),
            "{:.2f}",
        )
        for (kind, variant), hs in helds.items():
            closed = sum(h.closed for h in hs)
            if closed:
                table.notes.append(f"timers: {kind} {variant}: the server closed {closed} clients")
        table.notes.append(
            "timers: each run (server share of a core, wake-ups/s, messages received/s, KB per "
            "connection, s to open all; load generator / other processes): "
            + "; ".join(
                f"{k} {v} "
                + ", ".join(
                    f"{h.server_share:.1%} {h.sleeps / h.seconds:,.0f}/s "
                    f"{h.messages / h.seconds:,.0f}/s {h.per_connection_kb:.2f} KB "
                    f"{h.open_seconds:.1f} s ({h.client_share:.0%} / {h.other_share:.0%})"
                    for h in hs
                )
                for (k, v), hs in helds.items()
            )
        )

    if "rooms" in only:
        results = {}
        for path in ("/ws/rooms", "/ws/rooms/unbounded"):
            progress(f"rooms: {path}")
            results[path] = run_rooms(path, args.rooms)
        raw["rooms"] = {k: {**vars(v), "growth_mb": v.growth_mb} for k, v in results.items()}
        bounded, unbounded = results["/ws/rooms"], results["/ws/rooms/unbounded"]
        table.add(
            f"rooms: one client joins {args.rooms:,}: peak RSS growth, MB",
            bounded.growth_mb,
            None,
            "{:.1f}",
            "bounded",
            not bounded.done and bounded.close_code == 1011,
            ratio=False,
        )
        table.add(
            "  … the same route with max rooms 1,000,000",
            unbounded.growth_mb,
            None,
            "{:.1f}",
            ratio=False,
        )
        for path, result in results.items():
            table.notes.append(
                f"rooms: {path}: "
                + (
                    f"every join taken ({result.rooms:,} rooms)"
                    if result.done
                    else f"closed {result.close_code} before the last join"
                )
                + f"; RSS {result.rss_before_kb / 1024:.1f} MB before, peak "
                f"{result.peak_kb / 1024:.1f} MB, {result.rss_after_kb / 1024:.1f} MB once the "
                "client had gone"
            )

    table.print()
    print()
    for note in table.notes:
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

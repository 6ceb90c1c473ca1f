"""Run the benchmarks: the engine against the same behaviour written by hand on websockets and
on Node's ws.

    python benchmarks/run.py [--only fanout,reqreply,accept,idle,compile] [--duration 8]
                             [--rounds 2] [--servers engine,websockets,node]
                             [--json results.json]   (--help: every option)

Each server workload starts, one after the other, each on a free port:
  engine      ``scenario-engine serve benchmarks/fanout.mock benchmarks/reqreply.mock --quiet``
              (--engine-python, --engine-tree, --engine-env change how; each --variant adds
              another engine column, e.g. the same engine with uvloop, or another commit);
  websockets  benchmarks/baseline_server.py, the same routes by hand on websockets' asyncio
              server (called "baseline" before Node joined);
  node        benchmarks/node/ws_server.mjs, the same routes by hand on Node's ws;
and drives each with benchmarks/node/load.mjs (Node's ``ws``, a separate process). The table has
a column per server, the ratios engine/websockets and engine/node, the targets held so far
(against websockets, or absolute) and those against Node. The server's CPU time
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
          overflows from the kernel's counters (/proc/net/netstat). Listen backlog 4096 on every
          server, then websockets once more with asyncio's default backlog (100).
idle      (RSS with N idle connections - RSS before) / N, on /ws/idle, with permessage-deflate
          offered by the client and negotiated by every server: websockets with its default
          compression ("deflate"), Node's ws with perMessageDeflate {threshold: 1024}; then
          websockets and Node without compression, for reference.
compile   `scenario-engine check` of a generated 10,000-line scenario, as a whole process
          (start-up, parsing, schema and semantic checks), median of N runs after a warm-up.
timers    10,000 raw clients (one Node process) hold a connection each: on /ws/tick/later
          (no timers), /ws/tick/set (a 1 s timer per connection that sets session.n) and
          /ws/tick/send (the same timer sending {"n":count}; the clients read); each on a fresh
          server. Server CPU over a steady window (--timer-duration, 20 s), as a share of one
          core; the timers' own share = that of a timer route - that of the idle one, and per
          timer run. Memory per idle timer: the idle clients then send "start", which starts the
          set timer on each; (RSS after - RSS before) / connections, in the same process.
          websockets: the same timers by hand, one loop.call_at per connection; node: one
          setTimeout per connection. Needs ulimit -n above the clients (the soft limit is
          raised up to the hard one).
rooms     one client joins 200,000 distinct rooms (benchmarks/timers.mock /ws/rooms): the default
          bound ('max rooms', 10,000) closes it 1011 at the 10,001st join; the server's peak RSS
          growth, against the same route with the bound lifted (/ws/rooms/unbounded).

Compression: the throughput workloads' clients (fanout, reqreply, accept) do not offer
permessage-deflate, so no server compresses there; only idle negotiates it.

The load generator's CPU is reported as a share of one core: Node runs on one thread, so a
share near 100% would mean that the client, not the server, is the bottleneck.

Keeping the numbers steady (docs/performance.md says why each matters):
- the server runs on CPU 0 and the load generator on CPU 1 (--pin off: not pinned);
- every server runs with glibc's malloc thresholds fixed (MALLOC_TUNABLES; --malloc default:
  not fixed);
- before each run, wait (--quiet-wait s) for other processes to use < 30% of a core; a run
  during which they used more is made again (--retries) and the least noisy one kept; the notes
  under the table say how much CPU the server, the load generator and the others used;
- fanout and reqreply run every server in each of --rounds rounds, the order reversed every
  other round (engine, websockets, node, then node, websockets, engine); timers over
  --timer-rounds. rooms (the engine's bound) and compile run the engine columns alone.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_DIR = HERE / "node"
LOAD = NODE_DIR / "load.mjs"
NODE_SERVER = NODE_DIR / "ws_server.mjs"

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


@dataclass(frozen=True)
class ServerSpec:
    """One column of the tables: a server and how it is started.

    ``kind`` is engine, websockets (benchmarks/baseline_server.py) or node
    (benchmarks/node/ws_server.mjs). An engine runs ``PYTHON -m scenario_engine serve`` from
    ``tree`` (whose scenario_engine package it imports: ``python -m`` puts the working directory
    first on sys.path) with ``env`` added to the environment: --engine-python, --engine-tree,
    --engine-env, and each --variant another engine column."""

    name: str
    kind: str
    python: str = sys.executable
    tree: Path = ROOT
    env: tuple[tuple[str, str], ...] = ()

    @property
    def is_engine(self) -> bool:
        return self.kind == "engine"

    def describe(self) -> str:
        if self.kind == "websockets":
            return f"{self.name}: {self.python} benchmarks/baseline_server.py"
        if self.kind == "node":
            return f"{self.name}: node benchmarks/node/ws_server.mjs"
        text = f"{self.name}: {self.python} -m scenario_engine serve, from {self.tree}"
        if self.env:
            text += " with " + " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        return text


#: The servers of every workload, in the order of the table's columns (set from --servers,
#: --engine-*, --variant). The websockets baseline was called "baseline" before Node's ws
#: joined; benchmarks/profile.py still names it so.
SERVERS: dict[str, ServerSpec] = {
    "engine": ServerSpec("engine", "engine"),
    "websockets": ServerSpec("websockets", "websockets"),
    "node": ServerSpec("node", "node"),
}
ALIASES = {"baseline": "websockets"}


def server_spec(server: ServerSpec | str) -> ServerSpec:
    if isinstance(server, ServerSpec):
        return server
    name = ALIASES.get(server, server)
    return SERVERS.get(name) or ServerSpec(name, name)


class Server:
    """A server process (an engine, the websockets baseline or Node's ws) on a free port,
    stopped on exit. ``options`` are more options of an engine's ``serve``."""

    def __init__(
        self,
        server: ServerSpec | str,
        backlog: int = 4096,
        compression: str = "deflate",
        files: tuple[str, ...] = ENGINE_FILES,
        options: tuple[str, ...] = (),
    ) -> None:
        spec = server_spec(server)
        self.spec = spec
        self.kind = spec.name
        cwd = ROOT
        if spec.kind == "engine":
            command = [
                spec.python,
                "-m",
                "scenario_engine",
                "serve",
                *(str(HERE / name) for name in files),
                "--port",
                "0",
                "--quiet",
                *options,
            ]
            cwd = spec.tree
        elif spec.kind == "websockets":
            command = [spec.python, str(HERE / "baseline_server.py")]
        elif spec.kind == "node":
            command = ["node", str(NODE_SERVER)]
        else:
            raise ValueError(f"unknown server kind {spec.kind!r}")
        if spec.kind != "engine":
            command += ["--port", "0", "--backlog", str(backlog), "--compression", compression]
        self.command = command
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        env = dict(os.environ)
        env.update(spec.env)
        if MALLOC_PINNED:
            env["GLIBC_TUNABLES"] = ":".join(
                filter(None, [env.get("GLIBC_TUNABLES"), MALLOC_TUNABLES])
            )
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
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
    spec: ServerSpec, mode: str, path: str, duration: float, warmup: float, **options: Any
) -> Window:
    attempts = 0

    def attempt() -> Window:
        nonlocal attempts
        attempts += 1
        with (
            Server(spec) as server,
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


def run_accept(spec: ServerSpec, clients: int, backlog: int = 4096) -> Storm:
    storm: Storm = least_noisy(
        lambda: accept_storm(spec, clients, backlog), lambda s: s.window.other_share
    )
    return storm


def accept_storm(spec: ServerSpec, clients: int, backlog: int) -> Storm:
    with Server(spec, backlog=backlog) as server:
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


def run_idle(spec: ServerSpec, clients: int, compression: str = "deflate") -> Idle:
    wait_for_quiet(QUIET_WAIT)
    with Server(spec, compression=compression) as server:
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

    kind: str  # the server's name (its column)
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


def hold_connections(
    spec: ServerSpec, variant: str, clients: int, warmup: float, duration: float
) -> Held:
    """Open ``clients`` connections on the variant's route of a fresh server, let their timers
    (if any) run for ``warmup`` s, then measure the server over ``duration`` s. The idle
    variant's clients then send "start", which starts a timer on each: the RSS it adds."""
    with Server(spec, files=TIMER_FILES) as server:
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
        kind=spec.name,
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


def run_hold(spec: ServerSpec, variant: str, clients: int, warmup: float, duration: float) -> Held:
    held: Held = least_noisy(
        lambda: hold_connections(spec, variant, clients, warmup, duration),
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


def run_rooms(spec: ServerSpec, path: str, rooms: int) -> RoomsRun:
    wait_for_quiet(QUIET_WAIT)
    with Server(spec, files=TIMER_FILES) as server:
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


def time_command(
    command: list[str], runs: int, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> list[float]:
    subprocess.run(command, check=True, capture_output=True, cwd=cwd, env=env)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=cwd, env=env)
        times.append(time.perf_counter() - start)
    return times


def bench_compile(spec: ServerSpec, runs: int) -> tuple[int, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "large.mock"
        text = generate(10_000)
        path.write_text(text, encoding="utf-8")
        lines = text.count("\n")
        times = time_command(
            [spec.python, "-m", "scenario_engine", "check", str(path)],
            runs,
            cwd=spec.tree,
            env={**os.environ, **dict(spec.env)},
        )
    return lines, times


# ---- report ------------------------------------------------------------------------------------


Value = float | int | str | None


@dataclass
class Goal:
    """A target of one row: its text, and for an engine column whether that column meets it
    (None: not measured there)."""

    text: str
    check: Callable[[str], bool | None]


def relative(
    values: dict[str, Value], reference: str, factor: float, text: str, at_least: bool = False
) -> Goal | None:
    """The target "an engine's value ≤ factor * the reference's" (≥ with ``at_least``); None
    when the reference did not run."""
    base = values.get(reference)
    if not isinstance(base, int | float):
        return None

    def check(name: str) -> bool | None:
        value = values.get(name)
        if not isinstance(value, int | float):
            return None
        return value >= factor * base if at_least else value <= factor * base

    return Goal(text, check)


def absolute(values: dict[str, Value], text: str, predicate: Callable[[float], bool]) -> Goal:
    def check(name: str) -> bool | None:
        value = values.get(name)
        return predicate(value) if isinstance(value, int | float) else None

    return Goal(text, check)


@dataclass
class Table:
    """A column per server, then the ratio of each engine column to each reference server
    (websockets, node), then two targets with whether the engine meets them: the one the work so
    far was held to (against the websockets baseline, or absolute), and the one against Node."""

    servers: list[ServerSpec]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def engines(self) -> list[str]:
        return [s.name for s in self.servers if s.is_engine]

    @property
    def references(self) -> list[str]:
        return [s.name for s in self.servers if not s.is_engine]

    def add(
        self,
        metric: str,
        values: dict[str, Value],
        fmt: str = "{:,.1f}",
        target: Goal | None = None,
        node_target: Goal | None = None,
        ratio: bool = True,
    ) -> None:
        def show(value: Value) -> str:
            if value is None:
                return "—"
            return value if isinstance(value, str) else fmt.format(value)

        cells = [metric, *(show(values.get(s.name)) for s in self.servers)]
        for engine in self.engines:
            for reference in self.references:
                a, b = values.get(engine), values.get(reference)
                numbers = isinstance(a, int | float) and isinstance(b, int | float) and b
                cells.append(f"{a / b:.2f}x" if ratio and numbers else "")  # type: ignore[operator]
        for goal in (target, node_target):
            cells += [goal.text if goal else "", self.status(goal)]
        self.rows.append(tuple(cells))

    def status(self, goal: Goal | None) -> str:
        if goal is None:
            return ""
        results = [(name, goal.check(name)) for name in self.engines]
        results = [(name, ok) for name, ok in results if ok is not None]
        if len(results) == 1:
            return "met" if results[0][1] else "MISSED"
        return ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in results)

    def print(self) -> None:
        ratios = [f"{e}/{r}" for e in self.engines for r in self.references]
        header = ("metric", *(s.name for s in self.servers), *ratios, "target", "", "vs node", "")
        widths = [max(len(row[i]) for row in [header, *self.rows]) for i in range(len(header))]
        line = "  ".join(
            f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{widths[i]}}}" for i in range(len(header))
        )
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


def engine_software(spec: ServerSpec) -> str:
    """Python, websockets and (if importable) uvloop of an engine's interpreter, from its tree."""
    probe = (
        "import platform, websockets\n"
        "try:\n    import uvloop; u = f'uvloop {uvloop.__version__} importable'\n"
        "except ImportError:\n    u = 'uvloop not importable'\n"
        "print(f'Python {platform.python_version()}, websockets {websockets.__version__}, {u}')"
    )
    result = subprocess.run(
        [spec.python, "-c", probe],
        capture_output=True,
        text=True,
        cwd=spec.tree,
        env={**os.environ, **dict(spec.env)},
    )
    return result.stdout.strip() or f"? ({result.stderr.strip()[-200:]})"


def load_line(runs: dict[str, list[Window]]) -> str:
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

    note = "; ".join(f"{name} runs: {one(windows)}" for name, windows in runs.items())
    saturated = [
        name
        for name, windows in runs.items()
        if max(w.client_share for w in windows) > CLIENT_SATURATED
    ]
    if saturated:
        note += (
            f"  [WARNING: the load generator was near a full core in the {', '.join(saturated)}"
            " runs: it may be the bottleneck there]"
        )
    if max(shares(windows)[2] for windows in runs.values()) > NOISY:
        note += "  [WARNING: other processes used the CPUs meanwhile: noisy]"
    return note


def parse_variant(text: str) -> ServerSpec:
    """--variant NAME=SETTINGS: an engine column; SETTINGS are words (as a shell splits them)
    KEY=VALUE added to the environment, python=PATH (the interpreter) and tree=DIR (the source
    tree it runs from)."""
    name, _, settings = text.partition("=")
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or name in ("engine", "websockets", "node"):
        raise ValueError(f"--variant {text!r}: a name of letters, digits, _.+- (not a server's)")
    python, tree, env = sys.executable, ROOT, []
    for word in shlex.split(settings):
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise ValueError(f"--variant {text!r}: {word!r} is not KEY=VALUE")
        if key == "python":
            python = value
        elif key == "tree":
            tree = Path(value).resolve()
        else:
            env.append((key, value))
    return ServerSpec(name, "engine", python, tree, tuple(env))


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
        help="fanout, reqreply: runs of each server, the order reversed every other round "
        "(default 2)",
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
        help="pinned (default): every server runs with glibc's malloc "
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
    parser.add_argument(
        "--servers",
        help="comma-separated servers, the table's columns in this order (default: engine, "
        "each --variant, websockets, node); engine and variants are engine columns, websockets "
        "(benchmarks/baseline_server.py) and node (benchmarks/node/ws_server.mjs) the references",
    )
    parser.add_argument(
        "--engine-python",
        metavar="PATH",
        default=sys.executable,
        help="the engine column's interpreter (default: this one)",
    )
    parser.add_argument(
        "--engine-tree",
        metavar="DIR",
        default=str(ROOT),
        help="the source tree the engine column runs from, e.g. a `git worktree` of another "
        "commit (default: this repository)",
    )
    parser.add_argument(
        "--engine-env",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="added to the engine column's environment (repeatable)",
    )
    parser.add_argument(
        "--variant",
        metavar="NAME=SETTINGS",
        action="append",
        default=[],
        help="another engine column called NAME, e.g. --variant 'uvloop=python=/venv/bin/python' "
        "or --variant 'head=tree=/tmp/engine-head KEY=VALUE'; SETTINGS: words KEY=VALUE (its "
        "environment), python=PATH, tree=DIR; a variant starts from the defaults, not from "
        "--engine-* (repeatable)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")

    engine_env = []
    for word in args.engine_env:
        key, eq, value = word.partition("=")
        if not eq or not key:
            parser.error(f"--engine-env {word!r}: not KEY=VALUE")
        engine_env.append((key, value))
    SERVERS["engine"] = ServerSpec(
        "engine", "engine", args.engine_python, Path(args.engine_tree).resolve(), tuple(engine_env)
    )
    variants = []
    for text in args.variant:
        try:
            variants.append(parse_variant(text))
        except ValueError as error:
            parser.error(str(error))
    for extra in variants:
        if extra.name in SERVERS:
            parser.error(f"--variant {extra.name}: the name is taken")
        SERVERS[extra.name] = extra
    if args.servers:
        names = [ALIASES.get(n.strip(), n.strip()) for n in args.servers.split(",") if n.strip()]
    else:
        names = ["engine", *(v.name for v in variants), "websockets", "node"]
    if not names or len(set(names)) != len(names) or not set(names) <= set(SERVERS):
        parser.error(f"--servers {args.servers}: each at most once, of {', '.join(SERVERS)}")
    servers = [SERVERS[n] for n in names]
    for spec in servers:
        if spec.is_engine and not (spec.tree / "scenario_engine").is_dir():
            parser.error(f"{spec.name}: {spec.tree} has no scenario_engine package")

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
    for spec in servers:
        line = spec.describe()
        if spec.is_engine and (spec.python != sys.executable or spec.tree != ROOT or spec.env):
            line += f" ({engine_software(spec)})"
        print(f"server {line}")
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
    table = Table(servers)
    raw: dict[str, Any] = {
        "machine": info,
        "args": vars(args),
        "servers": {s.name: {"kind": s.kind, "command": s.describe()} for s in servers},
    }
    engines = [s for s in servers if s.is_engine]

    def progress(text: str) -> None:
        print(f"… {text}", file=sys.stderr, flush=True)

    def throughput(mode: str, path: str, **options: Any) -> dict[str, list[Window]]:
        """Rounds of runs of every server, alternating the order (ABC, CBA, …), so that a drift
        of the machine's speed affects all alike."""
        runs: dict[str, list[Window]] = {name: [] for name in names}
        for r in range(args.rounds):
            for spec in servers if r % 2 == 0 else servers[::-1]:
                progress(f"{mode}: {spec.name} (round {r + 1} of {args.rounds})")
                runs[spec.name].append(
                    run_throughput(spec, mode, path, args.duration, args.warmup, **options)
                )
        raw[mode] = {k: [vars(w) for w in v] for k, v in runs.items()}
        return runs

    def per_item_us(windows: list[Window], key: str) -> float:
        return sum(w.server_cpu for w in windows) / sum(w.result[key] for w in windows) * 1e6

    def rate(windows: list[Window], key: str) -> float:
        return sum(w.result[key] for w in windows) / sum(w.result["seconds"] for w in windows)

    def latency(windows: list[Window], p: str) -> float:
        return statistics.mean(w.result["latency_ms"][p] for w in windows)

    def each(runs: dict[str, Any], figure: Callable[[Any], Value]) -> dict[str, Value]:
        return {name: figure(result) for name, result in runs.items()}

    def spread(mode: str, runs: dict[str, list[Window]], key: str, item: str) -> str:
        parts = []
        for name, windows in runs.items():
            values = [
                f"{w.result['per_second']:,.0f}/s {w.server_cpu / w.result[key] * 1e6:.2f}"
                f" (faults {w.minflt / w.result[key]:.1f}, load generator "
                f"{w.client_share:.0%}, others {w.other_share:.0%})"
                for w in windows
            ]
            parts.append(f"{name} " + ", ".join(values))
        return (
            f"{mode}: each round ({key}/s, server CPU µs and page faults per {item}): "
            + "; ".join(parts)
        )

    if "fanout" in only:
        runs = throughput("fanout", "/ws/chat", client=args.fanout_client)
        rates = each(runs, lambda w: rate(w, "deliveries"))
        cpus = each(runs, lambda w: per_item_us(w, "deliveries"))
        table.add(
            "fan-out: deliveries/s",
            rates,
            "{:,.0f}",
            relative(rates, "websockets", 0.95, "≥ 0.95x", at_least=True),
            relative(rates, "node", 1.0, "≥ 1.0x", at_least=True),
        )
        table.add(
            "fan-out: server CPU µs/delivery",
            cpus,
            "{:.2f}",
            relative(cpus, "websockets", 1.1, "≤ 1.1x"),
            relative(cpus, "node", 1.0, "≤ 1.0x"),
        )
        table.add("fan-out: latency p50 ms", each(runs, lambda w: latency(w, "p50")), "{:.2f}")
        table.add("fan-out: latency p99 ms", each(runs, lambda w: latency(w, "p99")), "{:.2f}")
        table.notes.append(f"fan-out: {load_line(runs)}")
        table.notes.append(spread("fan-out", runs, "deliveries", "delivery"))

    if "reqreply" in only:
        runs = throughput("reqreply", "/ws/ping")
        cpus = each(runs, lambda w: per_item_us(w, "replies"))
        table.add("request-reply: replies/s", each(runs, lambda w: rate(w, "replies")), "{:,.0f}")
        table.add(
            "request-reply: server CPU µs/reply",
            cpus,
            "{:.2f}",
            relative(cpus, "websockets", 1.15, "≤ 1.15x"),
            relative(cpus, "node", 1.0, "≤ 1.0x"),
        )
        table.add(
            "request-reply: latency p50 ms", each(runs, lambda w: latency(w, "p50")), "{:.2f}"
        )
        table.add(
            "request-reply: latency p99 ms", each(runs, lambda w: latency(w, "p99")), "{:.2f}"
        )
        table.notes.append(f"request-reply: {load_line(runs)}")
        table.notes.append(spread("request-reply", runs, "replies", "reply"))
        for name, windows in runs.items():
            bad = sum(w.result["bad"] for w in windows)
            if bad:
                table.notes.append(f"request-reply: {name}: {bad} wrong replies")

    if "accept" in only:
        storms: dict[str, Storm] = {}
        plan = [(spec.name, spec, 4096) for spec in servers]
        if "websockets" in names:  # what a too-small backlog does (asyncio's default)
            plan.append(("websockets-100", SERVERS["websockets"], 100))
        for label, spec, backlog in plan:
            progress(f"accept: {label}")
            storms[label] = run_accept(spec, args.storm_clients, backlog)
        raw["accept"] = {
            k: {"window": vars(v.window), "kernel": v.counters} for k, v in storms.items()
        }
        main_storms = {name: storms[name] for name in names}

        def all_open(storm: Storm) -> float:
            return storm.window.result["all_open_ms"] / 1000

        def waited(storm: Storm) -> int:
            return storm.counters["TCPSynRetrans"] + storm.window.result["tcp_connect_over_1s"]

        n = args.storm_clients
        for label, storm in storms.items():
            if storm.window.result["opened"] != n:
                table.notes.append(
                    f"accept: {label}: only {storm.window.result['opened']} of "
                    f"{n} opened ({storm.window.result['first_error']})"
                )
        opens = each(main_storms, all_open)
        table.add(
            f"accept {n:,}: all open, s",
            opens,
            "{:.2f}",
            relative(opens, "websockets", 1.5, "≤ 1.5x"),
            relative(opens, "node", 1.0, "≤ 1.0x"),
        )
        waits = each(main_storms, waited)
        table.add(
            "accept: SYN retransmits (kernel)",
            each(main_storms, lambda s: s.counters["TCPSynRetrans"]),
            "{:,}",
            absolute(waits, "0", lambda v: v == 0),
            ratio=False,
        )
        table.add(
            "accept: connects > 1 s (client)",
            each(main_storms, lambda s: s.window.result["tcp_connect_over_1s"]),
            "{:,}",
            ratio=False,
        )
        table.add(
            "accept: server CPU µs/connection",
            each(main_storms, lambda s: s.window.server_cpu / n * 1e6),
            "{:.0f}",
        )
        if "websockets-100" in storms:
            b100 = storms["websockets-100"]
            table.add(
                "accept: websockets with backlog 100, s",
                {"websockets": all_open(b100)},
                "{:.2f}",
                ratio=False,
            )
            table.add(
                "  … its SYN retransmits / > 1 s",
                {
                    "websockets": f"{b100.counters['TCPSynRetrans']:,} / "
                    f"{b100.window.result['tcp_connect_over_1s']:,}"
                },
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
        idles: dict[str, Idle] = {}
        plains: dict[str, Idle] = {}  # the reference servers without compression
        for spec in servers:
            progress(f"idle: {spec.name}")
            idles[spec.name] = run_idle(spec, args.idle_clients, "deflate")
        for spec in servers:
            if not spec.is_engine:
                progress(f"idle: {spec.name} without compression")
                plains[spec.name] = run_idle(spec, args.idle_clients, "none")
        raw["idle"] = {
            k: {**vars(v), "per_connection_kb": v.per_connection_kb}
            for k, v in [*idles.items(), *((f"{k}-plain", v) for k, v in plains.items())]
        }
        per = each(idles, lambda i: i.per_connection_kb)
        table.add(
            f"idle {args.idle_clients:,}, deflate: KB/connection",
            per,
            "{:.1f}",
            relative(per, "websockets", 0.5, "≤ 0.5x"),
            relative(per, "node", 1.0, "≤ 1.0x"),
        )
        if plains:
            table.add(
                "  … without compression",
                each(plains, lambda i: i.per_connection_kb),
                "{:.1f}",
                ratio=False,
            )
        for label, idle, expected in [
            *((k, v, v.clients) for k, v in idles.items()),
            *((f"{k} without compression", v, 0) for k, v in plains.items()),
        ]:
            if idle.negotiated != expected:
                table.notes.append(
                    f"idle: {label}: compression negotiated on "
                    f"{idle.negotiated} of {idle.clients} connections"
                )

    if "compile" in only and engines:
        medians: dict[str, Value] = {}
        raw["compile"] = {}
        lines = 0
        for spec in engines:
            progress(f"compile: {spec.name}")
            lines, times = bench_compile(spec, args.runs)
            medians[spec.name] = statistics.median(times)
            raw["compile"][spec.name] = {"lines": lines, "times": times}
            table.notes.append(
                f"compile: {spec.name}: min {min(times):.3f} s, max {max(times):.3f} s over "
                f"{len(times)} runs"
            )
        table.add(
            f"compile: check {lines:,} lines, s",
            medians,
            "{:.3f}",
            absolute(medians, "< 1 s", lambda v: v < 1),
            ratio=False,
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
        order = [(spec, v) for spec in servers for v in TIMER_PATHS]
        for r in range(args.timer_rounds):
            for spec, variant in order if r % 2 == 0 else order[::-1]:
                progress(f"timers: {spec.name} {variant} (round {r + 1} of {args.timer_rounds})")
                helds.setdefault((spec.name, variant), []).append(
                    run_hold(spec, variant, n, args.timer_warmup, args.timer_duration)
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

        def share(name: str, variant: str) -> float:
            hs = helds[(name, variant)]
            return sum(h.server_cpu for h in hs) / sum(h.seconds for h in hs)

        def alone(name: str, variant: str) -> float:
            """The timers' own share of a core: the route's minus that of /ws/tick/later."""
            return share(name, variant) - share(name, "idle")

        def kb(name: str, variant: str) -> float:
            return statistics.mean(h.per_connection_kb for h in helds[(name, variant)])

        def started_kb(name: str) -> float:
            return statistics.mean(h.per_started_timer_kb for h in helds[(name, "idle")])

        def per_server(figure: Callable[[str], float]) -> dict[str, Value]:
            return {name: figure(name) for name in names}

        runs_per_s = n / TIMER_INTERVAL
        table.add(
            f"idle {n:,} (no timers): server CPU, % of a core",
            per_server(lambda k: share(k, "idle") * 100),
            "{:.2f}",
            ratio=False,
        )
        for variant, what in (("set", "set session"), ("send", "send")):
            shares = per_server(lambda k, v=variant: alone(k, v) * 100)  # type: ignore[misc]
            table.add(
                f"timers {n:,} x 1 s, {what}: CPU alone, % of a core",
                shares,
                "{:.2f}",
                absolute(shares, "< 10%", lambda v: v < 10) if variant == "set" else None,
                ratio=False,
            )
            table.add(
                f"  … server CPU µs per timer run ({what})",
                per_server(lambda k, v=variant: alone(k, v) / runs_per_s * 1e6),  # type: ignore[misc]
                "{:.2f}",
            )
        table.add(
            "timers: KB per idle timer (started, same process)",
            per_server(started_kb),
            "{:.2f}",
        )
        table.add(
            "  … per set-session connection - per idle one",
            per_server(lambda k: kb(k, "set") - kb(k, "idle")),
            "{:.2f}",
        )
        table.add(
            f"  … KB per idle connection, {n:,}",
            per_server(lambda k: kb(k, "idle")),
            "{:.2f}",
        )
        for (name, variant), hs in helds.items():
            closed = sum(h.closed for h in hs)
            if closed:
                table.notes.append(f"timers: {name} {variant}: the server closed {closed} clients")
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
        # The engine's bound on the rooms a connection joins ('max rooms'): the servers written
        # by hand have no such bound, so this workload runs the (first) engine column alone.
        if not engines:
            table.notes.append("rooms: not run (it measures the engine's bound: no engine column)")
        else:
            engine = engines[0]
            results = {}
            for path in ("/ws/rooms", "/ws/rooms/unbounded"):
                progress(f"rooms: {engine.name} {path}")
                results[path] = run_rooms(engine, path, args.rooms)
            raw["rooms"] = {k: {**vars(v), "growth_mb": v.growth_mb} for k, v in results.items()}
            bounded, unbounded = results["/ws/rooms"], results["/ws/rooms/unbounded"]
            table.add(
                f"rooms: one client joins {args.rooms:,}: peak RSS growth, MB",
                {engine.name: bounded.growth_mb},
                "{:.1f}",
                Goal(
                    "bounded",
                    lambda name: (
                        not bounded.done and bounded.close_code == 1011
                        if name == engine.name
                        else None
                    ),
                ),
                ratio=False,
            )
            table.add(
                "  … the same route with max rooms 1,000,000",
                {engine.name: unbounded.growth_mb},
                "{:.1f}",
                ratio=False,
            )
            for path, result in results.items():
                table.notes.append(
                    f"rooms: {engine.name} {path}: "
                    + (
                        f"every join taken ({result.rooms:,} rooms)"
                        if result.done
                        else f"closed {result.close_code} before the last join"
                    )
                    + f"; RSS {result.rss_before_kb / 1024:.1f} MB before, peak "
                    f"{result.peak_kb / 1024:.1f} MB, {result.rss_after_kb / 1024:.1f} MB once "
                    "the client had gone"
                )

    table.print()
    print()
    for note in table.notes:
        print(note)
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()

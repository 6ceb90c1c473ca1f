"""``serve --workers N``: N processes serve one port, and a supervisor runs them.

Each worker is a whole ``serve`` (the same command line, through the same ``serve_files``),
started as ``python -m scenario_engine.cli.worker``; the supervisor serves nothing itself.

One port, several processes: SO_REUSEPORT
    Each worker opens its own listening socket on the port with SO_REUSEPORT, and the kernel
    spreads the connections over the sockets by a hash of each connection's addresses. The
    other way, one socket opened by the supervisor and inherited by every worker, leaves the
    choice to whichever worker wakes first: asyncio and uvloop then accept every connection
    waiting, and one worker takes most of them. Measured on Linux with two workers (idle
    servers; the clients connect one at a time, or 50 at once): with one shared socket, 20 of
    20 and 107 of 200 clients on one uvloop worker, 690 of 1,000 in bursts (asyncio: 13/20,
    130/200, 542/1,000); with SO_REUSEPORT, 11/20, 108/200 and 516/1,000 at most on either
    loop. A worker that dies takes its socket with it: until it is back, new clients go to
    the others instead of waiting in its queue.

    The supervisor binds the port first, with SO_REUSEPORT and without listening, and keeps
    it for its lifetime: ``--port 0`` becomes a port it can print and give every worker; a
    port in use is reported once, as ``serve`` reports it; and the port stays this cluster's
    while a worker restarts. Processes of the same user may join a SO_REUSEPORT port: once it
    has bound a port it was given, the supervisor checks that nothing listens on it yet, so
    that it never silently shares the port of another server of this user. Linux only: elsewhere
    SO_REUSEPORT does not spread connections.

What each worker does on its own
    TLS (each loads the certificate), ``--admin`` and ``--ui`` (each answers on the port, for
    the whole cluster: runtime/cluster_admin.py), ``--max-connections`` (a bound on each
    worker, as it bounds each process's memory) and ``--watch``: each worker watches the
    files and reloads them itself, as one ``serve`` does, so no second channel is needed to
    tell them. A worker restarted later reads the files as they are then.

The link between the supervisor and a worker
    A socket pair, the worker's standard input. The supervisor sends one JSON line (the
    worker's index, the port, the command line); the worker answers one JSON line when it
    listens (what ``serve`` prints at start, for the supervisor to print once). The supervisor
    never writes again: end of file means it is gone, even SIGKILLed, and the worker then
    stops as on SIGTERM. Workers' standard output comes back through a pipe and goes out whole
    line by line (``--journal -``); their logs go straight to standard error, tagged
    ``[worker N]``.

Signals and deaths
    SIGINT or SIGTERM: the supervisor sends SIGTERM to every worker (each closes its clients
    with 1001, as ``serve`` does) and exits once they have. A worker that dies otherwise is
    restarted under the same index; one that keeps dying soon after it started is restarted
    after a delay that doubles each time (RESTART_DELAYS), and each death is logged.

Journals
    Every event carries ``worker`` (the index) and ``process`` (the backplane's name of the
    process). ``--journal FILE``: one file for all workers, truncated by the supervisor when
    it starts; each worker appends each event as one line in one write(2) (``AppendedLines``),
    which POSIX keeps whole. One file keeps the cluster's events in one place, in the order
    they were written.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from ..runtime.link import CLOSE_TIMEOUT
from .common import cannot_listen

__all__ = [
    "RESTART_DELAYS",
    "STABLE_AFTER",
    "WORKER_MODULE",
    "WorkerLink",
    "ready_line",
    "supervise",
]

#: The module a worker runs as (``python -m``).
WORKER_MODULE = "scenario_engine.cli.worker"
#: A worker that dies within this many seconds of its start died "at once".
STABLE_AFTER = 5.0
#: The delays before restarting a worker that died at once 1, 2, 3… times in a row (the last
#: one repeats). The first restart is immediate: one crash is not a loop.
RESTART_DELAYS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: How long workers get to close their clients on SIGTERM before they are killed: each
#: client has CLOSE_TIMEOUT to answer the close.
STOP_TIMEOUT = CLOSE_TIMEOUT + 5.0
#: The longest line a link carries (the start lines of a worker, its command line).
_MAX_LINK_LINE = 1024 * 1024
#: How much of a worker's standard output is read at once.
_RELAY_CHUNK = 65536

logger = logging.getLogger("scenario_engine")


class WorkerLink:
    """A worker's end of its link to the supervisor (fd 0, a socket)."""

    def __init__(self, sock: socket.socket, index: int, port: int, argv: list[str]) -> None:
        self._sock = sock
        #: The worker's number, 1 to N; a restarted worker keeps the index of the one it
        #: replaces.
        self.index = index
        #: The port the supervisor holds, which the worker listens on too.
        self.port = port
        #: The ``scenario-engine`` command line (``serve …``), as the supervisor was given it.
        self.argv = argv

    @classmethod
    def accept(cls, fd: int = 0) -> WorkerLink:
        """Read what the supervisor sends a worker when it starts it; blocks until then."""
        try:
            sock = socket.socket(fileno=fd)
            line = sock.makefile("rb", buffering=0).readline(_MAX_LINK_LINE)
            hello = json.loads(line)
            return cls(sock, int(hello["index"]), int(hello["port"]), list(hello["argv"]))
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(
                f"{WORKER_MODULE} is started by 'scenario-engine serve --workers N', not by hand"
            ) from None

    def ready(self, lines: Sequence[str], ready: dict[str, Any]) -> None:
        """Tell the supervisor this worker listens; ``lines``: what it would print at start,
        ``ready``: the facts of its ready line (``ready_line``'s arguments)."""
        message = {"pid": os.getpid(), "lines": list(lines), "ready": ready}
        self._sock.sendall(json.dumps(message).encode() + b"\n")

    def on_gone(self, callback: Any) -> None:
        """Call ``callback()`` once the supervisor is gone (the link's end of file), on the
        running event loop."""
        loop = asyncio.get_running_loop()
        self._sock.setblocking(False)

        def readable() -> None:
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(self._sock.fileno())
                callback()

        loop.add_reader(self._sock.fileno(), readable)


def supervise(args: argparse.Namespace, workers: int) -> int:
    """Run ``args`` (a parsed ``serve`` command line, ``args.argv`` its text) as ``workers``
    processes on one port until SIGINT or SIGTERM; the exit status."""
    if not sys.platform.startswith("linux"):
        raise UsageError(
            "--workers needs Linux: other systems do not spread the connections of one "
            "SO_REUSEPORT port over its processes"
        )
    try:
        reserved, port = _reserve(args.host, args.port)
    except OSError as err:
        return cannot_listen(args.host, args.port, err)
    try:
        if args.journal not in (None, "-"):
            try:
                open(args.journal, "w").close()  # the workers append to it
            except OSError as err:
                raise UsageError(f"{args.journal}: {err.strerror or err}") from None
        logging.basicConfig(
            level=logging.ERROR if args.quiet else logging.INFO,
            format="%(asctime)s %(levelname)s [supervisor] %(message)s",
            stream=sys.stderr,
        )
        return asyncio.run(_Supervisor(list(args.argv), workers, port).run())
    finally:
        for sock in reserved:
            sock.close()


def _reserve(host: str, port: int) -> tuple[list[socket.socket], int]:
    """Bind ``host``:``port`` (0: a free port) with SO_REUSEPORT, without listening, on every
    address ``host`` names, as asyncio's ``create_server`` binds them; the sockets and the
    port. Raises OSError when the port is taken, or another server of this user listens on
    it with SO_REUSEPORT (which the bind alone would let this cluster share)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            given = port
            sock.bind((address, port))
            port = sock.getsockname()[1]
            if given:  # a port just picked by the system is nobody's
                _check_unserved(family, address, port)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets, port


def _check_unserved(family: socket.AddressFamily, address: str, port: int) -> None:
    """Raise OSError(EADDRINUSE) when a server already listens on ``address``:``port``."""
    target = address
    if ipaddress.ip_address(address).is_unspecified:
        target = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((target, port)) == 0:
            raise OSError(
                errno.EADDRINUSE,
                "Address already in use (a server of this user listens there with "
                "SO_REUSEPORT; serve --workers does not share a port)",
            )


class _Worker:
    """The supervisor's view of one worker process."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.started = 0.0
        #: Deaths in a row, each soon after the worker started.
        self.quick_deaths = 0
        #: Set when the worker says it listens: its start message.
        self.ready: asyncio.Future[dict[str, Any]] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class _Supervisor:
    def __init__(self, argv: list[str], count: int, port: int) -> None:
        self.argv = argv
        self.port = port
        self.workers = [_Worker(index) for index in range(1, count + 1)]
        self.stopping = asyncio.Event()
        #: Each worker whose process exited while the supervisor was not stopping.
        self.exits: asyncio.Queue[_Worker] = asyncio.Queue()
        #: What follows each worker process: its link, its output, its exit. They end on
        #: their own once it has exited (its output passed on to the end).
        self.tasks: set[asyncio.Task[None]] = set()
        #: Whether standard output failed (the workers' output is dropped since).
        self.output_lost = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            failed = await self._start_all()
            if failed is not None:
                return failed
            if self.stopping.is_set():
                return 0
            await self._watch()
            return 0
        finally:
            await self._stop_all()

    async def _start_all(self) -> int | None:
        """Start the workers: the first alone (a mistake in the files or the options is
        reported once, by it), then the others together. Print the start lines once all
        listen; None, or the exit status of a worker that could not start."""
        first, *others = self.workers
        await self._spawn(first)
        status = await self._until_ready([first])
        if status is not None:
            return status
        for worker in others:
            await self._spawn(worker)
        status = await self._until_ready(others)
        if status is not None:
            return status
        logger.info(
            "workers listening: %s",
            ", ".join(f"{w.index} (pid {w.pid})" for w in self.workers),
        )
        assert first.ready is not None
        started = first.ready.result()
        for line in started["lines"]:
            print(line, flush=True)
        print(ready_line(**started["ready"], workers=len(self.workers)), flush=True)
        return None

    async def _until_ready(self, workers: list[_Worker]) -> int | None:
        """Wait until each of ``workers`` listens; the exit status of one that exits first
        (1 for a signal), or None (also when a signal stops the supervisor meanwhile)."""
        pending = {w.ready for w in workers if w.ready is not None}
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            while pending:
                exit_wait = asyncio.ensure_future(self.exits.get())
                waits: list[asyncio.Future[Any]] = [*pending, exit_wait, stop]
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if exit_wait in done:
                    dead = exit_wait.result()
                    assert dead.process is not None
                    code = dead.process.returncode
                    return code if code is not None and code > 0 else 1
                exit_wait.cancel()
                if stop in done:
                    return None
                pending -= done
            return None
        finally:
            stop.cancel()

    async def _watch(self) -> None:
        """Serve until a signal: restart each worker that dies."""
        stop = asyncio.ensure_future(self.stopping.wait())
        restarts: set[asyncio.Task[None]] = set()
        try:
            while True:
                exit_wait = asyncio.ensure_future(self.exits.get())
                done, _ = await asyncio.wait([exit_wait, stop], return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    exit_wait.cancel()
                    return
                task = asyncio.create_task(self._restart(exit_wait.result()))
                restarts.add(task)
                task.add_done_callback(restarts.discard)
        finally:
            stop.cancel()
            for task in restarts:
                task.cancel()
            await asyncio.gather(*restarts, return_exceptions=True)

    async def _restart(self, worker: _Worker) -> None:
        assert worker.process is not None and worker.process.returncode is not None
        lived = time.monotonic() - worker.started
        worker.quick_deaths = worker.quick_deaths + 1 if lived < STABLE_AFTER else 1
        delay = RESTART_DELAYS[min(worker.quick_deaths, len(RESTART_DELAYS)) - 1]
        how = _exit_text(worker.process.returncode)
        if delay:
            logger.warning(
                "worker %d (pid %d) %s %.1f s after it started, %d times in a row; "
                "restarting it in %g s",
                worker.index,
                worker.pid,
                how,
                lived,
                worker.quick_deaths,
                delay,
            )
            await asyncio.sleep(delay)
        else:
            logger.warning("worker %d (pid %d) %s; restarting it", worker.index, worker.pid, how)
        await self._spawn(worker)
        assert worker.ready is not None
        exited: asyncio.Future[Any] = asyncio.ensure_future(worker.process.wait())
        try:
            await asyncio.wait([worker.ready, exited], return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if worker.ready.done():
            logger.info("worker %d restarted (pid %d)", worker.index, worker.pid)

    async def _spawn(self, worker: _Worker) -> None:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                WORKER_MODULE,
                stdin=theirs.fileno(),
                stdout=asyncio.subprocess.PIPE,
            )
        finally:
            theirs.close()
        hello = {"index": worker.index, "port": self.port, "argv": self.argv}
        ours.sendall(json.dumps(hello).encode() + b"\n")
        worker.process = process
        worker.started = time.monotonic()
        worker.ready = asyncio.get_running_loop().create_future()
        reader, writer = await asyncio.open_connection(sock=ours, limit=_MAX_LINK_LINE)
        for follow in (
            self._hear(worker, worker.ready, reader, writer),
            self._relay(process),
            self._await_exit(worker, process),
        ):
            task = asyncio.create_task(follow)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _hear(
        self,
        worker: _Worker,
        ready: asyncio.Future[dict[str, Any]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Take the worker's start message; then keep the link open (the worker stops when
        it closes) until the worker ends it."""
        try:
            line = await reader.readline()
            if line and not ready.done():
                ready.set_result(json.loads(line))
            await reader.read()
        except (OSError, ValueError) as err:
            logger.error("worker %d: bad message on its link: %s", worker.index, err)
        finally:
            writer.close()

    async def _relay(self, process: asyncio.subprocess.Process) -> None:
        """Pass a worker's standard output on, whole lines at a time: lines of several
        workers never mix (a pipe keeps writes whole only up to PIPE_BUF bytes)."""
        assert process.stdout is not None
        partial = b""
        while chunk := await process.stdout.read(_RELAY_CHUNK):
            if self.output_lost:
                continue  # read on, so that the worker is never stuck writing
            partial += chunk
            end = partial.rfind(b"\n") + 1
            if end:
                self._write_out(partial[:end])
                partial = partial[end:]
        if partial and not self.output_lost:
            self._write_out(partial + b"\n")

    def _write_out(self, data: bytes) -> None:
        """Bytes to standard output (as text when it is not a file: ``main`` called under
        ``contextlib.redirect_stdout``). Once that fails (a reader gone: ``serve … | head``),
        the workers' output is dropped."""
        try:
            binary = getattr(sys.stdout, "buffer", None)
            if binary is not None:
                binary.write(data)
                binary.flush()
            else:
                sys.stdout.write(data.decode(errors="replace"))
                sys.stdout.flush()
        except (OSError, ValueError) as err:
            logger.error("cannot write to standard output any more: %s", err)
            self.output_lost = True

    async def _await_exit(self, worker: _Worker, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        if not self.stopping.is_set():
            self.exits.put_nowait(worker)

    async def _stop_all(self) -> None:
        """SIGTERM every worker still running and wait for them (killing those that take
        longer than STOP_TIMEOUT), their output passed on to the end."""
        running = [
            w for w in self.workers if w.process is not None and w.process.returncode is None
        ]
        if running:
            print("shutting down: closing connections with 1001 (going away)", flush=True)
        for worker in running:
            assert worker.process is not None
            worker.process.terminate()
        for worker in running:
            assert worker.process is not None
            try:
                await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                logger.error(
                    "worker %d (pid %d) did not stop within %g s: killed",
                    worker.index,
                    worker.pid,
                    STOP_TIMEOUT,
                )
                worker.process.kill()
                await worker.process.wait()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def ready_line(routes: int, host: str, port: int, loop: str, workers: int = 1) -> str:
    """The line ``serve`` prints once it listens (scripts wait for it, and read the port)."""
    processes = f", {workers} workers" if workers > 1 else ""
    return (
        f"ready: {routes} route{'' if routes == 1 else 's'} on {host}:{port}, {loop} loop"
        f"{processes} (Ctrl+C to stop)"
    )


def _exit_text(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"

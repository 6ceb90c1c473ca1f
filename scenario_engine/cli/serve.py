"""``scenario-engine serve``: load scenarios, start the server, stop cleanly on a signal;
with ``--watch``, serve each new version of the files as they are saved; with ``--backplane``,
serve as one of several processes joined through Redis (docs/scale-out.md)."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BackplaneError, ScenarioError, ScenarioErrors, UsageError
from ..language.loader import SCENARIO_SUFFIXES
from .arguments import host_name, network, positive_float, positive_int, redis_url
from .common import Commands, cannot_listen, report

if TYPE_CHECKING:
    from watchfiles import Change

    from ..language.ir import Loaded
    from ..runtime.admin import Network
    from ..runtime.cluster import Cluster
    from ..runtime.journal import Sink
    from ..runtime.server import ScenarioServer
    from .supervisor import WorkerLink

__all__ = ["LOOPS", "add_parser", "run", "serve_files"]

#: The event loops ``--loop`` chooses from.
LOOPS = ("auto", "asyncio", "uvloop")
#: How long the files must stay quiet before a reload (milliseconds). Editors save in a burst
#: of writes (a temporary file, a rename, a backup) a few milliseconds apart: watchfiles hands
#: the changes over once none has come for this long, so a save is one reload.
WATCH_STEP_MS = 50
#: The longest watchfiles goes on grouping changes that keep coming (milliseconds).
WATCH_DEBOUNCE_MS = 1600

logger = logging.getLogger("scenario_engine")


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("serve", help="serve scenario files as a WebSocket server")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port to listen on (default 8765; 0 picks a free one)",
    )
    parser.add_argument("--certfile", help="TLS certificate (PEM): serve wss://")
    parser.add_argument("--keyfile", help="TLS private key (PEM), with --certfile")
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        metavar="N",
        help="at most N clients at once on the whole server (HTTP 503 beyond)",
    )
    parser.add_argument(
        "--open-timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="time a client has to complete the opening handshake (default 10)",
    )
    parser.add_argument("--quiet", action="store_true", help="log only errors")
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="event loop: uvloop if installed (pip install 'scenario-engine[fast]'), else "
        "asyncio's own (default auto)",
    )
    parser.add_argument(
        "--journal",
        metavar="FILE",
        help="write every connect, reject, message and close to FILE as JSON "
        "lines (- for standard output)",
    )
    parser.add_argument(
        "--journal-size",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="events the journal keeps in memory for the admin API (default 10000)",
    )
    parser.add_argument(
        "--admin",
        action="store_true",
        help="answer the admin API (HTTP, JSON) under /__admin on the same port",
    )
    parser.add_argument(
        "--ui",
        action="store_true",
        help="serve the inspector, a live page of connections, messages and state, at "
        "/__admin/ (implies --admin)",
    )
    parser.add_argument(
        "--admin-allow",
        action="append",
        type=network,
        metavar="CIDR",
        help="networks allowed to use the admin API, instead of the loopback default (repeatable)",
    )
    parser.add_argument(
        "--admin-host",
        action="append",
        type=host_name,
        metavar="NAME",
        help="a name the admin API answers under besides localhost, loopback addresses and "
        "the address listened on (repeatable; '*': any name, no guard against DNS rebinding)",
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="serve each new version of the files when they change, without a restart: "
        "clients of unchanged routes stay connected, those of changed routes are closed "
        "with 1012",
    )
    backplane = parser.add_argument_group(
        "several processes (docs/scale-out.md)",
        "Serve as one of several processes of one mock, joined through one Redis server: "
        "broadcasts reach the clients of every process, state is shared, route timers run "
        "on one process. Needs pip install 'scenario-engine[redis]'.",
    )
    backplane.add_argument(
        "--backplane",
        type=redis_url,
        metavar="URL",
        help="the Redis server joining the processes: redis://HOST:PORT/DB, or rediss:// "
        "for TLS (a password as redis://:PASSWORD@HOST…)",
    )
    backplane.add_argument(
        "--backplane-prefix",
        metavar="PREFIX",
        help="start of every key and channel name in Redis (default: made of the DB number "
        "and the names of the files served, so that other mocks on the same Redis are apart)",
    )
    backplane.add_argument(
        "--backplane-lease",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="how long a process holds the route timers (renewed while it lives) or a "
        "file's state (while it runs handlers) without giving them back: another process "
        "takes over within this when it dies (default 5)",
    )
    backplane.add_argument(
        "--backplane-retry",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="the longest wait between two tries to reach a lost Redis (default 5; the "
        "first try is within 50 ms, each next one waits twice as long)",
    )
    backplane.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="serve from N processes on the one port, a supervisor restarting any that dies "
        "(Linux; above 1 needs --backplane, through which the processes share rooms, "
        "broadcasts and state)",
    )
    # ``worker``: set when this command runs as a worker of ``serve --workers`` (worker.py).
    parser.set_defaults(run=run, worker=None)


def run(args: argparse.Namespace) -> int:
    worker: WorkerLink | None = args.worker
    if worker is None and args.workers > 1:
        from .supervisor import supervise

        if args.backplane is None:
            raise UsageError(
                f"--workers {args.workers} needs --backplane redis://HOST:PORT/DB: each "
                "worker is a process of its own, and without a backplane rooms, broadcasts "
                "and state would be split between them (a client would not hear what is "
                "broadcast to its room on another worker)"
            )
        return supervise(args, args.workers)
    return serve_files(
        args.paths,
        host=args.host,
        port=args.port,
        certfile=args.certfile,
        keyfile=args.keyfile,
        quiet=args.quiet,
        max_connections=args.max_connections,
        open_timeout=args.open_timeout,
        journal_file=args.journal,
        journal_size=args.journal_size,
        admin=args.admin,
        admin_allow=args.admin_allow,
        admin_hosts=args.admin_host,
        loop=args.loop,
        watch=args.watch,
        ui=args.ui,
        backplane=args.backplane,
        backplane_prefix=args.backplane_prefix,
        backplane_lease=args.backplane_lease,
        backplane_retry=args.backplane_retry,
        worker=worker,
    )


def serve_files(
    paths: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 8765,
    certfile: str | None = None,
    keyfile: str | None = None,
    quiet: bool = False,
    max_connections: int | None = None,
    open_timeout: float | None = None,
    journal_file: str | None = None,
    journal_size: int | None = None,
    admin: bool = False,
    admin_allow: Sequence[Network] | None = None,
    admin_hosts: Sequence[str] | None = None,
    loop: str = "auto",
    watch: bool = False,
    ui: bool = False,
    backplane: str | None = None,
    backplane_prefix: str | None = None,
    backplane_lease: float | None = None,
    backplane_retry: float | None = None,
    worker: WorkerLink | None = None,
) -> int:
    """Serve until SIGINT or SIGTERM; 0 on a clean stop, 1 if the scenarios have errors.

    ``journal_file``: write every event there as a JSON line (``-``: standard output). With
    the admin API on (``admin``, open to ``admin_allow``, loopback by default, and answering
    under this server's own names and ``admin_hosts``), the journal's last ``journal_size``
    events are also kept in memory, for it to read.

    ``ui``: serve the inspector's page and feed under the admin API (which it turns on).

    ``loop``: one of LOOPS; "auto" is uvloop when it is installed.

    ``watch``: watch ``paths`` and serve each new version of the files that loads without
    errors (docs/inspector.md, "serve --watch").

    ``backplane``: a Redis URL: serve as one of several processes joined through it
    (``backplane_prefix``, ``_lease`` and ``_retry`` as ``--backplane-prefix``…); 1 when it
    cannot be reached at start-up.

    ``worker``: serve as this worker of ``serve --workers``, on the port its supervisor holds
    (``port`` is not used): tell the supervisor when listening instead of printing the start
    lines, stop when the supervisor is gone, tag logs and journal events with the worker's
    index (supervisor.py).

    Raises UsageError for bad options and for a route under the admin API's prefix.
    """
    # The server and its dependencies load here, not when the command line is parsed: the
    # other commands (check in an editor, say) start without them.
    from ..runtime.admin import LOOPBACK
    from ..runtime.compiler import load_program
    from ..runtime.journal import DEFAULT_LIMIT, Journal
    from ..runtime.server import OPEN_TIMEOUT, ScenarioServer

    if worker is not None:
        port = worker.port

    admin = admin or ui
    if admin_allow is not None and not admin:
        raise UsageError("--admin-allow needs --admin (or --ui)")
    if admin_hosts is not None and not admin:
        raise UsageError("--admin-host needs --admin (or --ui)")
    if backplane is None and backplane_prefix is not None:
        raise UsageError("--backplane-prefix needs --backplane")
    loop_factory, loop_name = _event_loop(loop)
    loaded: dict[str, Loaded] = {}
    try:
        # With --watch, each reload parses and checks again only the files whose text changed.
        program = load_program(paths, reuse=loaded if watch else None)
    except ScenarioErrors as err:
        print(err.format_text() + "\n", file=sys.stderr)
        print(f"not serving: {err.count_text()}", file=sys.stderr)
        return 1
    for warning in program.warnings:
        print(warning.format_text() + "\n", file=sys.stderr)
    if not program.routes:
        print(
            "not serving: the files define no routes (only tests, which "
            "'scenario-engine test --target URL' runs against a server)",
            file=sys.stderr,
        )
        return 1
    cluster = None
    if backplane is not None:
        from ..runtime.backplane import DEFAULT_LEASE, DEFAULT_RETRY, BackplaneSettings
        from ..runtime.cluster import Cluster

        settings = BackplaneSettings(
            backplane,
            backplane_prefix,
            lease=DEFAULT_LEASE if backplane_lease is None else backplane_lease,
            retry=DEFAULT_RETRY if backplane_retry is None else backplane_retry,
        )
        cluster = Cluster(settings, list(program.files))
    context = None
    if certfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as err:
            raise UsageError(f"cannot load TLS certificate: {err}") from None
    elif keyfile is not None:
        raise UsageError("--keyfile needs --certfile")
    tag = "" if worker is None else f"[worker {worker.index}] "
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.INFO,
        format=f"%(asctime)s %(levelname)s {tag}%(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("scenario_engine.websockets").setLevel(logging.WARNING)
    # Its "1 change detected" before each reload says less than the reload's own line.
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    with ExitStack() as stack:
        sink = _journal_sink(journal_file, stack, shared=worker is not None)
        # Only the admin API reads the journal back: a journal only written keeps nothing.
        kept = DEFAULT_LIMIT if journal_size is None else journal_size
        # In a cluster, every event says which process recorded it.
        stamp: dict[str, Any] = {}
        if worker is not None:
            stamp["worker"] = worker.index
        if cluster is not None:
            stamp["process"] = cluster.backplane.origin
        journal = Journal(kept if admin else 0, sink, stamp) if admin or sink is not None else None
        server = ScenarioServer(
            program,
            host,
            port,
            ssl=context,
            max_connections=max_connections,
            open_timeout=OPEN_TIMEOUT if open_timeout is None else open_timeout,
            journal=journal,
            admin=admin,
            admin_allow=LOOPBACK if admin_allow is None else admin_allow,
            admin_hosts=admin_hosts or (),
            inspector=ui,
            reuse_port=worker is not None,
            cluster=cluster,
        )
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                watcher = _Watcher(server, paths, loaded) if watch else None
                runner.run(_run(server, loop_name, watcher, worker))
        except _CannotListen as failed:
            return cannot_listen(host, port, failed.error)
        except BackplaneError as err:
            print(f"scenario-engine: error: {err}", file=sys.stderr)
            return 1
    return 0


class _CannotListen(Exception):
    """The listening socket could not be opened (port taken, address not this machine's):
    told apart from an OSError later on, which is not about listening."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _journal_sink(name: str | None, stack: ExitStack, shared: bool = False) -> Sink | None:
    """Where the journal's lines go: none, standard output (``-``), or the file ``name``,
    truncated, or when ``shared`` by the workers of ``serve --workers``, appended to line by
    line (their supervisor truncated it)."""
    from ..runtime.journal import AppendedLines

    if name is None or name == "-":
        return None if name is None else sys.stdout
    try:
        if shared:
            return stack.enter_context(AppendedLines(name))
        return stack.enter_context(open(name, "w", encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"{name}: {err.strerror or err}") from None


def _tune_process() -> None:
    """Settings for a process that only serves: fewer, cheaper garbage collections, and
    socket read buffers that do not cost system calls on every message.

    - The program, compiled at start-up, lives as long as the process: frozen, the collector
      never scans it again; a message makes many short-lived objects, so collections start
      less often (about a third less CPU per connection in an accept storm).
    - asyncio reads into 256 KiB buffers. glibc serves blocks of that size with mmap until a
      free happens to raise its threshold, and trims the heap above 128 KiB: until then every
      message costs extra system calls and page faults (up to +15 us per message measured).
      Fixing the thresholds makes that cost predictable. Other C libraries are left alone.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1024 * 1024)
    mallopt(m_trim_threshold, 2 * 1024 * 1024)


def _event_loop(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The event loop to serve on (None: asyncio's own), and its name for the start line.

    uvloop runs the same server with its loop, transports and parsing of socket events in C:
    less CPU per message (docs/performance.md). It is optional, so that the base install
    needs no compiler on platforms without wheels.
    """
    if choice == "asyncio":
        return None, "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise UsageError(
                "--loop uvloop: uvloop is not installed (pip install 'scenario-engine[fast]')"
            ) from None
        return None, "asyncio"
    return uvloop.new_event_loop, f"uvloop {getattr(uvloop, '__version__', '')}".rstrip()


async def _run(
    server: ScenarioServer,
    loop_name: str,
    watcher: _Watcher | None = None,
    worker: WorkerLink | None = None,
) -> None:
    from ..runtime.admin import ADMIN_PREFIX
    from .supervisor import ready_line

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # A worker stops on SIGTERM from its supervisor, which alone answers SIGINT (worker.py).
    for sig in (signal.SIGTERM,) if worker is not None else (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cluster = server.cluster
    if cluster is not None:
        await cluster.connect()
    try:
        await server.start()
    except OSError as err:
        raise _CannotListen(err) from err
    _tune_process()
    urls = server.route_urls()
    lines = [f"serving {url}" for url in urls]
    if server.admin is not None:
        scheme, rest = server.url(ADMIN_PREFIX).split("://", 1)
        base = f"{'https' if scheme == 'wss' else 'http'}://{rest}"
        lines.append(f"admin API at {base}")
        if server.inspector is not None:
            lines.append(f"inspector at {base}/")
    if cluster is not None:
        lines.append(_backplane_line(cluster, worker))
    if watcher is not None:
        await watcher.start()
        lines.append(f"watching {', '.join(watcher.paths)} for changes")
    ready: dict[str, Any] = {
        "routes": len(urls),
        "host": server.host,
        "port": server.port,
        "loop": loop_name,
    }
    if worker is None:
        for line in lines:
            print(line, flush=True)
        print(ready_line(**ready), flush=True)
    else:
        # The supervisor prints them once for all its workers, and stops this one when it
        # is gone.
        worker.ready(lines, ready)
        worker.on_gone(stop.set)
    await stop.wait()
    if watcher is not None:
        await watcher.stop()
    if worker is None:
        print("shutting down: closing connections with 1001 (going away)", flush=True)
    await server.close()
    if cluster is not None:
        status = cluster.status()
        totals = (
            f"backplane: published {status['published']:,}, received {status['received']:,}, "
            f"not published {status['dropped']:,}, outages {status['outages']:,}"
        )
        if worker is None:
            print(totals, flush=True)
        else:
            logger.info("%s", totals)


def _backplane_line(cluster: Cluster, worker: WorkerLink | None) -> str:
    """The start line about the backplane. A worker's, which its supervisor prints for all,
    does not name the process (each worker logs its own name instead)."""
    status = cluster.status()
    state = "connected" if status["connected"] else "not connected yet (retrying)"
    if worker is not None:
        logger.info("backplane: this worker is process %s", status["process"])
        return f"backplane {status['url']}, prefix {status['prefix']}: {state}"
    return (
        f"backplane {status['url']}, prefix {status['prefix']}, this process "
        f"{status['process']}: {state}"
    )


class _Watcher:
    """``--watch``: watches the scenario files served and serves each new version that loads.

    Files are loaded and checked in a thread, so that the server goes on serving meanwhile; a
    version with errors is reported as ``check`` reports them and not served. Changes that
    come while a version loads make one more reload once it is done.
    """

    def __init__(
        self, server: ScenarioServer, paths: Sequence[str], loaded: dict[str, Loaded]
    ) -> None:
        self.server = server
        self.paths = list(paths)
        #: Each file's last load without errors, by name: a reload takes the files whose text
        #: is unchanged from here instead of parsing and checking them again.
        self._loaded = loaded
        self._stop = asyncio.Event()
        self._changed: asyncio.Queue[set[str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Watch; once this returns, every change to the files is seen."""
        from watchfiles import awatch

        directories, folders = _watched_folders(self.paths)
        accept = _ScenarioChanges(self.paths)
        for targets, recursive in ((directories, True), (folders, False)):
            if targets:
                changes = awatch(
                    *targets,
                    watch_filter=accept,
                    step=WATCH_STEP_MS,
                    debounce=WATCH_DEBOUNCE_MS,
                    recursive=recursive,
                    stop_event=self._stop,
                )
                self._tasks.append(asyncio.create_task(self._collect(changes)))
        self._tasks.append(asyncio.create_task(self._reload_each()))
        # awatch sets its watches up before it first waits (for a thread): once the tasks
        # have taken one step, a file written after "ready" is not missed.
        await asyncio.sleep(0)

    async def stop(self) -> None:
        self._stop.set()  # the watching threads see it within a step, and end
        self._tasks[-1].cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _collect(self, changes: AsyncIterator[set[tuple[Change, str]]]) -> None:
        try:
            async for batch in changes:
                self._changed.put_nowait({path for _, path in batch})
        except Exception as err:  # the folder went away, no more inotify watches…
            logger.error("--watch: not watching any more: %s", err)

    async def _reload_each(self) -> None:
        while True:
            changed = await self._changed.get()
            while not self._changed.empty():
                changed |= self._changed.get_nowait()
            try:
                await self._reload(changed)
            except Exception:  # a bug of ours: this version is not served, the next may be
                logger.exception("reload failed")

    async def _reload(self, changed: set[str]) -> None:
        from ..runtime.compiler import load_program

        started = time.perf_counter()
        files = ", ".join(_shown(path) for path in sorted(changed))
        try:
            previous = self.server.engine.program
            program = await asyncio.to_thread(load_program, self.paths, previous, self._loaded)
            if not program.routes:
                raise UsageError("the files define no routes")
            reloaded = self.server.reload(program)
        except ScenarioErrors as err:
            report(sorted(set(err.errors), key=ScenarioError.sort_key), sys.stderr)
            # The errors may be in another file than the one saved (a twin in the other spelling).
            logger.error(
                "not reloaded (%s changed): %s; serving the previous version",
                files,
                err.count_text(),
            )
            return
        except UsageError as err:
            logger.error("not reloaded (%s changed): %s; serving the previous version", files, err)
            return
        real = {os.path.realpath(path) for path in changed}
        report([w for w in program.warnings if os.path.realpath(w.file) in real], sys.stderr)
        elapsed = (time.perf_counter() - started) * 1000
        closed = f"closed {reloaded.closed}" + (" (1012)" if reloaded.closed else "")
        logger.info(
            "reloaded %s in %.0f ms: %s; kept %d client%s, %s",
            files,
            elapsed,
            reloaded.changes.describe(),
            reloaded.kept,
            "" if reloaded.kept == 1 else "s",
            closed,
        )


class _ScenarioChanges:
    """Which changes ``--watch`` reloads for: the files given, and the scenario files (.mock,
    .yaml, .yml) under the directories given, except what watchfiles leaves out by default
    (editors' swap, backup and lock files; .git and the like)."""

    def __init__(self, paths: Sequence[str]) -> None:
        from watchfiles import DefaultFilter

        self._default = DefaultFilter()
        # Compared as real paths: some systems report events under them (macOS's /private/var
        # for /var), and a path may be given through a symbolic link.
        real = [Path(os.path.realpath(path)) for path in paths]
        self._files = {path for path in real if not path.is_dir()}
        self._directories = [path for path in real if path.is_dir()]

    def __call__(self, change: Change, path: str) -> bool:
        if Path(path).suffix not in SCENARIO_SUFFIXES or not self._default(change, path):
            return False
        where = Path(os.path.realpath(path))
        return where in self._files or any(where.is_relative_to(d) for d in self._directories)


def _watched_folders(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """What to watch: the directories given (with what is under them), and the folders of the
    files given that are not under one (without their subfolders). A file is watched through
    its folder: editors save by writing another file and renaming it over the original,
    which ends a watch on the original itself."""
    absolute = [os.path.abspath(path) for path in paths]
    directories = sorted({path for path in absolute if os.path.isdir(path)})
    folders = {
        os.path.dirname(path)
        for path in absolute
        if not os.path.isdir(path)
        and not any(Path(path).is_relative_to(directory) for directory in directories)
    }
    return directories, sorted(folders)


def _shown(path: str) -> str:
    """A path as the log shows it: relative to the working directory when under it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative

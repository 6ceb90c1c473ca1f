"""``scenario-engine serve``: load scenarios, start the server, stop cleanly on a signal."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, TextIO

from ..errors import ScenarioErrors, UsageError
from .arguments import network, positive_float, positive_int
from .common import Commands

if TYPE_CHECKING:
    from ..runtime.admin import Network
    from ..runtime.server import ScenarioServer

__all__ = ["LOOPS", "add_parser", "run", "serve_files"]

#: The event loops ``--loop`` chooses from.
LOOPS = ("auto", "asyncio", "uvloop")


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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
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
        loop=args.loop,
        ui=args.ui,
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
    loop: str = "auto",
    ui: bool = False,
) -> int:
    """Serve until SIGINT or SIGTERM; 0 on a clean stop, 1 if the scenarios have errors.

    ``journal_file``: write every event there as a JSON line (``-``: standard output). With
    the admin API on (``admin``, open to ``admin_allow``, loopback by default), the journal's
    last ``journal_size`` events are also kept in memory, for it to read.

    ``ui``: serve the inspector's page and feed under the admin API (which it turns on).

    ``loop``: one of LOOPS; "auto" is uvloop when it is installed.

    Raises UsageError for bad options and for a route under the admin API's prefix.
    """
    # The server and its dependencies load here, not when the command line is parsed: the
    # other commands (check in an editor, say) start without them.
    from ..runtime.admin import LOOPBACK
    from ..runtime.compiler import load_program
    from ..runtime.journal import DEFAULT_LIMIT, Journal
    from ..runtime.server import OPEN_TIMEOUT, ScenarioServer

    admin = admin or ui
    if admin_allow is not None and not admin:
        raise UsageError("--admin-allow needs --admin (or --ui)")
    loop_factory, loop_name = _event_loop(loop)
    try:
        program = load_program(paths)
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
    context = None
    if certfile is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as err:
            raise UsageError(f"cannot load TLS certificate: {err}") from None
    elif keyfile is not None:
        raise UsageError("--keyfile needs --certfile")
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("scenario_engine.websockets").setLevel(logging.WARNING)
    with ExitStack() as stack:
        sink = _journal_sink(journal_file, stack)
        # Only the admin API reads the journal back: a journal only written keeps nothing.
        kept = DEFAULT_LIMIT if journal_size is None else journal_size
        journal = Journal(kept if admin else 0, sink) if admin or sink is not None else None
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
            inspector=ui,
        )
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(_run(server, loop_name))
        except OSError as err:
            print(
                f"scenario-engine: error: cannot listen on {host}:{port}: {err.strerror or err}",
                file=sys.stderr,
            )
            return 1
    return 0


def _journal_sink(name: str | None, stack: ExitStack) -> TextIO | None:
    if name is None or name == "-":
        return None if name is None else sys.stdout
    try:
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


async def _run(server: ScenarioServer, loop_name: str) -> None:
    from ..runtime.admin import ADMIN_PREFIX

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    _tune_process()
    urls = server.route_urls()
    for url in urls:
        print(f"serving {url}", flush=True)
    if server.admin is not None:
        scheme, rest = server.url(ADMIN_PREFIX).split("://", 1)
        base = f"{'https' if scheme == 'wss' else 'http'}://{rest}"
        print(f"admin API at {base}", flush=True)
        if server.inspector is not None:
            print(f"inspector at {base}/", flush=True)
    print(
        f"ready: {len(urls)} route{'' if len(urls) == 1 else 's'} on {server.host}:"
        f"{server.port}, {loop_name} loop (Ctrl+C to stop)",
        flush=True,
    )
    await stop.wait()
    print("shutting down: closing connections with 1001 (going away)", flush=True)
    await server.close()

"""``scenario-engine record``: a recording proxy in front of a WebSocket server, whose
conversations become a scenario when it stops; or a journal file made into one."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..language.loader import SCENARIO_SUFFIXES
from .arguments import header_line, ws_url
from .common import EXIT_INVALID, EXIT_OK, Commands, cannot_listen

if TYPE_CHECKING:
    from ..language.ir import Document
    from ..recording.proxy import RecordingProxy

__all__ = ["DEFAULT_PORT", "add_parser", "run"]

#: The port the proxy listens on by default: serve's, so clients written for the mock
#: reach the proxy unchanged.
DEFAULT_PORT = 8765
#: The options that only recording through the proxy takes, as ``--from-journal`` names them.
_PROXY_OPTIONS = {
    "host": "--host",
    "port": "--port",
    "header": "--header",
    "quiet": "--quiet",
    "journal": "--journal",
    "insecure": "--insecure",
}

_DESCRIPTION = """\
Record a real WebSocket server: clients connect to this proxy instead of the server (the same
paths, queries, subprotocols and headers reach it, and every message, ping and close passes
both ways); on Ctrl+C (or SIGTERM) the proxy stops, closes the clients with 1001, and writes
OUT, a scenario inferred from the conversations (.mock, or YAML for OUT.yaml): routes,
handlers, timers, auth, and a conversation test per connection. `scenario-engine test OUT`
then runs them against the scenario served, and `--target` against the real server.

With --from-journal, no proxy: the scenario is inferred from a journal file written by
`record --journal` or `serve --journal`."""

_EPILOG = """\
examples:
  scenario-engine record --target ws://127.0.0.1:9000 -o chat.mock
  scenario-engine record --target wss://staging.example.com --port 0 \\
      --header 'Authorization: Bearer TOKEN' --journal chat.jsonl -o chat.mock
  scenario-engine record --from-journal chat.jsonl -o chat.yaml

exit status: 0 OUT written; 1 nothing was recorded (OUT not written), or the proxy cannot
listen; 2 the command was used wrongly. docs/record.md has the details."""


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "record",
        help="record a real server through a proxy and write a scenario of it",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--target",
        type=ws_url,
        metavar="URL",
        help="the server to record (ws://host:port or wss://…; a path in it goes before "
        "each client's path)",
    )
    source.add_argument(
        "--from-journal",
        metavar="FILE",
        help="infer the scenario from this journal (JSON lines) instead of recording",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="the scenario to write: OUT.mock, or OUT.yaml for YAML",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="write the conversations as they came, without inferring handlers",
    )
    parser.add_argument(
        "--host", help="address the proxy listens on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument(
        "--port",
        type=int,
        help=f"port the proxy listens on (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument(
        "--header",
        action="append",
        type=header_line,
        metavar="'NAME: VALUE'",
        help="a header for every request to the server, replacing the client's of that "
        "name (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no line per connection and message")
    parser.add_argument(
        "--journal",
        metavar="FILE",
        help="also write every event as a JSON line to FILE as it happens (for "
        "--from-journal later)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="accept any certificate from a wss:// target (self-signed staging servers)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = _output(args.output)
    if args.from_journal is not None:
        # Identity, not equality: --port 0 is given, and 0 == False.
        given = [
            flag
            for key, flag in _PROXY_OPTIONS.items()
            if getattr(args, key) is not None and getattr(args, key) is not False
        ]
        if given:
            raise UsageError(f"{given[0]} is for recording through the proxy, not --from-journal")
        from ..recording import read_journal

        events = read_journal(Path(args.from_journal))
        return _write(events, out, args.raw, source=args.from_journal)
    return _record(args, out)


# ---- recording ---------------------------------------------------------------------------------


def _say(line: str) -> None:
    """A line of the proxy's traffic: on stdout, after the time."""
    now = time.time()
    clock = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    print(f"{clock} {line}", flush=True)


def _warn(line: str) -> None:
    """A problem the proxy met (it goes on): on stderr."""
    print(line, file=sys.stderr, flush=True)


def _record(args: argparse.Namespace, out: Path) -> int:
    from ..recording.proxy import HOP_BY_HOP, RecordingProxy
    from ..runtime.journal import Journal

    headers: list[tuple[str, str]] = args.header or []
    for name, _ in headers:
        if name.lower() in HOP_BY_HOP:
            raise UsageError(
                f"--header {name}: the proxy sets the connection's own headers itself; "
                "only end-to-end headers can be added"
            )
    tls = None
    if args.insecure and args.target.startswith("wss:"):
        from ..testing.runner import unverified_tls

        tls = unverified_tls()
    with ExitStack() as stack:
        journal_path, sink = _journal_file(args.journal, stack)
        proxy = RecordingProxy(
            args.target,
            Journal(0, sink),
            host=args.host or "127.0.0.1",
            port=DEFAULT_PORT if args.port is None else args.port,
            headers=headers,
            tls=tls,
            say=None if args.quiet else _say,
            warn=_warn,
        )
        try:
            asyncio.run(_proxy_until_stopped(proxy, out))
        except OSError as err:
            if args.journal is None:
                os.unlink(journal_path)
            return cannot_listen(proxy.host, proxy.port, err)
        sink.close()
        return _write_recording(journal_path, out, args.raw, kept=args.journal is not None)


def _journal_file(name: str | None, stack: ExitStack) -> tuple[Path, Any]:
    """The journal file events are written to as they come: ``--journal``'s, or a temporary
    one, which is read back to write OUT and then removed (so that the proxy keeps no events
    in memory, however long it records)."""
    if name is not None:
        try:
            return Path(name), stack.enter_context(open(name, "w", encoding="utf-8"))
        except OSError as err:
            raise UsageError(f"{name}: {err.strerror or err}") from None
    descriptor, temporary = tempfile.mkstemp(prefix="scenario-engine-record-", suffix=".jsonl")
    return Path(temporary), stack.enter_context(open(descriptor, "w", encoding="utf-8"))


async def _proxy_until_stopped(proxy: RecordingProxy, out: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await proxy.start()
    print(f"recording {proxy.target} through {proxy.url}", flush=True)
    print(
        f"ready: proxy on {proxy.host}:{proxy.port} (Ctrl+C to stop and write {out})",
        flush=True,
    )
    await stop.wait()
    print("stopping: closing connections with 1001 (going away)", flush=True)
    await proxy.close()


def _write_recording(journal: Path, out: Path, raw: bool, kept: bool) -> int:
    """Write OUT from the journal file; the temporary one (not ``kept``) is removed once OUT
    is written, and kept, named on the console, when writing fails."""
    from ..recording import read_journal

    try:
        status = _write(read_journal(journal), out, raw, source=None)
    except BaseException:
        if not kept:
            print(
                f"the recording is kept in {journal}: once the problem is solved, "
                f"scenario-engine record --from-journal {journal} -o {out}",
                file=sys.stderr,
            )
        raise
    if not kept:
        os.unlink(journal)
    return status


# ---- writing the scenario ----------------------------------------------------------------------


def _write(events: list[dict[str, Any]], out: Path, raw: bool, source: str | None) -> int:
    """Infer (or, ``raw``, transcribe) the scenario of ``events`` and write it to ``out``."""
    from ..recording import infer_scenario, raw_scenario, render_scenario

    connections = sum(1 for event in events if event.get("event") == "connect")
    refusals = sum(1 for event in events if event.get("event") == "reject")
    if not connections and not refusals:
        where = f"{source} has no connect or reject event" if source else "no client connected"
        print(f"nothing recorded: {where}; {out} not written", file=sys.stderr)
        return EXIT_INVALID
    make = raw_scenario if raw else infer_scenario
    hints: list[str] = []
    document = make(events, name=out.stem, hints=hints)
    text = render_scenario(document, out, comments=[_provenance(events), *hints])
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"{out}: {err.strerror or err}") from None
    messages = sum(1 for event in events if event.get("event") in ("in", "out"))
    print(
        f"wrote {out}: {_contents(document)} (from {_count(connections, 'connection')}, "
        f"{_count(refusals, 'refusal')}, {_count(messages, 'message')})",
        flush=True,
    )
    for hint in hints:
        print(f"note: {hint}", flush=True)
    return EXIT_OK


def _provenance(events: list[dict[str, Any]]) -> str:
    """The scenario's first comment: when it was recorded. Taken from the events, so that
    ``--from-journal`` of a ``--journal`` file writes what the recording itself wrote."""
    stamp = str(events[0].get("time", "")) if events else ""
    when = f" on {stamp[:10]} at {stamp[11:16]} UTC" if len(stamp) >= 16 else ""
    return f"recorded by scenario-engine record{when}"


def _contents(document: Document) -> str:
    routes = document.get("routes", [])
    handlers = 0
    for route in routes:
        on = route.get("on", {})
        handlers += len(on.get("message", []))
        handlers += sum(1 for kind in ("connect", "close", "error") if kind in on)
    tests = len(document.get("tests", []))
    return ", ".join(
        [_count(len(routes), "route"), _count(handlers, "handler"), _count(tests, "test")]
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _output(name: str) -> Path:
    """OUT, checked before anything is recorded: a scenario file's name in a folder that
    exists."""
    out = Path(name)
    if out.suffix not in SCENARIO_SUFFIXES:
        raise UsageError(
            f"-o {name}: a scenario file ends in {', '.join(sorted(SCENARIO_SUFFIXES))}"
        )
    if not out.parent.is_dir():
        raise UsageError(f"-o {name}: no folder {out.parent}")
    return out

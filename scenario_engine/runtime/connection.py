"""One client as the engine sees it: the request it came with, its route, what ``auth``
accepted, the rooms it is in, its ``session``, its timers, and the names its events start from.

The socket it talks over is the connection layer's business, kept there (the engine holds no
I/O object); expressions see a client through ``ConnectionView``, as ``conn``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..expr.values import Context
from .program import Route, TimerSpec
from .state import JsonObject

__all__ = ["CONN_FIELDS", "Connection", "ConnectionView", "Request", "Timer", "new_connection_id"]


@dataclass(frozen=True, slots=True)
class Request:
    """What the opening handshake told us about the client."""

    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    ip: str | None = None
    #: The subprotocol the handshake selected (None: none).
    subprotocol: str | None = None


class Connection:
    """One client's state in the engine. ``view`` is what expressions see as ``conn``."""

    __slots__ = (
        "auth",
        "base",
        "closing",
        "deferred",
        "id",
        "params",
        "request",
        "rooms",
        "route",
        "scratch",
        "session",
        "timers",
        "view",
        "waits",
    )

    def __init__(
        self,
        route: Route,
        request: Request,
        params: dict[str, str],
        auth: Any,
        conn_id: str,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.id = conn_id
        self.route = route
        self.request = request
        self.params = params
        self.auth = auth
        self.rooms: set[str] = set()
        self.session = JsonObject("session", route.max_session)
        #: Its every and after timers by name (unnamed ones get a name of their own).
        self.timers: dict[str, Timer] = {}
        #: Its handlers suspended in a wait.
        self.waits: set[Timer] = set()
        #: A close (or drop) is under way: its events and timers do nothing more.
        self.closing = False
        #: Its events held until this process holds the shared state (a backplane): its next
        #: events wait behind them, so that they run in the order they came.
        self.deferred = 0
        self.view = ConnectionView(conn_id, request, params, self.rooms)
        # The names every event of this connection starts from, built once.
        self.base: Context = {
            **route.constants,
            "conn": self.view,
            "auth": auth,
            "query": request.query,
            "headers": request.headers,
            "params": params,
            "session": self.session.data,
            "state": {} if state is None else state,
        }
        # The names of one message event, reused from message to message: events of a
        # connection run one at a time, and a let is always assigned before it is read.
        self.scratch: Context = dict(self.base)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.request.path}>"


class ConnectionView(Mapping[str, Any]):
    """``conn`` in expressions: read-only, and only these keys (never Python attributes).

    It holds the parts of the connection it shows, not the connection: a connection refers to
    its view, and a view referring back would make every connection a reference cycle, freed
    only when the cyclic collector runs instead of when the connection ends.
    """

    __slots__ = ("id", "params", "request", "rooms")

    def __init__(
        self, conn_id: str, request: Request, params: dict[str, str], rooms: set[str]
    ) -> None:
        self.id = conn_id
        self.request = request
        self.params = params
        self.rooms = rooms

    def __getitem__(self, key: str) -> Any:
        return CONN_FIELDS[key](self)

    def get(self, key: str, default: Any = None) -> Any:
        field = CONN_FIELDS.get(key)
        return default if field is None else field(self)

    def __iter__(self) -> Iterator[str]:
        return iter(CONN_FIELDS)

    def __len__(self) -> int:
        return len(CONN_FIELDS)


CONN_FIELDS: dict[str, Callable[[ConnectionView], Any]] = {
    "id": lambda c: c.id,
    "rooms": lambda c: sorted(c.rooms),
    "ip": lambda c: c.request.ip,
    "path": lambda c: c.request.path,
    "query": lambda c: c.request.query,
    "headers": lambda c: c.request.headers,
    "params": lambda c: c.params,
    "subprotocol": lambda c: c.request.subprotocol,
}


def new_connection_id() -> str:
    """12 random hex digits."""
    return next(_per_thread.ids)


def _random_ids() -> Iterator[str]:
    # The bytes come from the OS in blocks: one system call per 512 connections instead of
    # one each, which an accept storm notices.
    while True:
        block = os.urandom(6 * 512)
        for start in range(0, len(block), 6):
            yield block[start : start + 6].hex()


class _PerThread(threading.local):
    """A generator per thread: servers run in threads of their own (runtime/background), and
    a generator cannot be resumed by two threads at once."""

    def __init__(self) -> None:
        self.ids = _random_ids()


_per_thread = _PerThread()


class Timer:
    """A timer the engine asked the connection layer to run: an ``every`` or ``after`` of a
    connection, a route's own timer (``conn`` None), or a handler suspended in a ``wait``
    (``rest`` is the rest of it, run when the timer fires).

    ``delay`` is when it first fires (seconds from its start), ``interval`` how often after
    that (None: once). ``ctx`` holds the names its runs start from, as they were when it
    started. ``running`` is set while a run is suspended in a wait (a tick that comes then is
    skipped: runs never overlap); ``owner`` is the timer whose run a wait belongs to.
    """

    __slots__ = (
        "alive",
        "conn",
        "count",
        "ctx",
        "delay",
        "interval",
        "name",
        "owner",
        "rest",
        "route",
        "runner",
        "running",
        "spec",
        "state",
    )

    def __init__(
        self,
        route: Route,
        conn: Connection | None,
        name: str,
        ctx: Context,
        delay: float,
        interval: float | None,
        spec: TimerSpec | None = None,
    ) -> None:
        self.route = route
        self.conn = conn
        self.name = name
        self.ctx = ctx
        self.delay = delay
        self.interval = interval
        self.spec = spec
        self.count = 0
        self.alive = True
        self.running = False
        self.owner: Timer | None = None
        self.rest: Iterator[float] | None = None
        self.runner: Any = None  # the engine's runtime of the suspended event
        #: A suspended handler's rest reads or writes ``state`` (a timer's own runs say it in
        #: ``spec.block.state``).
        self.state = False

    def __repr__(self) -> str:
        where = self.conn.id if self.conn is not None else self.route.path
        return f"<Timer {self.name} of {where}>"

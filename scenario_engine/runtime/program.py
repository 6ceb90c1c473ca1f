"""The compiled form of a scenario: routes with their handlers as closures, ready to run.

The compiler (``compiler``) builds it once at load; the engine runs it. A compiled action is a
``Step``: called with the ``Runtime`` (the engine's side of the event being handled: the
connection, and the effects so far) and the names an expression can read. A step returns None,
or, when it waits (``wait``, or an ``if`` whose branch waits), an iterator of the delays to wait
(seconds) before the rest of it runs: the handler is suspended there and resumed later.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote as url_unquote

from ..errors import ScenarioError
from ..expr.values import Context, Evaluator

__all__ = [
    "DEFAULT_MAX_ROOMS",
    "DEFAULT_MAX_SESSION",
    "DEFAULT_MAX_TIMERS",
    "DEFAULT_THRESHOLD",
    "AuthStep",
    "Block",
    "Compression",
    "Delay",
    "FileVersion",
    "MessageHandler",
    "Program",
    "Route",
    "Runtime",
    "Step",
    "TimerSpec",
]

DEFAULT_THRESHOLD = 1024  # bytes: as Node's ws (and the reference's example)
#: Rooms one connection may be in at once, unless the route says otherwise (``max rooms``).
DEFAULT_MAX_ROOMS = 10_000
#: Timers (and waits in progress) one connection may have at once (``max timers``).
DEFAULT_MAX_TIMERS = 100
#: Characters of JSON one connection's ``session`` may take (``max session``).
DEFAULT_MAX_SESSION = 64 * 1024


class Runtime(Protocol):
    """What a compiled action can do during one event. Values come evaluated; each method
    raises EvaluationError when it cannot do what it is asked (a close reason too long, a room
    name that is not a string, one timer too many), which the action reports at its line."""

    def send(self, data: str | bytes) -> None: ...
    def broadcast(self, data: str | bytes, rooms: list[Any] | None, include_self: bool) -> None: ...
    def join(self, room: Any) -> None: ...
    def leave(self, room: Any) -> None: ...
    def close(self, code: int, reason: Any) -> None: ...
    def drop(self) -> None: ...
    def ping(self, data: str | bytes) -> None: ...
    def pong(self, data: str | bytes) -> None: ...
    def log(self, message: Any, location: str) -> None: ...
    def start_timer(
        self, spec: TimerSpec, name: str | None, delay: float, ctx: Context
    ) -> None: ...
    def cancel_timer(self, name: str) -> None: ...
    def wait(self, seconds: float) -> Iterator[float]: ...
    def write(self, root: str, keys: list[Any], value: Any) -> None: ...
    def remove(self, root: str, keys: list[Any]) -> None: ...


#: A compiled action: called with the runtime (the engine's side of one event) and the names;
#: None, or the delays it waits (see the module's docstring).
Step = Callable[[Runtime, Context], Iterator[float] | None]
#: A compiled duration: the seconds it stands for, from the names where it starts.
Delay = Callable[[Context], float]


@dataclass(slots=True)
class Block:
    """Actions run in order. ``waits``: a ``wait`` is among them (or in an ``if`` among them;
    timers' blocks are runs of their own), so running them may suspend. ``binds``: a ``let``
    is among them (or in an ``if``), so running them may change the names of their context.
    ``state``: one of them reads or writes ``state`` (a timer's block aside): with a state
    shared by several processes, a run must hold it (runtime/shared_state.py)."""

    steps: list[Step]
    waits: bool = False
    binds: bool = True
    state: bool = False


@dataclass(slots=True)
class TimerSpec:
    """A timer as written: ``every`` (repeating, ``times`` at most) or ``after`` (once), its
    name and interval as compiled, and the block each run performs."""

    repeat: bool
    block: Block
    location: str
    interval: Delay
    times: int | None = None
    name: Evaluator | None = None


@dataclass(frozen=True, slots=True)
class Compression:
    enabled: bool = True
    threshold: int = DEFAULT_THRESHOLD


@dataclass(slots=True)
class MessageHandler:
    type: str | None
    where: Evaluator | None
    binary: bool
    block: Block
    location: str
    #: Its guard or its block reads or writes ``state``.
    state: bool = False


@dataclass(slots=True)
class AuthStep:
    kind: str  # "reject", "accept", "let" or "wait"
    location: str
    condition: Evaluator | None = None
    negate: bool = False  # reject ... unless
    code: int | None = None
    status: int | None = None
    value: Evaluator | None = None  # reason, accepted value, or let value
    name: str | None = None
    delay: Delay | None = None  # wait


@dataclass(slots=True)
class Route:
    index: int
    path: str
    location: str
    param_names: tuple[str, ...]
    matcher: re.Pattern[str] | None
    #: The scenario file it was written in: the scope of its ``state``.
    file: str = ""
    heartbeat: float | None = None
    compression: Compression = field(default_factory=Compression)
    max_message: int | None = None
    max_connections: int | None = None
    max_rooms: int = DEFAULT_MAX_ROOMS
    max_timers: int = DEFAULT_MAX_TIMERS
    max_session: int = DEFAULT_MAX_SESSION
    origins: frozenset[str] | None = None
    subprotocols: tuple[str, ...] = ()
    subprotocol_required: bool = False
    #: Every message sent is delayed by a random time in [low, high] seconds (None: none).
    latency: tuple[float, float] | None = None
    auth: list[AuthStep] | None = None
    auth_waits: bool = False
    on_connect: Block = field(default_factory=lambda: Block([]))
    on_close: Block = field(default_factory=lambda: Block([]))
    on_error: Block | None = None
    handlers: list[MessageHandler] = field(default_factory=list)
    by_type: dict[str, list[MessageHandler]] = field(default_factory=dict)
    untyped: list[MessageHandler] = field(default_factory=list)
    binary: list[MessageHandler] = field(default_factory=list)
    #: The route's own timers, running from start-up.
    timers: list[TimerSpec] = field(default_factory=list)
    #: The timers its handlers start (``every`` and ``after`` actions), in the order they were
    #: compiled: a reload pairs them with those of the equal route that takes its place.
    action_timers: list[TimerSpec] = field(default_factory=list)
    constants: Context = field(default_factory=dict)  # the top-level lets of its file
    #: A digest of all its behaviour is compiled from, positions aside (runtime/reload.py):
    #: two routes with equal definitions behave alike.
    definition: bytes = b""

    def candidates(self, message: Any, is_binary: bool) -> list[MessageHandler]:
        """The handlers that may take this message, in the order they were written."""
        if is_binary:
            return self.binary
        if isinstance(message, dict):
            kind = message.get("type")
            if isinstance(kind, str):
                return self.by_type.get(kind, self.untyped)
        return self.untyped


@dataclass(frozen=True, slots=True)
class FileVersion:
    """One scenario file as compiled: what a reload compares beyond its routes."""

    #: Its top-level lets as written (their IR as JSON), and their values.
    lets: str
    constants: Context
    #: What its initial ``state`` is made from, as JSON: the state block, with the lets when
    #: it reads them ("" without a state block).
    state: str


@dataclass
class Program:
    routes: list[Route]
    constants: Context
    #: Each scenario file's initial ``state`` (file name → value).
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the checks noted that does not make a file invalid (``serve`` prints them).
    warnings: list[ScenarioError] = field(default_factory=list)
    #: Each file compiled, by name.
    files: dict[str, FileVersion] = field(default_factory=dict)
    _exact: dict[str, Route] = field(default_factory=dict)
    _patterns: list[Route] = field(default_factory=list)

    def __post_init__(self) -> None:
        for route in self.routes:
            if route.matcher is None:
                self._exact[route.path] = route
            else:
                self._patterns.append(route)

    def resolve(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route serving ``path`` (query string excluded) and its parameters."""
        if len(path) > 1:
            path = path.rstrip("/")
        route = self._exact.get(path)
        if route is not None:
            return route, {}
        for route in self._patterns:
            assert route.matcher is not None
            match = route.matcher.fullmatch(path)
            if match:
                return route, {k: url_unquote(v) for k, v in match.groupdict().items()}
        return None

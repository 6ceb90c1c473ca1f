"""The compiled form of a scenario: routes with their handlers as closures, ready to run.

The compiler (``compiler``) builds it once at load; the engine runs it. A compiled action is a
``Step``: called with the ``Runtime`` (the engine's side of the event being handled: the
connection, and the effects so far) and the names an expression can read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote as url_unquote

from ..expr.values import Context, Evaluator

__all__ = [
    "DEFAULT_THRESHOLD",
    "AuthStep",
    "Compression",
    "MessageHandler",
    "Program",
    "Route",
    "Runtime",
    "Step",
]

DEFAULT_THRESHOLD = 1024  # bytes: as Node's ws (and the reference's example)


class Runtime(Protocol):
    """What a compiled action can do during one event. Values come evaluated; each method
    raises EvaluationError when it cannot do what it is asked (a close reason too long, a room
    name that is not a string), which the action reports at its line."""

    def send(self, data: str | bytes) -> None: ...
    def broadcast(self, data: str | bytes, rooms: list[Any] | None, include_self: bool) -> None: ...
    def join(self, room: Any) -> None: ...
    def leave(self, room: Any) -> None: ...
    def close(self, code: int, reason: Any) -> None: ...
    def ping(self, data: str | bytes) -> None: ...
    def pong(self, data: str | bytes) -> None: ...
    def log(self, message: Any, location: str) -> None: ...


#: A compiled action: called with the runtime (the engine's side of one event) and the names.
Step = Callable[[Runtime, Context], None]


@dataclass(frozen=True, slots=True)
class Compression:
    enabled: bool = True
    threshold: int = DEFAULT_THRESHOLD


@dataclass(slots=True)
class MessageHandler:
    type: str | None
    where: Evaluator | None
    binary: bool
    steps: list[Step]
    location: str


@dataclass(slots=True)
class AuthStep:
    kind: str  # "reject", "accept" or "let"
    location: str
    condition: Evaluator | None = None
    negate: bool = False  # reject ... unless
    code: int | None = None
    status: int | None = None
    value: Evaluator | None = None  # reason, accepted value, or let value
    name: str | None = None


@dataclass(slots=True)
class Route:
    index: int
    path: str
    location: str
    param_names: tuple[str, ...]
    matcher: re.Pattern[str] | None
    heartbeat: float | None = None
    compression: Compression = field(default_factory=Compression)
    max_message: int | None = None
    max_connections: int | None = None
    origins: frozenset[str] | None = None
    auth: list[AuthStep] | None = None
    on_connect: list[Step] = field(default_factory=list)
    on_close: list[Step] = field(default_factory=list)
    on_error: list[Step] | None = None
    handlers: list[MessageHandler] = field(default_factory=list)
    by_type: dict[str, list[MessageHandler]] = field(default_factory=dict)
    untyped: list[MessageHandler] = field(default_factory=list)
    binary: list[MessageHandler] = field(default_factory=list)
    constants: Context = field(default_factory=dict)  # the top-level lets of its file

    def candidates(self, message: Any, is_binary: bool) -> list[MessageHandler]:
        """The handlers that may take this message, in the order they were written."""
        if is_binary:
            return self.binary
        if isinstance(message, dict):
            kind = message.get("type")
            if isinstance(kind, str):
                return self.by_type.get(kind, self.untyped)
        return self.untyped


@dataclass
class Program:
    routes: list[Route]
    constants: Context
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

"""What the engine asks the connection layer to do: the effects of an event, and the verdict
of an opening handshake.

With a backplane (several processes serving one mock), two more: ``Publish`` asks for a
broadcast to reach the members on the other processes too, and ``Deferred`` holds an event
that reads or writes the shared ``state`` until the connection layer holds it (its ``run``
then gives the event's effects).

Timers are effects too: the engine says which timer to start (``StartTimer``: call back
``Engine.fire`` after ``timer.delay`` seconds, then every ``timer.interval`` while it is alive)
and which to stop; the connection layer owns the clock. So the engine stays free of I/O and its
tests drive time by hand.

Plain, not frozen, dataclasses: one is made per message sent, and frozen ones cost twice.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from .connection import Connection, Timer

__all__ = [
    "Accepted",
    "AuthWait",
    "Broadcast",
    "Close",
    "Deferred",
    "Drop",
    "Effect",
    "Log",
    "Ping",
    "Pong",
    "Publish",
    "Rejected",
    "Send",
    "StartTimer",
    "StopTimer",
    "Unmatched",
    "Verdict",
]


@dataclass(slots=True)
class Send:
    conn: Connection
    data: str | bytes


@dataclass(slots=True)
class Broadcast:
    data: str | bytes
    targets: list[Connection]


@dataclass(slots=True)
class Publish:
    """A broadcast for the other processes' members too: those of ``rooms`` (None: every
    connection) of the route at ``route`` (its path). This process's own are in a
    ``Broadcast`` beside it."""

    data: str | bytes
    route: str
    rooms: list[str] | None


@dataclass(slots=True)
class Deferred:
    """An event that reads or writes the ``state`` of the file ``scope``, shared with other
    processes: call ``run`` (which gives the event's effects) once this process holds that
    state, fresh. ``conn``: the connection whose event it is (None: a route's timer); its
    later events wait behind it."""

    scope: str
    conn: Connection | None
    run: Callable[[], list[Effect]]


@dataclass(slots=True)
class Close:
    conn: Connection
    code: int
    reason: str


@dataclass(slots=True)
class Drop:
    """Cut the connection without a closing handshake."""

    conn: Connection


@dataclass(slots=True)
class Ping:
    conn: Connection
    data: bytes


@dataclass(slots=True)
class Pong:
    conn: Connection
    data: bytes


@dataclass(slots=True)
class Log:
    conn: Connection | None
    message: str
    location: str
    error: bool = False


@dataclass(slots=True)
class Unmatched:
    """A message that no handler took."""

    conn: Connection
    data: str | bytes


@dataclass(slots=True)
class StartTimer:
    """Call ``Engine.fire(timer)`` in ``timer.delay`` seconds (again if already started)."""

    timer: Timer


@dataclass(slots=True)
class StopTimer:
    """Forget the timer: it will not be fired again."""

    timer: Timer


Effect = (
    Send
    | Broadcast
    | Publish
    | Deferred
    | Close
    | Drop
    | Ping
    | Pong
    | Log
    | Unmatched
    | StartTimer
    | StopTimer
)


@dataclass(frozen=True, slots=True)
class Accepted:
    auth: Any


@dataclass(frozen=True, slots=True)
class Rejected:
    """Refuse the connection: with a close ``code`` after the handshake, or an HTTP ``status``."""

    reason: str
    code: int | None = None
    status: int | None = None


@dataclass(frozen=True, slots=True)
class AuthWait:
    """The auth block waits (``wait``): ask again with ``Engine.continue_auth`` in ``delay``
    seconds."""

    delay: float
    rest: Generator[float, None, tuple[Accepted | Rejected, list[Effect]]]


#: Where an opening handshake stands after the auth block ran (as far as it could).
Verdict = Accepted | Rejected | AuthWait

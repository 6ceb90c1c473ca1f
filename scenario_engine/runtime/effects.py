"""What the engine asks the connection layer to do: the effects of an event, and the verdict
of an opening handshake.

Plain, not frozen, dataclasses: one is made per message sent, and frozen ones cost twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .connection import Connection

__all__ = ["Accepted", "Broadcast", "Close", "Effect", "Log", "Ping", "Pong", "Rejected", "Send"]


@dataclass(slots=True)
class Send:
    conn: Connection
    data: str | bytes


@dataclass(slots=True)
class Broadcast:
    data: str | bytes
    targets: list[Connection]


@dataclass(slots=True)
class Close:
    conn: Connection
    code: int
    reason: str


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


Effect = Send | Broadcast | Close | Ping | Pong | Log


@dataclass(frozen=True, slots=True)
class Accepted:
    auth: Any


@dataclass(frozen=True, slots=True)
class Rejected:
    """Refuse the connection: with a close ``code`` after the handshake, or an HTTP ``status``."""

    reason: str
    code: int | None = None
    status: int | None = None

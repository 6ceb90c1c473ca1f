"""Room membership, behind one small interface.

The engine keeps which connections are in which room of which route through ``Rooms``; a store
that spans processes (a broker-backed one) implements the same interface without touching the
language, the compiler or the engine.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from .connection import Connection

__all__ = ["MemoryRooms", "Rooms"]


class Rooms(Protocol):
    """Which connections are in which room, per route (``route`` is the route's index)."""

    def join(self, route: int, room: str, conn: Connection) -> None: ...
    def leave(self, route: int, room: str, conn: Connection) -> None: ...
    def members(self, route: int, room: str) -> Collection[Connection]: ...
    def names(self, route: int) -> Collection[str]:
        """The rooms of ``route`` that have members."""
        ...


_EMPTY: frozenset[Connection] = frozenset()


class MemoryRooms:
    """Rooms in this process's memory; an empty room is forgotten."""

    def __init__(self) -> None:
        self._rooms: dict[tuple[int, str], set[Connection]] = {}

    def join(self, route: int, room: str, conn: Connection) -> None:
        self._rooms.setdefault((route, room), set()).add(conn)

    def leave(self, route: int, room: str, conn: Connection) -> None:
        key = (route, room)
        members = self._rooms.get(key)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._rooms[key]

    def members(self, route: int, room: str) -> Collection[Connection]:
        return self._rooms.get((route, room), _EMPTY)

    def names(self, route: int) -> Collection[str]:
        return [room for (index, room) in self._rooms if index == route]

    def __len__(self) -> int:
        return len(self._rooms)

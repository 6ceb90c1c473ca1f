"""One client as the engine sees it: the request it came with, its route, what ``auth``
accepted, the rooms it is in, and the names its events start from.

The socket it talks over is the connection layer's business, kept there (the engine holds no
I/O object); expressions see a client through ``ConnectionView``, as ``conn``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..expr.values import Context
from .program import Route

__all__ = ["CONN_FIELDS", "Connection", "ConnectionView", "Request", "new_connection_id"]


@dataclass(frozen=True, slots=True)
class Request:
    """What the opening handshake told us about the client."""

    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    ip: str | None = None


class Connection:
    """One client's state in the engine. ``view`` is what expressions see as ``conn``."""

    __slots__ = ("auth", "base", "id", "params", "request", "rooms", "route", "scratch", "view")

    def __init__(
        self, route: Route, request: Request, params: dict[str, str], auth: Any, conn_id: str
    ) -> None:
        self.id = conn_id
        self.route = route
        self.request = request
        self.params = params
        self.auth = auth
        self.rooms: set[str] = set()
        self.view = ConnectionView(self)
        # The names every event of this connection starts from, built once.
        self.base: Context = {
            **route.constants,
            "conn": self.view,
            "auth": auth,
            "query": request.query,
            "headers": request.headers,
            "params": params,
        }
        # The names of one message event, reused from message to message: events of a
        # connection run one at a time, and a let is always assigned before it is read.
        self.scratch: Context = dict(self.base)

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.request.path}>"


CONN_FIELDS: dict[str, Callable[[Connection], Any]] = {
    "id": lambda c: c.id,
    "rooms": lambda c: sorted(c.rooms),
    "ip": lambda c: c.request.ip,
    "path": lambda c: c.request.path,
    "query": lambda c: c.request.query,
    "headers": lambda c: c.request.headers,
    "params": lambda c: c.params,
}


class ConnectionView(Mapping[str, Any]):
    """``conn`` in expressions: read-only, and only these keys (never Python attributes)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __getitem__(self, key: str) -> Any:
        return CONN_FIELDS[key](self._conn)

    def get(self, key: str, default: Any = None) -> Any:
        field = CONN_FIELDS.get(key)
        return default if field is None else field(self._conn)

    def __iter__(self) -> Iterator[str]:
        return iter(CONN_FIELDS)

    def __len__(self) -> int:
        return len(CONN_FIELDS)


def new_connection_id() -> str:
    return uuid.uuid4().hex[:12]

"""The engine: events in, effects out, no I/O.

The connection layer turns bytes into events (a connection opens, a message arrives, a
connection closes) and calls the engine; the engine runs the scenario's compiled handlers and
returns the effects to carry out (frames to send, broadcasts, closes, log lines). Room
membership is kept behind the ``Rooms`` interface, given to the engine, so that a store shared
by several processes can replace the in-memory one without touching the language or the
compiler.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from typing import Any

from ..errors import ActionError, EvaluationError
from ..expr.values import Context, check_size, to_text, truthy, type_name
from ..language.limits import MAX_CLOSE_REASON_BYTES, MAX_CONTROL_PAYLOAD
from .connection import Connection, Request, new_connection_id
from .effects import Accepted, Broadcast, Close, Effect, Log, Ping, Pong, Rejected, Send
from .program import Program, Route, Step
from .rooms import MemoryRooms, Rooms

__all__ = ["CLOSE_INTERNAL_ERROR", "CLOSE_UNSUPPORTED_DATA", "Engine", "check_close_reason"]

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INTERNAL_ERROR = 1011


class _Runtime:
    """What compiled actions act on during one event: the connection, and the effects so far."""

    __slots__ = ("conn", "effects", "engine")

    def __init__(self, engine: Engine, conn: Connection) -> None:
        self.engine = engine
        self.conn = conn
        self.effects: list[Effect] = []

    def send(self, data: str | bytes) -> None:
        self.effects.append(Send(self.conn, data))

    def broadcast(self, data: str | bytes, rooms: list[Any] | None, include_self: bool) -> None:
        engine, conn = self.engine, self.conn
        members: Collection[Connection]
        if rooms is None:
            members = engine.connections[conn.route.index]
        else:
            names = list(_room_names(rooms))
            route = conn.route.index
            if len(names) == 1:
                members = engine.rooms.members(route, names[0])
            else:
                members = set().union(*(engine.rooms.members(route, name) for name in names))
        if include_self or conn not in members:
            targets = list(members)
        else:
            targets = [c for c in members if c is not conn]
        if targets:
            self.effects.append(Broadcast(data, targets))

    def join(self, room: Any) -> None:
        for name in _room_names([room]):
            self.conn.rooms.add(name)
            self.engine.rooms.join(self.conn.route.index, name, self.conn)

    def leave(self, room: Any) -> None:
        for name in _room_names([room]):
            self.conn.rooms.discard(name)
            self.engine.rooms.leave(self.conn.route.index, name, self.conn)

    def close(self, code: int, reason: Any) -> None:
        text = to_text(reason)
        check_close_reason(text)
        self.effects.append(Close(self.conn, code, text))

    def ping(self, data: str | bytes) -> None:
        self.effects.append(Ping(self.conn, _control_payload("ping", data)))

    def pong(self, data: str | bytes) -> None:
        self.effects.append(Pong(self.conn, _control_payload("pong", data)))

    def log(self, message: Any, location: str) -> None:
        self.effects.append(Log(self.conn, to_text(message), location))


def check_close_reason(reason: str) -> None:
    """Raise EvaluationError for a close reason longer than a close frame can carry."""
    size = len(reason.encode())
    if size > MAX_CLOSE_REASON_BYTES:
        raise EvaluationError(
            f"close reason is {size} bytes; the protocol allows {MAX_CLOSE_REASON_BYTES}"
        )


def _control_payload(kind: str, data: str | bytes) -> bytes:
    """The payload of a ping or pong, refused (EvaluationError) when a frame cannot carry it."""
    payload = data.encode() if isinstance(data, str) else data
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise EvaluationError(
            f"{kind} data is {len(payload)} bytes; the protocol allows {MAX_CONTROL_PAYLOAD}"
        )
    return payload


def _room_names(rooms: list[Any]) -> Iterator[str]:
    """Room names from evaluated ``to``/``join`` values: strings, numbers, or lists of them."""
    for room in rooms:
        for name in room if isinstance(room, list) else (room,):
            if isinstance(name, str):
                yield name
            elif isinstance(name, int | float) and not isinstance(name, bool):
                yield to_text(name)
            else:
                raise EvaluationError(f"a room name must be a string, not {type_name(name)}")


class Engine:
    """Runs a Program: one instance serves every connection of every route.

    ``rooms``: where room membership is kept (in this process's memory unless given).
    """

    def __init__(self, program: Program, rooms: Rooms | None = None) -> None:
        self.program = program
        self.connections: list[set[Connection]] = [set() for _ in program.routes]
        self.rooms: Rooms = MemoryRooms() if rooms is None else rooms

    # ---- handshake -------------------------------------------------------------------------
    def resolve(self, path: str) -> tuple[Route, dict[str, str]] | None:
        return self.program.resolve(path)

    def authenticate(
        self, route: Route, request: Request, params: dict[str, str], conn_id: str
    ) -> tuple[Accepted | Rejected, list[Effect]]:
        """Run the route's auth block. An error inside it rejects with HTTP 500."""
        if route.auth is None:
            return Accepted({}), []
        probe = Connection(route, request, params, None, conn_id)
        ctx = dict(probe.base)
        del ctx["auth"]
        for step in route.auth:
            try:
                if step.kind == "let":
                    assert step.value is not None and step.name is not None
                    ctx[step.name] = step.value(ctx)
                elif step.kind == "accept":
                    assert step.value is not None
                    accepted = step.value(ctx)
                    check_size(accepted)  # once: handlers then use it unmeasured
                    return Accepted(accepted), []
                else:
                    hit = True if step.condition is None else truthy(step.condition(ctx))
                    if step.negate:
                        hit = not hit
                    if hit:
                        assert step.value is not None
                        reason = to_text(step.value(ctx))
                        if step.code is not None:  # sent in a close frame, not an HTTP body
                            check_close_reason(reason)
                        return Rejected(reason, step.code, step.status), []
            except EvaluationError as err:
                log = Log(None, f"auth failed: {err}", step.location, error=True)
                return Rejected("Internal Server Error", status=500), [log]
        return Accepted({}), []

    # ---- connection events -----------------------------------------------------------------
    def open(
        self,
        route: Route,
        request: Request,
        params: dict[str, str],
        auth: Any,
        conn_id: str | None = None,
    ) -> Connection:
        conn = Connection(route, request, params, auth, conn_id or new_connection_id())
        self.connections[route.index].add(conn)
        return conn

    def connect(self, conn: Connection) -> list[Effect]:
        return self._run(conn, conn.route.on_connect, dict(conn.base))

    def message(self, conn: Connection, data: str | bytes) -> list[Effect]:
        route = conn.route
        is_binary = isinstance(data, bytes)
        value: Any = data
        if isinstance(data, str):
            try:
                value = _decode_json(data)
            except (ValueError, RecursionError):  # not JSON, or nested too deep to be data
                value = data
        candidates = route.candidates(value, is_binary)
        if is_binary and not candidates:
            return [Close(conn, CLOSE_UNSUPPORTED_DATA, "Unsupported data")]
        ctx = conn.scratch
        ctx["msg"] = value
        ctx["raw"] = data
        effects: list[Effect] = []
        for handler in candidates:
            if handler.where is not None:
                try:
                    if not truthy(handler.where(ctx)):
                        continue
                except EvaluationError as err:
                    effects = self._fail(conn, ActionError(str(err), handler.location), ctx)
                    break
            effects = self._run(conn, handler.steps, ctx)
            break
        # The message itself is not kept past its event; a let built from it is, until a later
        # event of this connection assigns that let again or the connection closes.
        ctx["msg"] = ctx["raw"] = None
        return effects

    def close(self, conn: Connection, code: int | None, reason: str) -> list[Effect]:
        """The connection is gone: run ``on close``, then forget it and its rooms."""
        ctx = dict(conn.base)
        ctx["code"] = code
        ctx["reason"] = reason
        runtime = _Runtime(self, conn)
        try:
            for step in conn.route.on_close:
                step(runtime, ctx)
        except ActionError as err:
            runtime.effects.append(
                Log(conn, f"on close failed: {err.message}", err.location, error=True)
            )
        self.connections[conn.route.index].discard(conn)
        self.leave_rooms(conn)
        # Nothing can be sent to the closed connection itself.
        return [e for e in runtime.effects if not (isinstance(e, Send | Close | Ping | Pong))]

    def leave_rooms(self, conn: Connection) -> None:
        """Take the connection out of every room it is in."""
        route = conn.route.index
        for room in conn.rooms:
            self.rooms.leave(route, room, conn)
        conn.rooms.clear()

    # ---- running handlers ------------------------------------------------------------------
    def _run(self, conn: Connection, steps: list[Step], ctx: Context) -> list[Effect]:
        runtime = _Runtime(self, conn)
        try:
            for step in steps:
                step(runtime, ctx)
        except ActionError as err:
            return runtime.effects + self._fail(conn, err, ctx)
        return runtime.effects

    def _fail(self, conn: Connection, err: ActionError, ctx: Context) -> list[Effect]:
        """A handler failed: run ``on error`` if the route has one, else close with 1011."""
        log = Log(conn, f"handler failed: {err.message}", err.location, error=True)
        handler = conn.route.on_error
        if handler is None:
            return [log, Close(conn, CLOSE_INTERNAL_ERROR, "Internal error")]
        ctx = {**ctx, "error": {"message": err.message, "location": err.location}}
        runtime = _Runtime(self, conn)
        try:
            for step in handler:
                step(runtime, ctx)
        except ActionError as again:
            return [
                log,
                *runtime.effects,
                Log(conn, f"on error failed: {again.message}", again.location, error=True),
                Close(conn, CLOSE_INTERNAL_ERROR, "Internal error"),
            ]
        return [log, *runtime.effects]


#: The decoder json.loads uses, without its per-call checks.
_decode_json = json.JSONDecoder().decode

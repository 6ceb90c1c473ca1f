r"""The engine: events in, effects out, no I/O.

The connection layer turns bytes into events (a connection opens, a message arrives, a
connection closes, a timer fires) and calls the engine; the engine runs the scenario's compiled
handlers and returns the effects to carry out (frames to send, broadcasts, closes, timers to
start or stop, log lines). Room membership and each file's ``state`` are kept behind the
``Rooms`` and ``StateStore`` interfaces, given to the engine, so that stores shared by several
processes can replace the in-memory ones without touching the language or the compiler.

Time is the connection layer's: a timer is started with a ``StartTimer`` effect and fired by a
call of ``fire``. A handler that waits (``wait``) is suspended as a timer of its own and resumed
by ``fire`` too; everything it does up to a wait runs without any other handler in between, so
a read-then-set there is atomic.

With a backplane (``shared``: several processes serve one mock), the engine still does no
I/O: a broadcast also gives a ``Publish`` effect for the members on the other processes; an
event that reads or writes ``state`` (its handler, its ``where`` guard, the route's ``on
error``) gives a ``Deferred`` effect instead of running, which the connection layer runs once
this process holds the file's state, fresh from the other processes, so that a read-then-set
stays atomic across them; a connection's later events wait behind its deferred ones, so that
they keep their order. The routes' own timers run only on the process that ``lead``\s.

A reload (``reload``) replaces the Program while serving. A route's index names one definition
of it for the life of the engine: a route the reload keeps takes the index of the one it
replaces, so its connections, rooms and timers carry on; a changed or new route gets an index
never used before, so nothing of an old version can reach the clients of the new one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Generator, Iterator
from typing import Any

from ..errors import ActionError, EvaluationError
from ..expr.values import Context, check_size, decode_json, to_text, truthy, type_name
from ..language.limits import MAX_CLOSE_REASON_BYTES, MAX_CONTROL_PAYLOAD
from .compiler import run_block
from .connection import Connection, Request, Timer, new_connection_id
from .effects import (
    Accepted,
    AuthWait,
    Broadcast,
    Close,
    Deferred,
    Drop,
    Effect,
    Log,
    Ping,
    Pong,
    Publish,
    Rejected,
    Send,
    StartTimer,
    StopTimer,
    Unmatched,
    Verdict,
)
from .program import Block, Program, Route, TimerSpec
from .reload import Reloaded, compare
from .rooms import MemoryRooms, Rooms
from .state import MemoryState, StateStore, assign, remove

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_UNSUPPORTED_DATA",
    "RESTART_REASON",
    "Engine",
    "check_close_reason",
]

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INTERNAL_ERROR = 1011
#: The close code of the clients a reload closes: they reconnect to the new version.
CLOSE_SERVICE_RESTART = 1012
RESTART_REASON = "Service restart"

#: Effects that act on a connection itself: none of them can reach one that has closed.
_TO_THE_CONNECTION = (Send, Close, Drop, Ping, Pong)


class _Runtime:
    """What compiled actions act on during one event: the connection (None in a route's own
    timer), its route, and the effects so far."""

    __slots__ = ("conn", "effects", "engine", "route")

    def __init__(self, engine: Engine, conn: Connection | None, route: Route) -> None:
        self.engine = engine
        self.conn = conn
        self.route = route
        self.effects: list[Effect] = []

    def _connection(self) -> Connection:
        # The checker refuses these actions where there is no connection (a route timer).
        assert self.conn is not None
        return self.conn

    def send(self, data: str | bytes) -> None:
        self.effects.append(Send(self._connection(), data))

    def broadcast(self, data: str | bytes, rooms: list[Any] | None, include_self: bool) -> None:
        engine, conn = self.engine, self.conn
        route = self.route.index
        members: Collection[Connection]
        names: list[str] | None = None
        if rooms is None:
            members = engine.connections[route]
        else:
            names = list(_room_names(rooms))
            if len(names) == 1:
                members = engine.rooms.members(route, names[0])
            else:
                members = set().union(*(engine.rooms.members(route, name) for name in names))
        if include_self or conn is None or conn not in members:
            targets = list(members)
        else:
            targets = [c for c in members if c is not conn]
        if targets:
            self.effects.append(Broadcast(data, targets))
        # The sender is here: on the other processes, every member is another. (No room named:
        # nobody anywhere.)
        if engine.shared and (names is None or names):
            self.effects.append(Publish(data, self.route.path, names))

    def join(self, room: Any) -> None:
        conn = self._connection()
        for name in _room_names([room]):
            if name not in conn.rooms and len(conn.rooms) >= self.route.max_rooms:
                raise EvaluationError(
                    f"this connection is in {len(conn.rooms):,} rooms already, the most its "
                    "route allows ('max rooms')"
                )
            conn.rooms.add(name)
            self.engine.rooms.join(self.route.index, name, conn)

    def leave(self, room: Any) -> None:
        conn = self._connection()
        for name in _room_names([room]):
            conn.rooms.discard(name)
            self.engine.rooms.leave(self.route.index, name, conn)

    def close(self, code: int, reason: Any) -> None:
        conn = self._connection()
        text = to_text(reason)
        check_close_reason(text)
        conn.closing = True
        self.effects.append(Close(conn, code, text))

    def drop(self) -> None:
        conn = self._connection()
        conn.closing = True
        self.effects.append(Drop(conn))

    def ping(self, data: str | bytes) -> None:
        self.effects.append(Ping(self._connection(), _control_payload("ping", data)))

    def pong(self, data: str | bytes) -> None:
        self.effects.append(Pong(self._connection(), _control_payload("pong", data)))

    def log(self, message: Any, location: str) -> None:
        self.effects.append(Log(self.conn, to_text(message), location))

    def start_timer(self, spec: TimerSpec, name: str | None, delay: float, ctx: Context) -> None:
        conn = self._connection()
        key = name if name is not None else f"#{next(self.engine.timer_ids)}"
        running = conn.timers.get(key)
        if running is not None:  # a timer started again under its name replaces itself
            self.effects.append(self.engine.end_timer(running))
        else:
            self.engine.check_timer_bound(conn)
        timer = Timer(self.route, conn, key, dict(ctx), delay, delay if spec.repeat else None, spec)
        conn.timers[key] = timer
        self.effects.append(StartTimer(timer))

    def cancel_timer(self, name: str) -> None:
        running = self._connection().timers.get(name)
        if running is not None:
            self.effects.append(self.engine.end_timer(running))

    def wait(self, seconds: float) -> Iterator[float]:
        if self.conn is not None:
            self.engine.check_timer_bound(self.conn)
        return iter((seconds,))

    def write(self, root: str, keys: list[Any], value: Any) -> None:
        if root == "session":
            assign(self._connection().session, keys, value)
        else:
            self.engine.state.write(self.route.file, keys, value)

    def remove(self, root: str, keys: list[Any]) -> None:
        if root == "session":
            remove(self._connection().session, keys)
        else:
            self.engine.state.remove(self.route.file, keys)


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


def _decoded(data: str | bytes) -> Any:
    """A message as handlers read it (``msg``): JSON text decoded, other text and bytes as
    they are."""
    if isinstance(data, str):
        try:
            return decode_json(data)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to be data
            return data
    return data


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

    ``rooms``: where room membership is kept; ``state``: where each file's state is kept (in
    this process's memory unless given). ``shared``: the state and the broadcasts are shared
    with other processes (the module's docstring says what changes); the routes' own timers
    then wait for ``lead``.
    """

    def __init__(
        self,
        program: Program,
        rooms: Rooms | None = None,
        state: StateStore | None = None,
        shared: bool = False,
    ) -> None:
        self.program = program
        #: The open connections of each route, by route index. A reload adds an (empty) set
        #: for each route it changes or adds, and leaves the sets of the routes it retires
        #: empty: an index is never used for another definition.
        self.connections: list[set[Connection]] = [set() for _ in program.routes]
        self.rooms: Rooms = MemoryRooms() if rooms is None else rooms
        self.state: StateStore = MemoryState(program.states) if state is None else state
        self.shared = shared
        #: This process runs the routes' own timers (with a backplane, one process does).
        self.leading = not shared
        #: Names for timers started without one.
        self.timer_ids = itertools.count(1)
        #: The routes' own timers that run, and the waits of their runs, by route index: a
        #: reload stops those of the routes it retires.
        self.route_timers: dict[int, set[Timer]] = {}
        self._serving = {route.index: route for route in program.routes}

    # ---- start-up --------------------------------------------------------------------------
    def start(self) -> list[Effect]:
        """The routes' own timers, to start when the server starts."""
        effects: list[Effect] = []
        for route in self.program.routes:
            effects.extend(self._start_route_timers(route))
        return effects

    def lead(self, leading: bool) -> list[Effect]:
        """Run the routes' own timers from now on (``leading``), or stop them: with a
        backplane, the process that holds the lease runs them for every process."""
        if leading == self.leading:
            return []
        self.leading = leading
        if leading:
            return self.start()
        return [self.end_timer(t) for timers in self.route_timers.values() for t in list(timers)]

    def _start_route_timers(self, route: Route) -> list[Effect]:
        effects: list[Effect] = []
        if not self.leading:
            return effects
        ctx: Context = {**route.constants, "state": self.state.data(route.file)}
        for i, spec in enumerate(route.timers):
            try:
                delay = spec.interval(ctx)
            except EvaluationError as err:
                effects.append(Log(None, f"route timer not started: {err}", spec.location, True))
                continue
            timer = Timer(route, None, f"route-{i}", ctx, delay, delay, spec)
            self.route_timers.setdefault(route.index, set()).add(timer)
            effects.append(StartTimer(timer))
        return effects

    # ---- reload ----------------------------------------------------------------------------
    def reload(self, program: Program) -> tuple[Reloaded, list[Effect]]:
        """Serve ``program`` from now on, in place of the current Program (runtime/reload.py
        says which routes it keeps).

        - A kept route serves on under the new compiled route, which behaves the same: its
          connections (their rooms, sessions and timers) and its own timers are moved over
          to it, so that what they run from now on says the new line numbers. A handler
          suspended in a wait finishes as it began.
        - The connections of a changed or removed route end now: their ``on close`` runs
          (code 1012), with the state as it was, then they are closed with 1012 (Service
          Restart) so that clients reconnect to the new version. The route's own timers stop.
        - States whose definition changed start over from their new initial value.
        - New and changed routes get indices of their own and start their timers.
        """
        changes = compare(self.program, program)
        kept = set(changes.kept)
        effects: list[Effect] = []
        closed = 0
        for route in self.program.routes:
            if route.path in kept:
                continue
            for conn in list(self.connections[route.index]):
                closing = conn.closing  # closes already, with a code of its own
                effects.extend(self.close(conn, CLOSE_SERVICE_RESTART, RESTART_REASON))
                if not closing:
                    effects.append(Close(conn, CLOSE_SERVICE_RESTART, RESTART_REASON))
                    closed += 1
            for timer in list(self.route_timers.pop(route.index, ())):
                effects.append(self.end_timer(timer))
        for scope in changes.defined:
            self.state.define(scope, program.states.get(scope, {}))
        replaced = {route.path: route for route in self.program.routes}
        for route in program.routes:
            if route.path in kept:
                self._move(replaced[route.path], route)
            else:
                route.index = len(self.connections)
                self.connections.append(set())
        self.program = program
        self._serving = {route.index: route for route in program.routes}
        for route in program.routes:
            if route.path not in kept:
                effects.extend(self._start_route_timers(route))
        clients = sum(len(self.connections[route.index]) for route in program.routes)
        return Reloaded(changes, clients, closed), effects

    def _move(self, old: Route, new: Route) -> None:
        """Put ``new`` (equal to ``old``) in its place: its index, its connections, its
        timers. Equal definitions compile to timers in the same order, which pairs them."""
        new.index = old.index
        specs = {
            id(before): after
            for before, after in zip(
                [*old.timers, *old.action_timers], [*new.timers, *new.action_timers], strict=True
            )
        }
        timers: list[Timer] = list(self.route_timers.get(old.index, ()))
        for conn in self.connections[old.index]:
            conn.route = new
            timers.extend(conn.timers.values())
        for timer in timers:
            if timer.spec is not None:  # a wait goes on with the handler it suspended
                timer.route = new
                timer.spec = specs[id(timer.spec)]

    def current(self, route: Route) -> Route | None:
        """The route serving now in place of ``route`` (itself, or the equal route a reload
        put in its place); None when a reload changed or removed it."""
        return self._serving.get(route.index)

    # ---- handshake -------------------------------------------------------------------------
    def resolve(self, path: str) -> tuple[Route, dict[str, str]] | None:
        return self.program.resolve(path)

    def authenticate(
        self, route: Route, request: Request, params: dict[str, str], conn_id: str
    ) -> tuple[Verdict, list[Effect]]:
        """Run the route's auth block, as far as its first wait (``AuthWait``: ask again
        with ``continue_auth`` when it is over). An error inside it rejects with HTTP 500."""
        if route.auth is None:
            return Accepted({}), []
        return self.continue_auth(AuthWait(0.0, self._auth(route, request, params, conn_id)))

    def continue_auth(self, waiting: AuthWait) -> tuple[Verdict, list[Effect]]:
        try:
            delay = next(waiting.rest)
        except StopIteration as done:
            outcome, effects = done.value
            return outcome, effects
        return AuthWait(delay, waiting.rest), []

    def _auth(
        self, route: Route, request: Request, params: dict[str, str], conn_id: str
    ) -> Generator[float, None, tuple[Accepted | Rejected, list[Effect]]]:
        assert route.auth is not None
        probe = Connection(route, request, params, None, conn_id, self.state.data(route.file))
        ctx = dict(probe.base)
        del ctx["auth"], ctx["session"]
        for step in route.auth:
            try:
                if step.kind == "let":
                    assert step.value is not None and step.name is not None
                    ctx[step.name] = step.value(ctx)
                elif step.kind == "wait":
                    assert step.delay is not None
                    yield step.delay(ctx)
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
        conn = Connection(
            route,
            request,
            params,
            auth,
            conn_id or new_connection_id(),
            self.state.data(route.file),
        )
        self.connections[route.index].add(conn)
        return conn

    def connect(self, conn: Connection) -> list[Effect]:
        route = conn.route
        if self.shared and self._waits_for_state(conn, route, route.on_connect.state):
            return [self._defer(route.file, conn, lambda: self._connect(conn))]
        return self._connect(conn)

    def _connect(self, conn: Connection) -> list[Effect]:
        return self._run(conn, conn.route, conn.route.on_connect, dict(conn.base))

    def message(self, conn: Connection, data: str | bytes) -> list[Effect]:
        if conn.closing:
            return []
        value = _decoded(data)
        if self.shared:
            route = conn.route
            candidates = route.candidates(value, isinstance(data, bytes))
            if self._waits_for_state(conn, route, any(h.state for h in candidates)):
                return [self._defer(route.file, conn, lambda: self._message(conn, data, value))]
        return self._message(conn, data, value)

    def _message(self, conn: Connection, data: str | bytes, value: Any) -> list[Effect]:
        if conn.closing:
            return []
        route = conn.route
        is_binary = isinstance(data, bytes)
        candidates = route.candidates(value, is_binary)
        if is_binary and not candidates:
            conn.closing = True
            return [Close(conn, CLOSE_UNSUPPORTED_DATA, "Unsupported data")]
        ctx = conn.scratch
        ctx["msg"] = value
        ctx["raw"] = data
        for handler in candidates:
            if handler.where is not None:
                try:
                    if not truthy(handler.where(ctx)):
                        continue
                except EvaluationError:
                    continue  # a guard that cannot be read here does not match
            # A handler that may wait keeps names of its own: the next message reuses these.
            own = dict(ctx) if handler.block.waits else ctx
            effects = self._run(conn, route, handler.block, own)
            break
        else:
            effects = [Unmatched(conn, data)]
        # The message itself is not kept past its event; a let built from it is, until a later
        # event of this connection assigns that let again or the connection closes.
        ctx["msg"] = ctx["raw"] = None
        return effects

    def close(self, conn: Connection, code: int | None, reason: str) -> list[Effect]:
        """The connection is gone: stop its timers, run ``on close``, then forget it and its
        rooms. Nothing happens for a connection the engine ended already (a reload ends the
        connections of the routes it retires before their sockets are closed)."""
        if conn not in self.connections[conn.route.index]:
            return []
        route = conn.route
        if self.shared and (route.on_close.state or conn.deferred):
            return [self._defer(route.file, conn, lambda: self._close(conn, code, reason))]
        return self._close(conn, code, reason)

    def _close(self, conn: Connection, code: int | None, reason: str) -> list[Effect]:
        if conn not in self.connections[conn.route.index]:
            return []
        conn.closing = True
        effects: list[Effect] = [self.end_timer(t) for t in [*conn.timers.values(), *conn.waits]]
        ctx = dict(conn.base)
        ctx["code"] = code
        ctx["reason"] = reason
        runtime = _Runtime(self, conn, conn.route)
        try:
            run_block(conn.route.on_close, runtime, ctx)
        except ActionError as err:
            runtime.effects.append(
                Log(conn, f"on close failed: {err.message}", err.location, error=True)
            )
        self.connections[conn.route.index].discard(conn)
        self.leave_rooms(conn)
        # Nothing can be sent to the closed connection itself.
        effects.extend(
            e for e in runtime.effects if not (isinstance(e, _TO_THE_CONNECTION) and e.conn is conn)
        )
        return effects

    def leave_rooms(self, conn: Connection) -> None:
        """Take the connection out of every room it is in."""
        route = conn.route.index
        for room in conn.rooms:
            self.rooms.leave(route, room, conn)
        conn.rooms.clear()

    # ---- timers ----------------------------------------------------------------------------
    def fire(self, timer: Timer) -> list[Effect]:
        """A timer is due: run its block (or the rest of a waiting handler)."""
        conn = timer.conn
        if not timer.alive or (conn is not None and conn.closing):
            return []
        if timer.rest is not None:
            if self.shared and self._waits_for_state(conn, timer.route, timer.state):
                return [self._defer(timer.route.file, conn, lambda: self._resume(timer))]
            return self._resume(timer)
        if timer.running:
            return []  # the previous run still waits: runs never overlap, this tick is skipped
        spec = timer.spec
        assert spec is not None
        if self.shared and self._waits_for_state(conn, timer.route, spec.block.state):
            timer.running = True  # its run waits for the state: ticks meanwhile are skipped

            def run() -> list[Effect]:
                timer.running = False
                if not timer.alive or (conn is not None and conn.closing):
                    return []
                return self._fire(timer, spec)

            return [self._defer(timer.route.file, conn, run)]
        return self._fire(timer, spec)

    def _fire(self, timer: Timer, spec: TimerSpec) -> list[Effect]:
        conn = timer.conn
        timer.count += 1
        effects: list[Effect] = []
        if spec.times is not None and timer.count >= spec.times:
            effects.append(self.end_timer(timer))
        block = spec.block
        # A block that can neither bind a name nor wait leaves the names of its context as they
        # are: it runs in the timer's own, without a copy per run.
        ctx = timer.ctx if not (block.binds or block.waits) else dict(timer.ctx)
        ctx["timer"] = {"count": timer.count}
        effects.extend(self._run(conn, timer.route, block, ctx, owner=timer))
        return effects

    def end_timer(self, timer: Timer) -> StopTimer:
        """Stop a timer for good: its owner forgets it, and so must the connection layer."""
        timer.alive = False
        conn = timer.conn
        if conn is not None:
            if conn.timers.get(timer.name) is timer:
                del conn.timers[timer.name]
            conn.waits.discard(timer)
        else:
            self.route_timers.get(timer.route.index, set()).discard(timer)
        if timer.owner is not None:
            timer.owner.running = False
        return StopTimer(timer)

    def check_timer_bound(self, conn: Connection) -> None:
        if len(conn.timers) + len(conn.waits) >= conn.route.max_timers:
            raise EvaluationError(
                f"this connection has {conn.route.max_timers} timers and waits already, the "
                "most its route allows ('max timers')"
            )

    # ---- running handlers ------------------------------------------------------------------
    def _run(
        self,
        conn: Connection | None,
        route: Route,
        block: Block,
        ctx: Context,
        owner: Timer | None = None,
    ) -> list[Effect]:
        runtime = _Runtime(self, conn, route)
        try:
            if block.waits:
                self._start(runtime, block, ctx, owner)
            else:  # the common case, once per message: no detour through run_block
                for step in block.steps:
                    step(runtime, ctx)
        except ActionError as err:
            return runtime.effects + self._fail(conn, err, ctx)
        return runtime.effects

    def _start(
        self, runtime: _Runtime, block: Block, ctx: Context, owner: Timer | None = None
    ) -> None:
        """Run a block as far as its first wait; the rest of it is suspended as a timer."""
        rest = run_block(block, runtime, ctx)
        if rest is not None:
            delay = next(rest, None)
            if delay is not None:
                self._suspend(runtime, block, rest, delay, ctx, owner)

    def _suspend(
        self,
        runtime: _Runtime,
        block: Block,
        rest: Iterator[float],
        delay: float,
        ctx: Context,
        owner: Timer | None,
    ) -> None:
        """A handler waits: the rest of it becomes a timer of its own."""
        conn = runtime.conn
        waiting = Timer(runtime.route, conn, "wait", ctx, delay, None)
        waiting.rest = rest
        waiting.runner = runtime
        waiting.state = block.state
        if owner is not None and owner.alive:
            waiting.owner = owner
            owner.running = True
        if conn is not None:
            conn.waits.add(waiting)
        else:
            self.route_timers.setdefault(runtime.route.index, set()).add(waiting)
        runtime.effects.append(StartTimer(waiting))

    def _resume(self, waiting: Timer) -> list[Effect]:
        if not waiting.alive or (waiting.conn is not None and waiting.conn.closing):
            return []  # it was deferred, and its connection closed meanwhile
        runtime: _Runtime = waiting.runner
        assert waiting.rest is not None
        runtime.effects = []
        try:
            delay = next(waiting.rest, None)
        except ActionError as err:
            end = self.end_timer(waiting)
            return [*runtime.effects, end, *self._fail(waiting.conn, err, waiting.ctx)]
        if delay is None:
            runtime.effects.append(self.end_timer(waiting))
        else:
            waiting.delay = delay
            runtime.effects.append(StartTimer(waiting))
        return runtime.effects

    # ---- a state shared by several processes ----------------------------------------------
    @staticmethod
    def _waits_for_state(conn: Connection | None, route: Route, uses_state: bool) -> bool:
        """Whether an event must wait until this process holds the shared state: it reads or
        writes it (``uses_state``), or ``on error`` does, which it may run, or an earlier event
        of its connection waits already."""
        if conn is None:
            return uses_state
        on_error = route.on_error
        return uses_state or conn.deferred > 0 or (on_error is not None and on_error.state)

    @staticmethod
    def _defer(scope: str, conn: Connection | None, run: Callable[[], list[Effect]]) -> Deferred:
        """An event held until the file's shared state is held; the connection's next events
        wait behind it until it has run."""
        if conn is None:
            return Deferred(scope, None, run)
        conn.deferred += 1

        def later() -> list[Effect]:
            conn.deferred -= 1
            return run()

        return Deferred(scope, conn, later)

    def _fail(self, conn: Connection | None, err: ActionError, ctx: Context) -> list[Effect]:
        """A handler failed: run ``on error`` if the route has one, else close with 1011."""
        log = Log(conn, f"handler failed: {err.message}", err.location, error=True)
        if conn is None:  # a route timer: nothing to close
            return [log]
        handler = conn.route.on_error
        if handler is None:
            conn.closing = True
            return [log, Close(conn, CLOSE_INTERNAL_ERROR, "Internal error")]
        ctx = {**ctx, "error": {"message": err.message, "location": err.location}}
        runtime = _Runtime(self, conn, conn.route)
        try:
            self._start(runtime, handler, ctx)
        except ActionError as again:
            conn.closing = True
            return [
                log,
                *runtime.effects,
                Log(conn, f"on error failed: {again.message}", again.location, error=True),
                Close(conn, CLOSE_INTERNAL_ERROR, "Internal error"),
            ]
        return [log, *runtime.effects]

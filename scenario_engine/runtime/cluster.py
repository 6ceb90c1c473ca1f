"""A server as one of several processes serving one mock: the glue between the connection
layer and the backplane.

``serve --backplane redis://…`` gives the server a ``Cluster``. It makes the server's engine
share its state and its broadcasts (``Engine(shared=True)``, the state a ``SharedState``),
and then:

- a ``Publish`` effect (a broadcast) goes to the other processes through the backplane; a
  delivery from another process goes to this process's connections it is for (those of its
  route, in its rooms, or the one connection it names);
- a ``Deferred`` effect (an event that reads or writes ``state``) waits for its file's lock;
  the server carries out its effects once what it wrote is in Redis;
- the lease tells the engine when this process runs the routes' own timers.

Each delivery is handed to this process's members as its origin's engine chose them there:
the sender's own process has delivered to its members already (with ``include self`` or
not), so the others have nothing to leave out.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Protocol

from .backplane import Backplane, BackplaneSettings, Delivery
from .connection import Connection
from .effects import Deferred, Effect, Publish
from .engine import Engine
from .lease import Lease
from .program import Program, Route
from .shared_state import SharedState, check_file_names

__all__ = ["CLOSE_TRY_AGAIN_LATER", "MAX_DEFERRED", "Cluster", "ClusterHost"]

logger = logging.getLogger("scenario_engine")

#: Events of one connection waiting for the shared state, at most: a client that sends faster
#: than the state can be had is closed with 1013 (Try Again Later) past it.
MAX_DEFERRED = 1000
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_INTERNAL_ERROR = 1011


class ClusterHost(Protocol):
    """What the cluster needs of the server."""

    engine: Engine

    def deliver(self, targets: Collection[Connection], data: str | bytes) -> int: ...

    def carry_out(self, effects: Iterable[Effect], source: Connection | None) -> None:
        """Carry out an event's effects, as after any event (``source``: its connection)."""
        ...

    def end_connection(self, conn: Connection, code: int, reason: str) -> None:
        """Close one connection at once (a bug met in its event, or a flood)."""
        ...


class Cluster:
    """This process's part of a mock served by several processes through one Redis."""

    def __init__(self, settings: BackplaneSettings, files: Sequence[str]) -> None:
        check_file_names(files)
        self.settings = settings
        self.backplane = Backplane(settings, files)
        self.state: SharedState | None = None
        self._host: ClusterHost | None = None
        self._lease: Lease | None = None
        #: The routes of the Program the engine serves, by path (made again after a reload).
        self._routes: tuple[Program | None, dict[str, Route]] = (None, {})

    def engine(self, program: Program) -> Engine:
        """The engine for the server: its state shared, its broadcasts published."""
        self.state = SharedState(program.states, self.backplane, self.settings.lease)
        return Engine(program, state=self.state, shared=True)

    async def connect(self) -> None:
        """Raises BackplaneError when Redis cannot be reached."""
        await self.backplane.connect()

    async def start(self, host: ClusterHost) -> None:
        """Listen to the other processes, and take part in the lease of the route timers."""
        assert self.state is not None, "engine() makes the state first"
        self._host = host
        self.backplane.listen(self.backplane.deliveries, self._delivered)
        self.state.start(self)
        await self.backplane.start()
        self._lease = Lease(self.backplane, self.settings.lease, self._lead)
        self._lease.start()

    async def close(self) -> None:
        """Give the lease up, let the events waiting for the state run, disconnect."""
        if self._lease is not None:
            await self._lease.close()
        if self.state is not None:
            await self.state.close(self.settings.timeout)
        await self.backplane.close()

    # ---- effects ---------------------------------------------------------------------------
    def publish(self, effect: Publish) -> None:
        self.backplane.publish(Delivery(effect.data, effect.route, effect.rooms))

    def defer(self, effect: Deferred) -> None:
        assert self.state is not None and self._host is not None
        self.state.submit(effect)
        conn = effect.conn
        if conn is not None and conn.deferred == MAX_DEFERRED + 1:
            logger.warning(
                "closing %s %s: over %d messages wait for the shared state",
                conn.id,
                conn.request.path,
                MAX_DEFERRED,
            )
            self._host.end_connection(conn, CLOSE_TRY_AGAIN_LATER, "Try Again Later")

    # ---- StateHost -------------------------------------------------------------------------
    def run_deferred(self, deferred: Deferred) -> list[Effect]:
        assert self._host is not None
        try:
            return deferred.run()
        except Exception:  # a bug of ours: this connection ends with 1011, the others go on
            conn = deferred.conn
            logger.exception("connection %s failed", conn.id if conn is not None else "-")
            if conn is not None:
                self._host.end_connection(conn, CLOSE_INTERNAL_ERROR, "")
            return []

    def carry_out(self, deferred: Deferred, effects: list[Effect]) -> None:
        assert self._host is not None
        try:
            self._host.carry_out(effects, deferred.conn)
        except Exception:
            logger.exception("effects of a deferred event failed")

    # ---- the other processes ---------------------------------------------------------------
    def _delivered(self, message: bytes) -> None:
        """A delivery from the backplane: to this process's connections it is for."""
        delivery = Delivery.decode(message)
        if delivery.origin == self.backplane.origin:
            return  # this process delivered it when it published it
        self.backplane.received += 1
        assert self._host is not None
        targets = self._targets(delivery)
        if targets:
            self._host.deliver(targets, delivery.data)

    def _targets(self, delivery: Delivery) -> Collection[Connection]:
        engine = self._host.engine if self._host is not None else None
        assert engine is not None
        program, by_path = self._routes
        if program is not engine.program:
            by_path = {route.path: route for route in engine.program.routes}
            self._routes = (engine.program, by_path)
        rooms = delivery.rooms
        if delivery.route is not None and delivery.connection is None:
            # The common case, a broadcast: its members are the engine's, taken as they are.
            route = by_path.get(delivery.route)
            if route is None:  # not served here (another version of the files)
                return ()
            if rooms is None:
                return engine.connections[route.index]
            if len(rooms) == 1:
                return engine.rooms.members(route.index, rooms[0])
        if delivery.route is None:
            routes: list[Route] = list(by_path.values())
        else:
            route = by_path.get(delivery.route)
            if route is None:  # not served here (another version of the files)
                return ()
            routes = [route]
        found: set[Connection] = set()
        for route in routes:
            if rooms is None:
                found.update(engine.connections[route.index])
            else:
                for room in rooms:
                    found.update(engine.rooms.members(route.index, room))
        if delivery.connection is not None:
            return [conn for conn in found if conn.id == delivery.connection]
        return found

    def _lead(self, leading: bool) -> None:
        assert self._host is not None
        engine = self._host.engine
        if self.backplane.up and any(route.timers for route in engine.program.routes):
            logger.info(
                "backplane: this process %s the routes' own timers",
                "runs" if leading else "no longer runs",
            )
        self._host.carry_out(engine.lead(leading), None)

    # ---- what it did -----------------------------------------------------------------------
    @property
    def leading(self) -> bool:
        return self._lease is not None and self._lease.leading

    def status(self) -> dict[str, Any]:
        """The backplane's figures, for the admin API and the log."""
        return {
            **self.backplane.status(),
            "leader": self._lease.holding if self._lease is not None else False,
            "state": self.state.status() if self.state is not None else {},
        }

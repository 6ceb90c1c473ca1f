"""The server: handshakes decided, the engine's events run, its effects put on the wire.

Each TCP connection is a ``Link`` (link.py): websockets' sans-I/O protocol under an asyncio
protocol, with no task per connection. This module decides what the links' events mean: which
route a handshake is for and whether it may open (a route, allowed origins, connection limits,
a subprotocol, the scenario's ``auth``), what the engine does with each message, and how the
engine's effects reach the wire.

Messages are encoded once per send and queued on each receiver without waiting: a broadcast
never waits for a slow client, and what a connection is sent during one turn of the event loop
goes out in one write at the end of the turn. A client that does not read is closed (1008) once
MAX_PENDING_OUTPUT bytes wait for it, instead of growing the server's memory.

Authentication runs before the handshake is answered: a rejection with an HTTP status answers
the handshake with that status; a rejection with a close code completes the handshake and
closes at once with that code, so that a browser's ``onclose`` sees it (browsers hide the
status of a failed handshake from scripts).

With the admin API on, requests under its prefix are read by its own parser (any method, a
body) and answered by ``admin.Admin``; with the inspector on too, its page's files are answered
by ``inspector.Inspector``, and its feed is a WebSocket that is no route of the scenarios. With
a journal, connects, rejections, messages and closes are recorded in it.

With a ``cluster`` (``serve --backplane``), the server is one of several processes serving one
mock: ``cluster.Cluster`` carries out the effects that concern the others (broadcasts
published, events that wait for the shared state) and hands over what comes from them.

``reload`` serves a new Program on the same socket, without a restart: the engine decides what
carries over (``Engine.reload``); the server carries out its effects and answers handshakes
that were waiting for an ``auth`` block with the route now serving, or with 1012 when the
reload retired it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import http
import logging
import random
import socket
from collections.abc import Collection, Coroutine, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.http11 import SERVER, Response
from websockets.http11 import Request as HttpRequest
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from ..errors import UsageError
from .admin import ADMIN_PREFIX, LOOPBACK, Admin, AdminRequest, Network, is_admin_path
from .clock import Clock
from .cluster import Cluster
from .cluster_admin import ClusterAdmin
from .compression import ThresholdDeflateFactory
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
from .engine import CLOSE_SERVICE_RESTART, RESTART_REASON, Engine
from .inspector import FEED_PATH, Inspector
from .journal import Journal, payload_fields
from .link import Link
from .program import Program, Route
from .reload import Reloaded
from .wire import header_fields, new_protocol, offered_subprotocols

__all__ = ["DEFAULT_MAX_MESSAGE", "LISTEN_BACKLOG", "ScenarioServer"]

logger = logging.getLogger("scenario_engine")

#: Incoming messages larger than this close the connection with 1009 unless the route sets
#: ``max message``. websockets' own default is 1 MiB; a mock should accept what a real
#: backend would, so the default is larger.
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
#: Pending connections the kernel queues before accept(): asyncio's default of 100 makes a
#: burst of clients wait for SYN retransmissions (a second or more) instead of being accepted.
LISTEN_BACKLOG = 4096
#: How long a client has to complete the opening handshake (TLS included).
OPEN_TIMEOUT = 10.0
#: Most bytes queued for one client that does not read, beyond what the kernel buffers. A
#: broadcast has no backpressure (one slow client must not slow the others down), so a client
#: whose queue passes this is closed with 1008 instead of growing the server's memory.
MAX_PENDING_OUTPUT = 1024 * 1024
#: Characters of an unmatched message shown in its log line.
_UNMATCHED_SHOWN = 80
#: How long a client closed for being too slow gets to read the close frame.
SLOW_CLOSE_TIMEOUT = 2.0
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
_FAILED = "Failed to open a WebSocket connection.\nSee server log for more information.\n"
_OPEN = State.OPEN


class ScenarioServer:
    """Serves a Program over WebSocket. Use ``start()``, then ``close()``.

    ``journal``: record events in it (None: record nothing, at no cost). ``admin``: answer the
    admin API under ADMIN_PREFIX, to peers in ``admin_allow`` only, and under this server's own
    names or ``admin_hosts`` (``Admin``); raises UsageError when a route is under that prefix.
    ``inspector``: serve the inspector's page and feed there too (needs ``admin``).
    ``reuse_port``: listen with SO_REUSEPORT, so that the other workers of ``serve --workers``
    listen on the same port and the kernel spreads the connections over them.
    ``cluster``: serve as one of several processes sharing rooms' broadcasts, state and route
    timers through a backplane (its ``connect()`` checked already).
    """

    def __init__(
        self,
        program: Program,
        host: str = "127.0.0.1",
        port: int = 8765,
        ssl: Any = None,
        max_connections: int | None = None,
        open_timeout: float = OPEN_TIMEOUT,
        journal: Journal | None = None,
        admin: bool = False,
        admin_allow: Sequence[Network] = LOOPBACK,
        admin_hosts: Sequence[str] = (),
        inspector: bool = False,
        reuse_port: bool = False,
        cluster: Cluster | None = None,
    ) -> None:
        if inspector and not admin:
            raise UsageError("the inspector is a page of the admin API: it needs the admin API")
        if admin:
            _check_admin_prefix(program)
        self.cluster = cluster
        self.engine = Engine(program) if cluster is None else cluster.engine(program)
        self.host = host
        self.port = port
        self.ssl = ssl
        self.max_connections = max_connections
        self.open_timeout = open_timeout
        self.journal = journal
        self.reuse_port = reuse_port
        self.admin = Admin(self, admin_allow, admin_hosts) if admin else None
        if self.admin is not None and cluster is not None:
            assert cluster.state is not None  # made with the engine
            self.admin.everywhere = ClusterAdmin(self.admin, cluster.backplane, cluster.state)
        self.inspector = (
            Inspector(self.admin, journal) if inspector and self.admin is not None else None
        )
        #: Paths under ADMIN_PREFIX that are WebSockets, not requests to the admin API.
        self._admin_websockets = frozenset([FEED_PATH] if self.inspector is not None else [])
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocol_logger = logging.getLogger("scenario_engine.websockets")
        #: Every TCP connection, open or not yet; the open ones by their engine connection.
        self._links: set[Link] = set()
        self._live: dict[Connection, Link] = {}
        #: Handshakes whose auth block is waiting: they count toward the connection limits.
        self._authenticating: dict[Link, Route] = {}
        #: Links sent something this turn, to flush at its end.
        self._dirty: list[Link] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._stopped = asyncio.Event()
        #: When the engine's timers are due.
        self._timers = Clock(self._fire)
        self._deflate = _deflate_factories(program)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if self.ssl is not None:
            tls = {"ssl": self.ssl, "ssl_handshake_timeout": self.open_timeout}
        if self.cluster is not None:  # subscribed before the first client can broadcast
            await self.cluster.start(self)
        try:
            self._server = await loop.create_server(
                self._new_link,
                self.host,
                self.port,
                backlog=LISTEN_BACKLOG,
                reuse_port=self.reuse_port or None,
                **tls,
            )
        except BaseException:
            if self.cluster is not None:
                await self.cluster.close()
            raise
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        if self.cluster is None:  # with one, the lease says when this process runs them
            self._apply(self.engine.start())

    @property
    def scheme(self) -> str:
        return "wss" if self.ssl is not None else "ws"

    def url(self, path: str) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if self.host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"{self.scheme}://{host}:{self.port}{path}"

    def route_urls(self) -> list[str]:
        return [self.url(route.path) for route in self.engine.program.routes]

    async def close(self) -> None:
        """Stop listening, close every connection with 1001 (going away), and wait for them
        to end (each within the close timeout)."""
        self._timers.close()
        if self.inspector is not None:
            self.inspector.close()
        self._closing = True
        server = self._server
        if server is None:
            return
        server.close()
        for link in list(self._links):
            state = link.protocol.state
            if state is _OPEN:
                link.close(CLOSE_GOING_AWAY, "")
            elif state is State.CONNECTING:
                link.abort()  # a handshake not answered yet will not be
        for task in list(self._tasks):
            task.cancel()
        ending = [link.gone for link in self._links]
        if ending:
            await asyncio.wait(ending)
        await server.wait_closed()
        if self.cluster is not None:  # after the closes: their ``on close`` may need it
            await self.cluster.close()
        self._stopped.set()

    def reload(self, program: Program) -> Reloaded:
        """Serve ``program`` from now on, in place of the current one, on the same socket.

        Clients of the routes it keeps stay connected; those of the routes it changes or
        removes are closed with 1012 (Service Restart). Raises UsageError, changing nothing,
        when the admin API is on and a route of ``program`` is under its prefix.
        """
        if self.admin is not None:
            _check_admin_prefix(program)
        reloaded, effects = self.engine.reload(program)
        self._deflate = _deflate_factories(program)
        if self.journal is not None:
            changes = reloaded.changes
            self.journal.record(
                "reload",
                added=list(changes.added),
                changed=list(changes.changed),
                removed=list(changes.removed),
                reset=list(changes.reset),
                kept=reloaded.kept,
                closed=reloaded.closed,
            )
        self._apply(effects)
        return reloaded

    async def serve_forever(self) -> None:
        """Return once the server is closed."""
        await self._stopped.wait()

    def _new_link(self) -> Link:
        protocol = new_protocol(
            DEFAULT_MAX_MESSAGE,
            self.admin is not None,
            self._protocol_logger,
            self._admin_websockets,
        )
        link = Link(self, protocol, self.open_timeout)
        self._links.add(link)
        return link

    # ---- handshake -------------------------------------------------------------------------
    def handshake(self, link: Link, http_request: HttpRequest) -> None:
        try:
            self._handshake(link, http_request)
        except Exception:  # a bug of ours: this client gets a 500, the others go on
            logger.exception("handshake of %s failed", http_request.path)
            self._respond(
                link, link.protocol.reject(http.HTTPStatus.INTERNAL_SERVER_ERROR, _FAILED)
            )

    def _handshake(self, link: Link, http_request: HttpRequest) -> None:
        protocol = link.protocol
        target = urlsplit(http_request.path)
        if self.inspector is not None and target.path == FEED_PATH:
            self._open_feed(link, self.inspector, http_request)
            return
        # The subprotocol is known once the route is: set below.
        request = Request(
            path=target.path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers=header_fields(http_request.headers),
            ip=link.peer,
            subprotocol=None,
        )
        resolved = self.engine.resolve(target.path)
        if resolved is None:
            reason = f"No WebSocket route at {target.path}"
            self._reject("refused", link, request, reason, status=404)
            self._respond(link, protocol.reject(http.HTTPStatus.NOT_FOUND, reason + "\n"))
            return
        route, params = resolved
        refusal = self._refuse(route, http_request)
        if refusal is not None:
            status, reason = refusal
            self._reject("refused", link, request, reason, status=status)
            self._respond(link, protocol.reject(status, reason + "\n"))
            return
        offered = offered_subprotocols(http_request.headers)
        selected = next((name for name in offered if name in route.subprotocols), None)
        if selected is None and route.subprotocol_required:
            reason = "Unsupported subprotocol: this route speaks " + ", ".join(route.subprotocols)
            if not offered:
                reason += " (none offered)"
            self._reject("refused", link, request, reason, status=400)
            self._respond(link, protocol.reject(http.HTTPStatus.BAD_REQUEST, reason + "\n"))
            return
        request = dataclasses.replace(request, subprotocol=selected)
        conn_id = new_connection_id()
        verdict, effects = self.engine.authenticate(route, request, params, conn_id)
        self._apply(effects)
        opening = _Opening(http_request, route, request, params, conn_id)
        if isinstance(verdict, AuthWait):
            self._authenticating[link] = route
            self._spawn(self._authenticate_later(link, opening, verdict))
            return
        self._admit(link, opening, verdict)

    async def _authenticate_later(self, link: Link, opening: _Opening, verdict: Verdict) -> None:
        """An auth block that waits: the handshake is answered when it is done (or never, when
        the open timeout passes first and the client is cut off)."""
        try:
            while isinstance(verdict, AuthWait):
                await asyncio.sleep(verdict.delay)
                if link.gone.done():
                    return
                verdict, effects = self.engine.continue_auth(verdict)
                self._apply(effects)
        finally:
            self._authenticating.pop(link, None)
        try:
            self._admit(link, opening, verdict)
        except Exception:
            logger.exception("handshake of %s failed", opening.request.path)
            self._respond(
                link, link.protocol.reject(http.HTTPStatus.INTERNAL_SERVER_ERROR, _FAILED)
            )

    def _admit(self, link: Link, opening: _Opening, outcome: Accepted | Rejected) -> None:
        if link.gone.done():
            return
        request = opening.request
        protocol = link.protocol
        verb = "rejected"
        route = self.engine.current(opening.route)
        if route is None:  # a reload retired the route while its auth block waited
            route = opening.route
            verb, outcome = "refused", Rejected(RESTART_REASON, CLOSE_SERVICE_RESTART)
        if isinstance(outcome, Rejected) and outcome.status is not None:
            self._reject(verb, link, request, outcome.reason, status=outcome.status)
            self._respond(link, protocol.reject(outcome.status, outcome.reason + "\n"))
            return
        _configure(protocol, route, request.subprotocol, self._deflate.get(route.index, []))
        response = protocol.accept(opening.http_request)
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS and self._closing:
            response = protocol.reject(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n"
            )
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            # websockets refused the handshake itself (no Upgrade header, a bad key).
            self._respond(link, response)
            return
        if isinstance(outcome, Rejected):
            code = outcome.code
            assert code is not None
            self._respond(link, response)
            self._reject(verb, link, request, outcome.reason, code=code)
            link.close(code, outcome.reason)
            return
        engine = self.engine
        conn = engine.open(route, request, opening.params, outcome.auth, opening.conn_id)
        link.conn = conn
        if route.latency is not None:
            link.latency = route.latency
            link.held = collections.deque()
        self._live[conn] = link
        self._respond(link, response)
        if route.heartbeat is not None:
            link.keepalive(route.heartbeat)
        logger.info("connect %s %s (%s)", conn.id, request.path, request.ip)
        if self.journal is not None:
            self.journal.record(
                "connect",
                connection=conn.id,
                route=route.path,
                path=request.path,
                query=request.query,
                headers=request.headers,
            )
        self._apply(engine.connect(conn), conn)

    def _open_feed(self, link: Link, inspector: Inspector, http_request: HttpRequest) -> None:
        """The inspector's feed: a WebSocket of the server's own, no route's connection (it
        counts toward no limit, and the journal does not record it)."""
        if self._closing:
            response = link.protocol.reject(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Server is shutting down.\n"
            )
        else:
            response = inspector.accept(link, http_request)
        self._respond(link, response)
        if response.status_code == http.HTTPStatus.SWITCHING_PROTOCOLS:
            inspector.follow(link)

    @staticmethod
    def _respond(link: Link, response: Response) -> None:
        response.headers["Server"] = SERVER
        link.respond(response)

    def _refuse(self, route: Route, http_request: HttpRequest) -> tuple[int, str] | None:
        """Policy checks before authentication: allowed origins, connection limits."""
        if route.origins is not None:
            origin = http_request.headers.get("Origin")
            if origin not in route.origins:
                # Cross-site WebSocket hijacking: a page of another site must not use the
                # visitor's cookies to talk to this server.
                return http.HTTPStatus.FORBIDDEN, f"Origin not allowed: {origin or '(none)'}"
        # Handshakes waiting for their auth block count too: a burst must not overshoot a
        # limit. Only a route's own limit needs them scanned; the server's needs their number.
        connections = self.engine.connections
        if route.max_connections is not None:
            # By index: a handshake that began before a reload holds the route it began on.
            on_route = len(connections[route.index]) + sum(
                1 for r in self._authenticating.values() if r.index == route.index
            )
            if on_route >= route.max_connections:
                return http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections on this route"
        if self.max_connections is not None:
            # The routes serving hold every open connection (those retired by reloads, none).
            routes = self.engine.program.routes
            total = sum(len(connections[r.index]) for r in routes) + len(self._authenticating)
            if total >= self.max_connections:
                return http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections"
        return None

    def _reject(
        self,
        verb: str,
        link: Link,
        request: Request,
        reason: str,
        *,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        """Log and journal a handshake turned away: with an HTTP ``status``, or with a close
        ``code`` right after it. ``verb``: "refused" by the server (no route, an origin, a
        limit) or "rejected" by the scenario's ``auth``. The caller sends the answer.

        The journal keeps the refused request's query and headers: what a reader (``record
        --from-journal`` inferring the ``auth`` block) compares with those of the clients
        accepted."""
        how = f"HTTP {status}" if status is not None else f"close {code}"
        logger.info("%s %s %s: %s %s", verb, link.peer, request.path, how, reason)
        if self.journal is not None:
            answer = {"status": int(status)} if status is not None else {"code": code}
            self.journal.record(
                "reject",
                path=request.path,
                query=request.query,
                headers=request.headers,
                reason=reason,
                **answer,
            )

    # ---- admin API -------------------------------------------------------------------------
    def admin_request(self, link: Link, request: AdminRequest) -> None:
        self._spawn(self._answer_admin(link, request))

    async def _answer_admin(self, link: Link, request: AdminRequest) -> None:
        assert self.admin is not None
        try:
            if self.inspector is not None and self.inspector.serves(request.path):
                response = self.inspector.respond(link.peer, request)
            else:
                response = await self.admin.respond(link.peer, request)
        except Exception:
            logger.exception("admin request %s %s failed", request.method, request.path)
            response = link.protocol.reject(http.HTTPStatus.INTERNAL_SERVER_ERROR, _FAILED)
        self._respond(link, response)

    # ---- connection ------------------------------------------------------------------------
    def message(self, link: Link, data: str | bytes) -> None:
        conn = link.conn
        assert conn is not None
        if conn.closing:  # it closes, or drops, after its latency: nothing more is read
            return
        try:
            if self.journal is not None:
                self.journal.record("in", connection=conn.id, **payload_fields(data))
            effects = self.engine.message(conn, data)
            if len(effects) == 1:
                reply = effects[0]
                # The most common answer, a reply to the sender, straight to its link (what
                # deliver() checks first does not apply: no journal, no latency, not paused).
                if (
                    type(reply) is Send
                    and reply.conn is conn
                    and self.journal is None
                    and link.latency is None
                    and not link.paused
                    and link.protocol.state is _OPEN
                ):
                    out = reply.data
                    if type(out) is str:
                        link.send(out.encode(), True)
                    else:
                        link.send(out, False)  # type: ignore[arg-type]
                    return
            self._apply(effects, conn)
        except Exception:  # a bug of ours: this connection ends with 1011, the others go on
            logger.exception("connection %s failed", conn.id)
            link.fail(CLOSE_INTERNAL_ERROR, "")

    def closed(self, link: Link) -> None:
        self._links.discard(link)
        self._authenticating.pop(link, None)
        conn = link.conn
        if conn is None:
            return
        del self._live[conn]
        protocol = link.protocol
        # The close code the client saw: ours if we closed first, else theirs.
        sent = protocol.close_sent
        code = sent.code if sent else protocol.close_code
        reason = protocol.close_reason or ""
        try:
            if self.journal is not None:  # before what ``on close`` sends to the others
                self.journal.record(
                    "close",
                    connection=conn.id,
                    code=code,
                    reason=sent.reason if sent else reason,
                )
            # on close may broadcast to the others (Send and Close to itself are dropped).
            self._apply(self.engine.close(conn, protocol.close_code, reason))
        except Exception:
            logger.exception("on close of %s failed", conn.id)
        logger.info("close %s %s code=%s", conn.id, conn.request.path, code)

    def flush_soon(self, link: Link) -> None:
        dirty = self._dirty
        if not dirty:
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        dirty.append(link)

    def _flush(self) -> None:
        """The end of the turn: write what each connection was sent during it."""
        dirty, self._dirty = self._dirty, []
        for link in dirty:
            link.flush()

    def _apply(self, effects: Iterable[Effect], source: Connection | None = None) -> None:
        """Carry out the effects of one event, in order. Those of a message (``source``, its
        connection) stop at the connection's own close, as its handler did."""
        for effect in effects:
            if isinstance(effect, Send):
                self.deliver((effect.conn,), effect.data)
            elif isinstance(effect, Broadcast):
                self.deliver(effect.targets, effect.data)
            elif isinstance(effect, Publish):
                assert self.cluster is not None  # only a shared engine publishes
                self.cluster.publish(effect)
            elif isinstance(effect, Deferred):
                assert self.cluster is not None  # only a shared engine defers
                self.cluster.defer(effect)
            elif isinstance(effect, Close | Drop):
                self._end(effect)
                if effect.conn is source:
                    return
            elif isinstance(effect, Ping | Pong):
                link = self._live.get(effect.conn)
                if link is not None:
                    if isinstance(effect, Ping):
                        link.ping(effect.data)
                    else:
                        link.pong(effect.data)
            elif isinstance(effect, Log):
                self._log(effect)
            elif isinstance(effect, StartTimer):
                self._start_timer(effect.timer)
            elif isinstance(effect, StopTimer):
                self._timers.stop(effect.timer)
            elif isinstance(effect, Unmatched):
                self._unmatched(effect)

    def carry_out(self, effects: Iterable[Effect], source: Connection | None) -> None:
        """Carry out the effects of an event run later (a deferred one, a lease change)."""
        self._apply(effects, source)

    def end_connection(self, conn: Connection, code: int, reason: str) -> None:
        """Close one connection at once, without waiting for the client's close frame."""
        link = self._live.get(conn)
        if link is not None:
            link.fail(code, reason)

    def _end(self, effect: Close | Drop) -> None:
        """Close or cut a connection, after the messages its latency still holds back."""
        link = self._live.get(effect.conn)
        if link is None:
            return
        if link.latency is not None:
            assert self._loop is not None
            delay = link.ready_at - self._loop.time()
            if delay > 0:
                self._loop.call_later(delay, self._end_now, effect)
                return
        self._end_now(effect)

    def _end_now(self, effect: Close | Drop) -> None:
        link = self._live.get(effect.conn)
        if link is None:
            return
        if link.held:
            self._write_due(effect.conn, link)  # timers due at the same time run in any order
        if isinstance(effect, Drop):
            logger.info("drop %s %s", effect.conn.id, effect.conn.request.path)
            # Once the transport has gone, the connection reads as closed abnormally (1006).
            link.abort()
        else:
            link.close(effect.code, effect.reason)

    # ---- timers ----------------------------------------------------------------------------
    def _start_timer(self, timer: Timer) -> None:
        assert self._loop is not None
        due = self._loop.time() + timer.delay
        self._timers.start(timer, due, timer.interval or timer.delay)

    def _fire(self, timer: Timer, due: float) -> None:
        """A timer is due: the engine runs it; a repeating one is due again an interval after
        the time it was due (not after now: no drift), or an interval from now when the loop
        was late by more than that."""
        try:
            self._apply(self.engine.fire(timer))
        except Exception:  # a bug of ours must not stop the clock of everyone else
            logger.exception("timer %r failed", timer)
        if timer.alive and timer.interval is not None and timer not in self._timers:
            assert self._loop is not None
            now = self._loop.time()
            upcoming = due + timer.interval
            if upcoming <= now:
                upcoming = now + timer.interval
            self._timers.start(timer, upcoming, timer.interval)

    def _unmatched(self, effect: Unmatched) -> None:
        """A message no handler took: one log line and a journal event, so it is not lost
        silently (a scenario that wants silence handles it with ``on message { }``)."""
        conn, data = effect.conn, effect.data
        shown = repr(data[:_UNMATCHED_SHOWN]) + ("…" if len(data) > _UNMATCHED_SHOWN else "")
        logger.info("unmatched %s %s: %s", conn.id, conn.route.path, shown)
        if self.journal is not None:
            self.journal.record("unmatched", connection=conn.id, **payload_fields(data))

    # ---- sending ---------------------------------------------------------------------------
    def deliver(self, targets: Collection[Connection], data: str | bytes) -> int:
        """Send one message to each target, encoded once; the number of targets it was sent
        to. Nothing waits: it is queued on each connection at once (sending to one client
        never waits for another), and a client with more than MAX_PENDING_OUTPUT bytes unread
        is closed with 1008 instead of being sent more.
        """
        is_text = isinstance(data, str)
        payload = data.encode() if isinstance(data, str) else data
        journal = self.journal
        # With a journal, the clients to send to are collected first and recorded before
        # anything is sent: once a client has the message, whoever reads the journal finds it
        # there. Without one, each client is sent to as soon as it is checked: this loop runs
        # once per message and recipient, so it builds no list and calls no helper.
        ready: list[Link] | None = None if journal is None else []
        recorded: list[str] = []
        count = 0
        lives = self._live
        for conn in targets:
            link = lives.get(conn)
            if link is None or link.protocol.state is not _OPEN:
                continue
            # ``paused`` is set past the transport's write limit (32 KiB): only then measure.
            if link.paused and link.unsent() > MAX_PENDING_OUTPUT:
                self._close_slow(conn, link)
                continue
            if link.latency is not None:
                if link.held_bytes + len(payload) > MAX_PENDING_OUTPUT:
                    # What latency holds back counts toward the bound on queued output.
                    self._close_slow(conn, link)
                    continue
                self._write_later(conn, link, payload, is_text)
                if ready is not None:
                    recorded.append(conn.id)
                else:
                    count += 1
                continue
            if ready is not None:
                ready.append(link)
                recorded.append(conn.id)
                continue
            link.send(payload, is_text)
            count += 1
        if recorded:
            assert journal is not None and ready is not None
            journal.record("out", connections=recorded, **payload_fields(data))
            # Nothing ran since the record: the clients recorded are still those sent to.
            for link in ready:
                link.send(payload, is_text)
            count += len(recorded)
        return count

    def _write_later(self, conn: Connection, link: Link, payload: bytes, is_text: bool) -> None:
        """Send after the route's latency, never before a message sent earlier."""
        assert link.latency is not None and link.held is not None and self._loop is not None
        low, high = link.latency
        loop = self._loop
        due = max(loop.time() + random.uniform(low, high), link.ready_at)
        link.ready_at = due
        link.held.append((due, payload, is_text))
        link.held_bytes += len(payload)
        loop.call_at(due, self._write_due, conn, link)

    def _write_due(self, conn: Connection, link: Link) -> None:
        """Send, in the order they were sent, the held messages that are due. (Handles due at
        the same time may run in any order: the queue, not the clock, keeps the order.)"""
        assert link.held is not None and self._loop is not None
        now = self._loop.time()
        current = self._live.get(conn) is link and link.protocol.state is _OPEN
        held = link.held
        while held and held[0][0] <= now:
            _, payload, is_text = held.popleft()
            link.held_bytes -= len(payload)
            if current:
                link.send(payload, is_text)

    def _close_slow(self, conn: Connection, link: Link) -> None:
        """Close with 1008 a client that does not read; if it still does not read the close
        frame (queued behind what it has not read), cut it off."""
        if link.too_slow:
            return
        link.too_slow = True
        logger.warning(
            "closing %s %s: client too slow (over %d bytes unread)",
            conn.id,
            conn.request.path,
            MAX_PENDING_OUTPUT,
        )
        link.close(CLOSE_POLICY_VIOLATION, "Client too slow")
        assert self._loop is not None
        self._loop.call_later(SLOW_CLOSE_TIMEOUT, link.abort)

    def _log(self, effect: Log) -> None:
        """Log a scenario's log line or handler failure; failures go to the journal too, so
        that whoever reads it (a test run, the admin API) sees why a connection closed 1011."""
        _log(effect)
        if effect.error and self.journal is not None:
            self.journal.record(
                "error",
                connection=effect.conn.id if effect.conn else None,
                location=effect.location,
                message=effect.message,
            )

    # ---- for the admin API -----------------------------------------------------------------
    def connected_at(self, conn: Connection) -> float:
        """When the connection opened (time.time()); 0.0 once it is closed."""
        link = self._live.get(conn)
        return link.since if link is not None else 0.0

    async def close_connections(
        self, conns: Iterable[Connection], code: int, reason: str, within: float
    ) -> None:
        """Close these connections with ``code`` and ``reason``, and wait up to ``within``
        seconds for them to be closed (``on close`` run, the close journaled)."""
        ending = []
        for conn in conns:
            link = self._live.get(conn)
            if link is None:
                continue
            link.close(code, reason)
            ending.append(link.gone)
        if ending:
            await asyncio.wait(ending, timeout=within)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine on its own, kept referenced until it ends."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Opening:
    """A handshake on its way to be answered: what the server decided so far."""

    __slots__ = ("conn_id", "http_request", "params", "request", "route")

    def __init__(
        self,
        http_request: HttpRequest,
        route: Route,
        request: Request,
        params: dict[str, str],
        conn_id: str,
    ) -> None:
        self.http_request = http_request
        self.route = route
        self.request = request
        self.params = params
        self.conn_id = conn_id


def _check_admin_prefix(program: Program) -> None:
    """Raise UsageError for a route under the admin API's prefix."""
    for route in program.routes:
        if is_admin_path(route.path):
            raise UsageError(
                f"{route.location}: route {route.path} is under "
                f"{ADMIN_PREFIX}, which the admin API reserves: serve "
                "without --admin, or move the route"
            )


def _deflate_factories(program: Program) -> dict[int, list[ThresholdDeflateFactory]]:
    """The compression each route offers, by route index."""
    return {
        route.index: [ThresholdDeflateFactory(route.compression.threshold)]
        for route in program.routes
        if route.compression.enabled
    }


def _configure(
    protocol: ServerProtocol, route: Route, subprotocol: str | None, extensions: list[Any]
) -> None:
    """What differs between routes, set before the handshake is accepted."""
    protocol.available_extensions = extensions
    # The selection is made (in the client's order of preference): websockets' own rule, the
    # server's order and a refusal when none is offered, is not the route's.
    protocol.available_subprotocols = None if subprotocol is None else [Subprotocol(subprotocol)]
    protocol.max_message_size = route.max_message or DEFAULT_MAX_MESSAGE


def _log(effect: Log) -> None:
    """A scenario's log line or handler failure, with the file:line:col it came from."""
    who = f" [{effect.conn.id}]" if effect.conn is not None else ""
    level = logging.ERROR if effect.error else logging.INFO
    logger.log(level, "%s:%s %s", effect.location, who, effect.message)

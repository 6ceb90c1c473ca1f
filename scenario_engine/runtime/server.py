"""The websockets adapter: sockets and frames on one side, the engine's events on the other.

Everything the protocol needs is websockets': the opening handshake, framing, UTF-8 checks
(1007), size limits (1009), keepalive pings. Per route, before the handshake completes, this
module sets what differs between routes on the connection websockets created: the keepalive
interval, the size limit, and the compression extension offered.

Messages are written the way ``websockets.broadcast()`` writes them — encoded once, then
``protocol.send_text()`` and ``send_data()`` per client, without awaiting — with one addition:
a client that does not read is closed (1008) instead of being written to without bound.

Authentication runs in ``process_request``, before the connection is accepted: a rejection
with an HTTP status answers the handshake with that status; a rejection with a close code
completes the handshake and closes at once with that code, so that a browser's ``onclose``
sees it (browsers hide the status of a failed handshake from scripts).

With the admin API on, requests under its prefix are read by its own parser (any method, a
body) and answered by ``admin.Admin``; every other request is parsed by websockets as before.
With a journal, connects, rejections, messages and closes are recorded in it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http
import logging
import random
import socket
import time
import weakref
from collections.abc import Awaitable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import websockets
from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHeader
from websockets.headers import parse_subprotocol
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from ..errors import UsageError
from .admin import ADMIN_PREFIX, LOOPBACK, Admin, AdminRequest, Network, is_admin_path
from .clock import Clock
from .compression import ThresholdDeflateFactory
from .connection import Connection, Request, Timer, new_connection_id
from .effects import (
    Accepted,
    AuthWait,
    Broadcast,
    Close,
    Drop,
    Effect,
    Log,
    Ping,
    Pong,
    Rejected,
    Send,
    StartTimer,
    StopTimer,
    Unmatched,
    Verdict,
)
from .engine import Engine
from .journal import Journal, payload_fields
from .program import Program, Route
from .wire import AdminConnection, ScenarioConnection, peer_ip, raise_fragment_limit

__all__ = ["DEFAULT_MAX_MESSAGE", "LISTEN_BACKLOG", "ScenarioServer"]

logger = logging.getLogger("scenario_engine")

#: Incoming messages larger than this close the connection with 1009 unless the route sets
#: ``max message``. websockets' own default is 1 MiB; a mock should accept what a real
#: backend would, so the default is larger.
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
#: Pending connections the kernel queues before accept(): asyncio's default of 100 makes a
#: burst of clients wait for SYN retransmissions (a second or more) instead of being accepted.
LISTEN_BACKLOG = 4096
#: How long a client has to complete the opening handshake.
OPEN_TIMEOUT = 10.0
#: Most bytes queued for one client that does not read, beyond what the kernel buffers. A
#: broadcast has no backpressure (one slow client must not slow the others down), so a client
#: whose queue passes this is closed with 1008 instead of growing the server's memory.
MAX_PENDING_OUTPUT = 1024 * 1024
#: Characters of an unmatched message shown in its log line.
_UNMATCHED_SHOWN = 80
#: How long a client closed for being too slow gets to read the close frame.
SLOW_CLOSE_TIMEOUT = 2.0
CLOSE_POLICY_VIOLATION = 1008


@dataclass(slots=True)
class _Admitted:
    """What ``process_request`` decided about a connection, for its handler to act on."""

    route: Route
    request: Request
    params: dict[str, str]
    conn_id: str
    outcome: Accepted | Rejected


@dataclass(slots=True)
class _Live:
    """An open connection's socket, its handler task (to wait for its end) and when it
    opened."""

    socket: ServerConnection
    task: asyncio.Future[Any]
    since: float
    #: The route's latency (None: none); the messages it holds back, each with when it goes
    #: out (loop time, never before the one ahead of it); when the last one goes out.
    latency: tuple[float, float] | None = None
    held: collections.deque[tuple[float, bytes, bool]] = field(default_factory=collections.deque)
    held_bytes: int = 0
    ready_at: float = 0.0


class ScenarioServer:
    """Serves a Program over WebSocket. Use ``start()``, then ``close()``.

    ``journal``: record events in it (None: record nothing, at no cost). ``admin``: answer the
    admin API under ADMIN_PREFIX, to peers in ``admin_allow`` only; raises UsageError when a
    route is under that prefix.
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
    ) -> None:
        if admin:
            for route in program.routes:
                if is_admin_path(route.path):
                    raise UsageError(
                        f"{route.location}: route {route.path} is under "
                        f"{ADMIN_PREFIX}, which the admin API reserves: serve "
                        "without --admin, or move the route"
                    )
        self.engine = Engine(program)
        self.host = host
        self.port = port
        self.ssl = ssl
        self.max_connections = max_connections
        self.open_timeout = open_timeout
        self.journal = journal
        self.admin = Admin(self, admin_allow) if admin else None
        self._server: Server | None = None
        # Decisions of process_request waiting for the handshake to finish. Weak: when the
        # handshake fails after process_request (no Upgrade header, a timeout), websockets
        # never calls the handler, and the entry must not outlive the connection.
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, _Admitted] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._too_slow: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._live: dict[Connection, _Live] = {}
        # Handshakes whose auth block is waiting: they count toward the connection limits.
        self._authenticating: weakref.WeakKeyDictionary[ServerConnection, Route] = (
            weakref.WeakKeyDictionary()
        )
        #: When the engine's timers are due.
        self._timers = Clock(self._fire)
        self._deflate = {
            route.index: [ThresholdDeflateFactory(route.compression.threshold)]
            for route in program.routes
            if route.compression.enabled
        }

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        raise_fragment_limit()
        self._server = await websockets.serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            process_response=self._process_response,
            create_connection=(ScenarioConnection if self.admin is None else AdminConnection),
            # Per-route settings are applied in _process_request; these are the defaults.
            extensions=[],
            compression=None,
            ping_interval=None,
            max_size=DEFAULT_MAX_MESSAGE,
            open_timeout=self.open_timeout,
            ssl=self.ssl,
            backlog=LISTEN_BACKLOG,
            logger=logging.getLogger("scenario_engine.websockets"),
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self._apply_detached(self.engine.start())

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
        """Close every connection with 1001 (going away) and stop listening."""
        self._timers.close()
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    # ---- handshake -------------------------------------------------------------------------
    def _process_request(
        self, connection: ServerConnection, http_request: HttpRequest
    ) -> Response | Awaitable[Response | None] | None:
        if isinstance(http_request, AdminRequest):  # only made when the admin API is on
            assert self.admin is not None
            return self.admin.respond(peer_ip(connection), http_request)
        target = urlsplit(http_request.path)
        resolved = self.engine.resolve(target.path)
        if resolved is None:
            reason = f"No WebSocket route at {target.path}"
            self._reject("refused", connection, target.path, reason, status=404)
            return connection.respond(http.HTTPStatus.NOT_FOUND, reason + "\n")
        route, params = resolved
        refusal = self._refuse(route, http_request)
        if refusal is not None:
            status, reason = refusal
            self._reject("refused", connection, target.path, reason, status=status)
            return connection.respond(status, reason + "\n")
        offered = _offered_subprotocols(http_request.headers)
        selected = next((name for name in offered if name in route.subprotocols), None)
        if selected is None and route.subprotocol_required:
            reason = "Unsupported subprotocol: this route speaks " + ", ".join(route.subprotocols)
            if not offered:
                reason += " (none offered)"
            self._reject("refused", connection, target.path, reason, status=400)
            return connection.respond(http.HTTPStatus.BAD_REQUEST, reason + "\n")
        request = Request(
            path=target.path,
            query=dict(parse_qsl(target.query, keep_blank_values=True)),
            headers=_headers(http_request.headers),
            ip=peer_ip(connection),
            subprotocol=selected,
        )
        conn_id = new_connection_id()
        verdict, effects = self.engine.authenticate(route, request, params, conn_id)
        self._apply_detached(effects)
        if isinstance(verdict, AuthWait):
            return self._authenticate_later(connection, route, request, params, conn_id, verdict)
        return self._admit(connection, route, request, params, conn_id, verdict)

    async def _authenticate_later(
        self,
        connection: ServerConnection,
        route: Route,
        request: Request,
        params: dict[str, str],
        conn_id: str,
        verdict: Verdict,
    ) -> Response | None:
        """An auth block that waits: the handshake's answer comes when it is done (or never,
        when the open timeout passes first: a handshake that times out)."""
        self._authenticating[connection] = route
        try:
            while isinstance(verdict, AuthWait):
                await asyncio.sleep(verdict.delay)
                verdict, effects = self.engine.continue_auth(verdict)
                self._apply_detached(effects)
        finally:
            self._authenticating.pop(connection, None)
        return self._admit(connection, route, request, params, conn_id, verdict)

    def _admit(
        self,
        connection: ServerConnection,
        route: Route,
        request: Request,
        params: dict[str, str],
        conn_id: str,
        outcome: Accepted | Rejected,
    ) -> Response | None:
        if isinstance(outcome, Rejected) and outcome.status is not None:
            self._reject(
                "rejected", connection, request.path, outcome.reason, status=outcome.status
            )
            return connection.respond(outcome.status, outcome.reason + "\n")
        self._configure(connection, route, request.subprotocol)
        self._admitted[connection] = _Admitted(route, request, params, conn_id, outcome)
        return None

    def _process_response(
        self, connection: ServerConnection, http_request: HttpRequest, response: Response
    ) -> None:
        """A handshake that ends without upgrading (no Upgrade header, a bad key) must not
        keep its place among the pending connections counted by ``max connections``."""
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._admitted.pop(connection, None)

    def _refuse(self, route: Route, http_request: HttpRequest) -> tuple[int, str] | None:
        """Policy checks before authentication: allowed origins, connection limits."""
        if route.origins is not None:
            origin = http_request.headers.get("Origin")
            if origin not in route.origins:
                # Cross-site WebSocket hijacking: a page of another site must not use the
                # visitor's cookies to talk to this server.
                return http.HTTPStatus.FORBIDDEN, f"Origin not allowed: {origin or '(none)'}"
        # Handshakes admitted but not yet open count too: a burst must not overshoot a limit.
        # Only a route's own limit needs them scanned (a scan per handshake is quadratic in a
        # burst); the server's limit needs only their number.
        if route.max_connections is not None:
            on_route = (
                len(self.engine.connections[route.index])
                + sum(1 for a in self._admitted.values() if a.route is route)
                + sum(1 for r in self._authenticating.values() if r is route)
            )
            if on_route >= route.max_connections:
                return http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections on this route"
        if self.max_connections is not None:
            total = (
                sum(len(c) for c in self.engine.connections)
                + len(self._admitted)
                + len(self._authenticating)
            )
            if total >= self.max_connections:
                return http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections"
        return None

    def _reject(
        self,
        verb: str,
        connection: ServerConnection,
        path: str,
        reason: str,
        *,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        """Log and journal a handshake turned away: with an HTTP ``status``, or with a close
        ``code`` right after it. ``verb``: "refused" by the server (no route, an origin, a
        limit) or "rejected" by the scenario's ``auth``. The caller sends the answer."""
        how = f"HTTP {status}" if status is not None else f"close {code}"
        logger.info("%s %s %s: %s %s", verb, peer_ip(connection), path, how, reason)
        if self.journal is not None:
            answer = {"status": int(status)} if status is not None else {"code": code}
            self.journal.record("reject", path=path, reason=reason, **answer)

    def _configure(
        self, connection: ServerConnection, route: Route, subprotocol: str | None
    ) -> None:
        protocol = connection.protocol
        protocol.available_extensions = self._deflate.get(route.index, [])
        # The selection is made (in the client's order of preference): websockets' own rule,
        # the server's order and a refusal when none is offered, is not the route's.
        protocol.available_subprotocols = (
            None if subprotocol is None else [Subprotocol(subprotocol)]
        )
        protocol.max_message_size = route.max_message or DEFAULT_MAX_MESSAGE
        if route.heartbeat is not None:
            # websockets' keepalive: a ping every interval; no pong within the same interval
            # closes the connection with 1011 (keepalive ping timeout).
            connection.ping_interval = route.heartbeat
            connection.ping_timeout = route.heartbeat

    # ---- connection ------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        admitted = self._admitted.pop(ws, None)
        if admitted is None:  # the handshake failed after process_request
            return
        outcome = admitted.outcome
        journal = self.journal
        if isinstance(outcome, Rejected):
            # HTTP rejections were answered in _process_request: this one has a close code.
            code = outcome.code
            assert code is not None
            self._reject("rejected", ws, admitted.request.path, outcome.reason, code=code)
            await ws.close(code, outcome.reason)
            return
        engine = self.engine
        conn = engine.open(
            admitted.route, admitted.request, admitted.params, outcome.auth, admitted.conn_id
        )
        task = asyncio.current_task()
        assert task is not None
        self._live[conn] = _Live(ws, task, time.time(), conn.route.latency)
        logger.info("connect %s %s (%s)", conn.id, conn.request.path, conn.request.ip)
        if journal is not None:
            request = conn.request
            journal.record(
                "connect",
                connection=conn.id,
                route=conn.route.path,
                path=request.path,
                query=request.query,
                headers=request.headers,
            )
        try:
            if await self._apply(ws, engine.connect(conn)):
                async for message in ws:
                    if journal is not None:
                        journal.record("in", connection=conn.id, **payload_fields(message))
                    if not await self._apply(ws, engine.message(conn, message)):
                        break
                    # Messages already buffered are returned without suspending: give the
                    # other connections a turn, or one flooding client starves them all.
                    await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            del self._live[conn]
            # The close code the client saw: ours if we closed first, else theirs.
            sent = ws.protocol.close_sent
            code = sent.code if sent else ws.close_code
            if journal is not None:  # before what ``on close`` sends to the others
                journal.record(
                    "close",
                    connection=conn.id,
                    code=code,
                    reason=sent.reason if sent else ws.close_reason or "",
                )
            # on close may broadcast to the others (Send and Close to itself are dropped).
            self._apply_detached(engine.close(conn, ws.close_code, ws.close_reason or ""))
            logger.info("close %s %s code=%s", conn.id, conn.request.path, code)
        await ws.wait_closed()

    async def _apply(self, ws: ServerConnection, effects: Iterable[Effect]) -> bool:
        """Carry out the effects of one event of the connection on ``ws``, in order; False
        once it is being closed (or dropped)."""
        for effect in effects:
            if isinstance(effect, Send):
                self.deliver((effect.conn,), effect.data)
            elif isinstance(effect, Broadcast):
                self.deliver(effect.targets, effect.data)
            elif isinstance(effect, Close | Drop):
                await self._end(effect)
                return False
            elif isinstance(effect, Ping):
                await ws.ping(effect.data)
            elif isinstance(effect, Pong):
                await ws.pong(effect.data)
            else:
                self._apply_other(effect)
        return True

    def _apply_detached(self, effects: Iterable[Effect]) -> None:
        """Carry out effects that come from no message of their connection (a timer, the auth
        block, ``on close``): what must wait (a close, a ping) runs as a task of its own."""
        for effect in effects:
            if isinstance(effect, Send):
                self.deliver((effect.conn,), effect.data)
            elif isinstance(effect, Broadcast):
                self.deliver(effect.targets, effect.data)
            elif isinstance(effect, Close | Drop):
                self._spawn(self._end(effect))
            elif isinstance(effect, Ping | Pong):
                live = self._live.get(effect.conn)
                if live is not None:
                    send = live.socket.ping if isinstance(effect, Ping) else live.socket.pong
                    self._spawn(_ignore_closed(send(effect.data)))
            else:
                self._apply_other(effect)

    def _apply_other(self, effect: Effect) -> None:
        if isinstance(effect, Log):
            self._log(effect)
        elif isinstance(effect, StartTimer):
            self._start_timer(effect.timer)
        elif isinstance(effect, StopTimer):
            self._timers.stop(effect.timer)
        elif isinstance(effect, Unmatched):
            self._unmatched(effect)

    async def _end(self, effect: Close | Drop) -> None:
        """Close or cut a connection, after the messages its latency still holds back."""
        live = self._live.get(effect.conn)
        if live is None:
            return
        if live.latency is not None:
            await asyncio.sleep(max(0.0, live.ready_at - asyncio.get_running_loop().time()))
        if isinstance(effect, Drop):
            logger.info("drop %s %s", effect.conn.id, effect.conn.request.path)
            live.socket.transport.abort()
            # Once the transport has gone, the connection reads as closed abnormally (1006).
            await live.socket.wait_closed()
        else:
            await live.socket.close(effect.code, effect.reason)

    # ---- timers ----------------------------------------------------------------------------
    def _start_timer(self, timer: Timer) -> None:
        due = asyncio.get_running_loop().time() + timer.delay
        self._timers.start(timer, due, timer.interval or timer.delay)

    def _fire(self, timer: Timer, due: float) -> None:
        """A timer is due: the engine runs it; a repeating one is due again an interval after
        the time it was due (not after now: no drift), or an interval from now when the loop
        was late by more than that."""
        try:
            self._apply_detached(self.engine.fire(timer))
        except Exception:  # a bug of ours must not stop the clock of everyone else
            logger.exception("timer %r failed", timer)
        if timer.alive and timer.interval is not None and timer not in self._timers:
            now = asyncio.get_running_loop().time()
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

    def deliver(self, targets: Collection[Connection], data: str | bytes) -> int:
        """Write one message to each target, encoded once, as websockets.broadcast() does;
        the number of targets it was written to.

        No await: a message is queued on each connection at once (sending to one client never
        waits for another), and a client whose queue passes MAX_PENDING_OUTPUT is closed with
        1008 instead of being written to.
        """
        payload = data.encode() if isinstance(data, str) else data
        is_text = isinstance(data, str)
        journal = self.journal
        # With a journal, the clients to write to are collected first and recorded before
        # anything is written: once a client has the message, whoever reads the journal finds
        # it there. Without one, each client is written to as soon as it is checked: this loop
        # runs once per message and recipient, so it builds no list and calls no helper.
        ready: list[tuple[Connection, ServerConnection | None]] | None = (
            None if journal is None else []
        )
        count = 0
        lives = self._live
        for conn in targets:
            live = lives.get(conn)
            if live is None:
                continue
            ws = live.socket
            if ws.protocol.state is not State.OPEN:
                continue
            # ``paused`` is set past websockets' write limit (32 KiB): only then measure.
            if ws.paused and ws.transport.get_write_buffer_size() > MAX_PENDING_OUTPUT:
                self._close_slow(conn, ws)
                continue
            if live.latency is not None:
                if live.held_bytes + len(payload) > MAX_PENDING_OUTPUT:
                    # What latency holds back counts toward the bound on queued output.
                    self._close_slow(conn, ws)
                    continue
                self._write_later(conn, live, payload, is_text)
                if ready is not None:
                    ready.append((conn, None))
                else:
                    count += 1
                continue
            if ready is not None:
                ready.append((conn, ws))
                continue
            # _write, inline.
            try:
                if is_text:
                    ws.protocol.send_text(payload)
                else:
                    ws.protocol.send_binary(payload)
                ws.send_data()
            except Exception as err:  # the transport is going away: the close follows
                logger.warning("could not write to %s: %s", conn.id, err)
                continue
            count += 1
        if ready:
            assert journal is not None
            journal.record(
                "out", connections=[conn.id for conn, _ in ready], **payload_fields(data)
            )
            # No await since the record: the clients recorded are still those written to.
            for conn, socket_ in ready:
                count += 1 if socket_ is None else _write(conn, socket_, payload, is_text)
        return count

    def _write_later(self, conn: Connection, live: _Live, payload: bytes, is_text: bool) -> None:
        """Write after the route's latency, never before a message sent earlier."""
        assert live.latency is not None
        low, high = live.latency
        loop = asyncio.get_running_loop()
        due = max(loop.time() + random.uniform(low, high), live.ready_at)
        live.ready_at = due
        live.held.append((due, payload, is_text))
        live.held_bytes += len(payload)
        loop.call_at(due, self._write_due, conn, live)

    def _write_due(self, conn: Connection, live: _Live) -> None:
        """Write, in the order they were sent, the held messages that are due. (Handles due at
        the same time may run in any order: the queue, not the clock, keeps the order.)"""
        now = asyncio.get_running_loop().time()
        current = self._live.get(conn) is live and live.socket.protocol.state is State.OPEN
        while live.held and live.held[0][0] <= now:
            _, payload, is_text = live.held.popleft()
            live.held_bytes -= len(payload)
            if current:
                _write(conn, live.socket, payload, is_text)

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

    def connected_at(self, conn: Connection) -> float:
        """When the connection opened (time.time()); 0.0 once it is closed."""
        live = self._live.get(conn)
        return live.since if live is not None else 0.0

    async def close_connections(
        self, conns: Iterable[Connection], code: int, reason: str, within: float
    ) -> None:
        """Close these connections with ``code`` and ``reason``, and wait up to ``within``
        seconds for them to be closed (``on close`` run, the close journaled)."""
        handlers = []
        for conn in conns:
            live = self._live.get(conn)
            if live is None:
                continue
            self._spawn(live.socket.close(code, reason))
            handlers.append(live.task)
        if handlers:
            await asyncio.wait(handlers, timeout=within)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine on its own, kept referenced until it ends."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _close_slow(self, conn: Connection, ws: ServerConnection) -> None:
        if ws in self._too_slow:
            return
        self._too_slow.add(ws)
        logger.warning(
            "closing %s %s: client too slow (over %d bytes unread)",
            conn.id,
            conn.request.path,
            MAX_PENDING_OUTPUT,
        )
        self._spawn(self._drop_slow(ws))

    @staticmethod
    async def _drop_slow(ws: ServerConnection) -> None:
        """Close with 1008; a client that still does not read is cut off.

        websockets' close() first waits for the output queued before the close frame to drain,
        which a client that does not read never allows: the timeout bounds the whole close.
        """
        try:
            await asyncio.wait_for(
                ws.close(CLOSE_POLICY_VIOLATION, "Client too slow"), SLOW_CLOSE_TIMEOUT
            )
        except TimeoutError:
            ws.transport.abort()


def _write(conn: Connection, ws: ServerConnection, payload: bytes, is_text: bool) -> bool:
    """Queue one message on an open connection and start sending it; False if the transport
    refused it (it is going away: the close follows)."""
    try:
        if is_text:
            ws.protocol.send_text(payload)
        else:
            ws.protocol.send_binary(payload)
        ws.send_data()
    except Exception as err:
        logger.warning("could not write to %s: %s", conn.id, err)
        return False
    return True


def _log(effect: Log) -> None:
    """A scenario's log line or handler failure, with the file:line:col it came from."""
    who = f" [{effect.conn.id}]" if effect.conn is not None else ""
    level = logging.ERROR if effect.error else logging.INFO
    logger.log(level, "%s:%s %s", effect.location, who, effect.message)


async def _ignore_closed(sending: Awaitable[Any]) -> None:
    """Send a ping or pong unless the connection has closed meanwhile."""
    with contextlib.suppress(ConnectionClosed):
        await sending


def _offered_subprotocols(headers: Headers) -> list[str]:
    """The subprotocols a handshake offers, in the client's order of preference (none when
    the header is malformed: websockets refuses such a handshake anyway)."""
    try:
        return [
            name
            for value in headers.get_all("Sec-WebSocket-Protocol")
            for name in parse_subprotocol(value)
        ]
    except InvalidHeader:
        return []


def _headers(headers: Headers) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in headers.raw_items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged

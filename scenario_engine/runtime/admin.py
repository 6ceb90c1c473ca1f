"""The admin API: look at a running mock and act on it, over plain HTTP on the WebSocket port.

Requests under ``/__admin`` (the prefix WireMock uses for the same purpose) are not WebSocket
handshakes: they may use any method and carry a body of up to ``MAX_BODY`` bytes, which
websockets' own request parser refuses. The server's protocol reads them with ``AdminRequest``
instead and hands them to ``Admin.respond``; the answer is JSON and the connection closes after
it. Only peers in the allowed networks (loopback unless the server is told otherwise) get in.

A browser on this machine can be made to send requests to the API by any page it visits, so
the network check alone is not enough. ``Admin.refusal`` holds every request to three more
checks (docs/admin.md, "Security model"): ``Host`` must name this server (a page of
``evil.example`` whose name is rebound to 127.0.0.1 sends ``Host: evil.example``: DNS
rebinding); a request that changes something, or opens a WebSocket, must come from this
server's own origin or from no browser at all (``Origin``, ``Sec-Fetch-Site``); and a change
must be sent as ``Content-Type: application/json``, which no cross-site form or "simple" request
can say. Clients that are not browsers send no ``Origin`` and name the host they connect to, so
they pass the first two; their changes say the content type.

``Admin``'s other methods are the same operations for Python callers (the pytest fixture).
Every endpoint is described in docs/admin.md.

In a cluster (``serve --backplane``), the server gives its ``Admin`` an ``Everywhere``
(cluster_admin.py): the HTTP endpoints then answer for every process of the mock, each doing
its part with the operations here.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import http
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import RequestLineTooLong
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.http11 import Request, Response, parse_headers, parse_line
from websockets.streams import StreamReader

from ..errors import AdminError, EvaluationError
from ..expr.values import decode_json, encode, type_name
from ..language.limits import MAX_CLOSE_REASON_BYTES
from .cluster import Cluster
from .connection import Connection
from .engine import Engine
from .journal import Journal, timestamp
from .program import Route
from .state import plain, replace_all

__all__ = [
    "ADMIN_PREFIX",
    "ANY_HOST",
    "LOOPBACK",
    "MAX_BODY",
    "Admin",
    "AdminRequest",
    "Everywhere",
    "Network",
    "Served",
    "check_close",
    "error_response",
    "is_admin_path",
]

ADMIN_PREFIX = "/__admin"
#: Largest request body read; a larger one is answered 413 without being read.
MAX_BODY = 1024 * 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Who may use the admin API unless told otherwise: this machine only.
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
#: The close code of ``reset``: "service restart", so a client knows to reconnect.
CLOSE_SERVICE_RESTART = 1012
#: How long an admin request waits for the connections it closes to finish closing (their
#: ``on close`` handlers run, their events are journaled) before answering anyway.
CLOSE_WAIT = 2.0
#: Methods that only read: a cross-site page cannot read their answers (no CORS headers), so
#: they need no Origin check, unless they open a WebSocket. Any other method is taken to change
#: the mock.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The name in ``admin_hosts`` (``serve --admin-host '*'``) that lifts the Host check.
ANY_HOST = "*"
#: The only media type of a request that changes the mock: a page of another site cannot send
#: it without a CORS preflight, which this server never grants.
JSON_TYPE = "application/json"
#: Sec-Fetch-Site values of requests that no page of another site made: a page of this origin,
#: or none at all (an address typed, a bookmark).
_OWN_FETCHES = frozenset({"same-origin", "none"})
#: A Host header (or the part of an Origin after ``scheme://``): a bracketed IPv6 address or a
#: name without colons, and an optional port.
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[^\s:\[\]/?#@]+))(?::(?P<port>\d*))?")

logger = logging.getLogger("scenario_engine")


def is_admin_path(path: str) -> bool:
    """Whether a request target (path and query) is under ADMIN_PREFIX."""
    return path == ADMIN_PREFIX or path.startswith((ADMIN_PREFIX + "/", ADMIN_PREFIX + "?"))


class Served(Protocol):
    """What the admin API acts on: a running server (the connection layer implements it)."""

    engine: Engine
    journal: Journal | None
    #: The backplane it shares with other processes (``serve --backplane``), or None.
    cluster: Cluster | None
    open_timeout: float
    #: The address it listens on, as it was given (a name, an IP, or a wildcard address).
    host: str

    @property
    def scheme(self) -> str:
        """``ws``, or ``wss`` with TLS."""
        ...

    def url(self, path: str) -> str:
        """The URL of ``path`` on this server, naming it as it prints its routes."""
        ...

    def deliver(self, targets: Collection[Connection], data: str | bytes) -> int:
        """Write one message to each target; the number written to."""
        ...

    def connected_at(self, conn: Connection) -> float:
        """When the connection opened (time.time()); 0.0 once it is closed."""
        ...

    async def close_connections(
        self, conns: Iterable[Connection], code: int, reason: str, within: float
    ) -> None:
        """Close these connections, waiting up to ``within`` seconds for them to be closed."""
        ...


@dataclass
class AdminRequest(Request):
    """An HTTP request to the admin API, with its body; ``body`` is None when it was larger
    than MAX_BODY (and so left unread)."""

    body: bytes | None = b""

    @classmethod
    def read(cls, reader: StreamReader) -> Generator[None, None, AdminRequest]:
        """Parse a request as websockets' ``Request.parse`` does, then read its body.

        Raises what ``Request.parse`` raises on a malformed request, and NotImplementedError
        for a chunked body (send Content-Length).
        """
        line = yield from parse_line(reader.read_line, RequestLineTooLong)
        try:
            raw_method, raw_path, raw_protocol = line.split(b" ", 2)
        except ValueError:
            raise ValueError(f"invalid HTTP request line: {line!r}") from None
        if raw_protocol not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise ValueError(f"unsupported protocol: {raw_protocol!r}")
        headers = yield from parse_headers(reader.read_line)
        if "Transfer-Encoding" in headers:
            raise NotImplementedError("transfer codings aren't supported")
        lengths = set(headers.get_all("Content-Length"))
        if len(lengths) > 1 or not all(_is_number(value) for value in lengths):
            raise ValueError(f"invalid Content-Length: {sorted(lengths)}")
        length = int(lengths.pop()) if lengths else 0
        body = None if length > MAX_BODY else bytes((yield from reader.read_exact(length)))
        return cls(
            raw_path.decode("ascii"),
            headers,
            raw_method.decode("ascii"),
            raw_protocol.decode("ascii"),
            body=body,
        )


_Handler = Callable[[dict[str, str], bytes], Awaitable[tuple[int, object]]]


class Everywhere(Protocol):
    """The admin operations across every process of a cluster (cluster_admin.py): each
    answer as the endpoint gives it, with how many processes did not answer (``missing``)."""

    async def health(self) -> dict[str, Any]: ...
    async def connections(self) -> dict[str, Any]: ...
    async def send(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def close(self, connection: str, code: int, reason: str) -> dict[str, Any]: ...
    async def session(self, connection: str) -> dict[str, Any]: ...
    async def set_session(self, connection: str, value: Any) -> dict[str, Any]: ...
    async def reset(self) -> dict[str, Any]: ...
    async def state(self, file: str | None) -> tuple[str, dict[str, Any]]: ...
    async def set_state(self, value: Any, file: str | None) -> tuple[str, dict[str, Any]]: ...
    async def journal(
        self, since: str | None, connection: str | None, limit: int | None
    ) -> dict[str, Any]: ...
    async def clear_journal(self) -> dict[str, Any]: ...


class Admin:
    """The admin operations on one server, and their HTTP spelling.

    ``allow``: the networks whose peers may use the API over HTTP. ``hosts``: names, besides
    this server's own, that a request may give in ``Host`` (ANY_HOST: any name).

    Every method runs on the server's event loop.
    """

    def __init__(
        self, server: Served, allow: Sequence[Network] = LOOPBACK, hosts: Iterable[str] = ()
    ) -> None:
        self.server = server
        self.allow = tuple(allow)
        self.hosts = tuple(dict.fromkeys(_normal_name(name) for name in hosts))
        #: In a cluster: the endpoints answer for every process through it.
        self.everywhere: Everywhere | None = None

    @property
    def stamp(self) -> dict[str, Any]:
        """What names this process in a cluster (``worker``, ``process``), as its journal
        stamps every event: each connection listed says it too. Empty for a lone server."""
        journal = self.server.journal
        return dict(journal.stamp) if journal is not None else {}

    # ---- operations ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "status": "ok",
            "routes": [r.path for r in self.server.engine.program.routes],
        }
        if self.server.cluster is not None:
            answer["backplane"] = self.server.cluster.status()
        return answer

    def connections(self) -> list[dict[str, Any]]:
        """Every open connection, oldest first."""
        listed = [(self.server.connected_at(conn), conn) for conn in self._all_connections()]
        listed.sort(key=lambda pair: pair[0])
        stamp = self.stamp
        return [
            {
                "id": conn.id,
                "route": conn.route.path,
                "path": conn.request.path,
                "query": conn.request.query,
                "ip": conn.request.ip,
                "subprotocol": conn.request.subprotocol,
                "rooms": sorted(conn.rooms),
                "session": plain(conn.session.data),
                "connectedAt": timestamp(since),
                **stamp,
            }
            for since, conn in listed
        ]

    def files(self) -> list[str]:
        """The scenario files served that have routes (the scopes of ``state``), in order."""
        return list(dict.fromkeys(route.file for route in self.server.engine.program.routes))

    def state(self, file: str | None = None) -> dict[str, Any]:
        """A copy of one file's ``state``; ``file`` may be left out when only one file has
        routes."""
        return _copy(self.server.engine.state.data(self.file(file)))

    def set_state(self, value: Any, file: str | None = None) -> dict[str, Any]:
        """Make ``value`` (an object) the whole ``state`` of one file; the new state."""
        scope = self.file(file)
        _check_object(value, "state")
        try:
            self.server.engine.state.replace(scope, value)
        except EvaluationError as err:
            raise AdminError(400, f"cannot replace the state: {err}") from None
        return self.state(scope)

    def session(self, connection: str) -> dict[str, Any]:
        """A copy of one connection's ``session``."""
        return _copy(self._connection(connection).session.data)

    def set_session(self, connection: str, value: Any) -> dict[str, Any]:
        """Make ``value`` (an object, within the route's ``max session``) the whole
        ``session`` of one connection; the new session."""
        session = self._connection(connection).session
        _check_object(value, "session")
        try:
            replace_all(session, value)
        except EvaluationError as err:
            raise AdminError(
                400, f"cannot replace the session: {err} (the route's max session)"
            ) from None
        return _copy(session.data)

    def send(self, body: Mapping[str, Any]) -> int:
        """Push a message; ``body`` as in ``POST /__admin/send``. The number of clients it was
        written to."""
        unknown = sorted(set(body) - {"message", "binary", "connection", "room", "route"})
        if unknown:
            raise AdminError(
                400,
                f"unknown field {unknown[0]!r} (expected message or binary, "
                "and connection, room or route)",
            )
        return self.server.deliver(self._targets(body), _message(body))

    async def close(self, connection: str, code: int = 1000, reason: str = "") -> None:
        """Close one connection with ``code`` and ``reason``."""
        check_close(code, reason)
        conn = self._connection(connection)
        await self.server.close_connections([conn], code, reason, self.close_wait())

    async def reset(self, state: bool = True) -> int:
        """Close every connection with 1012 (service restart), empty every room, restore
        every file's initial ``state`` (unless ``state`` is false: a cluster resets its
        shared state once, not once per process), clear the journal; the number of
        connections closed."""
        conns = self._all_connections()
        await self.server.close_connections(
            conns, CLOSE_SERVICE_RESTART, "Service restart", self.close_wait()
        )
        engine = self.server.engine
        for conn in conns:  # those still closing: their rooms must be empty from now on
            engine.leave_rooms(conn)
        # After the closes: what their ``on close`` handlers wrote must not survive the reset.
        if state:
            for scope in self.state_scopes():
                engine.state.reset(scope)
        if self.server.journal is not None:
            self.server.journal.clear()
        return len(conns)

    def state_scopes(self) -> list[str]:
        """Every file that has a ``state``: those served, and those a reload left behind."""
        return list(dict.fromkeys([*self.server.engine.state.scopes(), *self.files()]))

    def close_wait(self) -> float:
        """How long a close waits for the connections it closes to be closed."""
        # The admin request itself runs within the server's opening-handshake timeout.
        return min(CLOSE_WAIT, self.server.open_timeout / 2)

    def _all_connections(self) -> list[Connection]:
        return [conn for conns in self.server.engine.connections for conn in conns]

    def _connection(self, conn_id: object) -> Connection:
        if not isinstance(conn_id, str):
            raise AdminError(400, '"connection" must be a connection id (a string)')
        for conn in self._all_connections():
            if conn.id == conn_id:
                return conn
        raise AdminError(404, f"no open connection {conn_id!r}")

    def file(self, file: str | None) -> str:
        """The scope of ``state`` that ``file`` (a query's ``file``) names; AdminError when it
        names none, or is left out when several files have routes."""
        files = self.files()
        if file is None:
            if len(files) == 1:
                return files[0]
            if not files:
                raise AdminError(404, "this server serves no routes, so no state")
            raise AdminError(
                400,
                "state belongs to a scenario file and this server serves several: say which "
                f'with "file" ({", ".join(files)})',
            )
        if file not in files:
            raise AdminError(404, f"no scenario file {file!r} (files: {', '.join(files)})")
        return file

    def _route(self, path: object) -> Route:
        routes = self.server.engine.program.routes
        for route in routes:
            if route.path == path:
                return route
        raise AdminError(404, f"no route {path!r} (routes: {', '.join(r.path for r in routes)})")

    def _targets(self, body: Mapping[str, Any]) -> list[Connection]:
        engine = self.server.engine
        connection, room, route = body.get("connection"), body.get("room"), body.get("route")
        if connection is not None:
            if room is not None or route is not None:
                raise AdminError(400, 'give "connection" alone, or "room" and/or "route"')
            return [self._connection(connection)]
        if room is not None:
            if not isinstance(room, str):
                raise AdminError(400, '"room" must be a room name (a string)')
            if route is None and len(engine.program.routes) > 1:
                raise AdminError(
                    400,
                    'rooms belong to a route and this server has several: say which with "route"',
                )
            chosen = self._route(route) if route is not None else engine.program.routes[0]
            return list(engine.rooms.members(chosen.index, room))
        if route is not None:
            return list(engine.connections[self._route(route).index])
        raise AdminError(400, 'say whom to send to: "connection", "room" or "route"')

    # ---- HTTP ------------------------------------------------------------------------------
    async def respond(self, peer: str | None, request: AdminRequest) -> Response:
        """The answer to one admin request from the client at IP address ``peer``."""
        refused = self.refusal(peer, request, changes_state=False)  # by its method
        if refused is not None:
            status, response = refused.status, error_response(refused)
        else:
            status, answer, allow = await self._dispatch(request)
            response = _json_response(status, answer, allow)
        logger.info("admin %s %s %s: %d", peer, request.method, request.path, status)
        return response

    def refusal(
        self, peer: str | None, request: Request, *, changes_state: bool
    ) -> AdminError | None:
        """Why a request to the admin API must not be answered, as the error to answer it
        with (``error_response`` turns it into the HTTP response); None when it may be.

        ``peer`` is the client's IP address (None: unknown, refused). ``request`` is any
        websockets ``Request``: an ``AdminRequest``, or the handshake of a WebSocket under
        ADMIN_PREFIX such as the inspector's live feed. ``changes_state``: whether answering
        it changes the mock; a method other than GET, HEAD and OPTIONS counts as a change
        whatever it says. A handshake of the live feed is checked with::

            refused = admin.refusal(link.peer, request, changes_state=False)
            if refused is not None:
                ...  # answer error_response(refused) instead of 101

        The checks, in this order (docs/admin.md, "Security model"):

        - the peer is in the allowed networks (403);
        - ``Host`` names this server: ``localhost``, a loopback address, the address it
          listens on (with a wildcard address, also this machine's name), or one of ``hosts``
          (403: the guard against DNS rebinding);
        - a change, and a WebSocket handshake (``Upgrade: websocket``: a page can read what a
          WebSocket sends it, whatever its origin), come from this server's own origin or from
          no browser: ``Origin``, when sent, is this server's scheme, host and port as ``Host``
          gives them, and ``Sec-Fetch-Site``, when sent, is ``same-origin`` or ``none`` (403:
          the guard against cross-site requests and cross-site WebSocket hijacking);
        - a change is sent with ``Content-Type: application/json``, with a body or without
          (415): no form and no other request a page may send without a CORS preflight can
          say that, and this server answers no preflight with a permission.
        """
        if not self._allowed(peer):
            return AdminError(
                403,
                f"the admin API is not open to {peer or 'an unknown address'}, only to "
                f"{_either(map(str, self.allow))}"
                " (serve --admin-allow CIDR opens it to a network)",
            )
        hosts = request.headers.get_all("Host")
        host = _authority(hosts[0]) if len(hosts) == 1 else None
        if host is None or not self._names_this_server(host[0]):
            shown = ", ".join(name or "(empty)" for name in hosts) or "(none)"
            names = ["localhost", "a loopback address", self._listening(), *self.hosts]
            return AdminError(
                403,
                f"Host {shown} is not a name of this server: the admin API answers requests "
                f"to {_either(dict.fromkeys(names))} (a guard against DNS rebinding; serve "
                "--admin-host NAME adds a name)",
            )
        changes_state = changes_state or request.method not in SAFE_METHODS
        websocket = _opens_websocket(request)
        if changes_state or websocket:
            refused = self._cross_site(request, hosts[0], host, websocket)
            if refused is not None:
                return refused
        if changes_state:
            types = request.headers.get_all("Content-Type")
            if len(types) != 1 or types[0].partition(";")[0].strip().lower() != JSON_TYPE:
                return AdminError(
                    415,
                    f"Content-Type {', '.join(types) or '(none)'} refused: a {request.method} "
                    f"to the admin API must say Content-Type: {JSON_TYPE}, with a body or "
                    f"without (curl -H 'Content-Type: {JSON_TYPE}'), which a page of another "
                    "site cannot send",
                )
        return None

    def _cross_site(
        self, request: Request, shown: str, host: tuple[str, int | None], websocket: bool
    ) -> AdminError | None:
        """Why ``request``, which changes the mock or opens a WebSocket (``websocket``), looks
        sent by a page of another site (``host``: its Host header, ``shown`` as it was sent,
        and parsed)."""
        what = "a WebSocket" if websocket else request.method
        own = f"{self._http_scheme()}://{shown}"
        origins = request.headers.get_all("Origin")
        if origins and not (len(origins) == 1 and self._same_origin(origins[0], host)):
            return AdminError(
                403,
                f"cross-site request refused: Origin {', '.join(origins)} is not this "
                f"server's ({own}); {what} is taken only from pages of {own} or from clients "
                "that send no Origin",
            )
        fetch_sites = request.headers.get_all("Sec-Fetch-Site")
        if any(site.strip().lower() not in _OWN_FETCHES for site in fetch_sites):
            return AdminError(
                403,
                f"cross-site request refused: Sec-Fetch-Site {', '.join(fetch_sites)}; "
                f"{what} is taken only from pages of {own} or from clients that are not "
                "browsers",
            )
        return None

    def _same_origin(self, origin: str, host: tuple[str, int | None]) -> bool:
        """Whether an Origin header names the scheme of this server and the host and port
        that the request's Host header names (a port left out is the scheme's default)."""
        scheme, separator, rest = origin.partition("://")
        theirs = _authority(rest) if separator else None
        if theirs is None or scheme.lower() != self._http_scheme():
            return False
        default = 443 if scheme.lower() == "https" else 80
        return theirs[0] == host[0] and (theirs[1] or default) == (host[1] or default)

    def _http_scheme(self) -> str:
        return "https" if self.server.scheme == "wss" else "http"

    def _listening(self) -> str:
        return urlsplit(self.server.url("")).hostname or self.server.host

    def _names_this_server(self, name: str) -> bool:
        """Whether a name from a Host header (without port, normalized by ``_authority``)
        names this server: localhost, a loopback address, the address it listens on (or, on
        every interface, the name of this machine, as the URLs it prints say), or one of the
        names it was given."""
        if name == "localhost" or ANY_HOST in self.hosts or name in self.hosts:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            address = None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address is not None and address.is_loopback:
            return True
        return name in (_normal_name(self.server.host), _normal_name(self._listening()))

    def _allowed(self, peer: str | None) -> bool:
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
        return any(address in network for network in self.allow)

    async def _dispatch(self, request: AdminRequest) -> tuple[int, object, Sequence[str]]:
        target = urlsplit(request.path)
        segments = [unquote(s) for s in target.path[len(ADMIN_PREFIX) :].strip("/").split("/")]
        methods = self._endpoint(segments)
        if methods is None:
            return 404, {"error": f"no admin endpoint {target.path}"}, ()
        handler = methods.get(request.method)
        if handler is None:
            return (
                405,
                {
                    "error": f"{request.method} not allowed on {target.path}; use "
                    f"{' or '.join(methods)}"
                },
                tuple(methods),
            )
        if request.body is None:
            return 413, {"error": f"request body larger than {MAX_BODY} bytes"}, ()
        query = dict(parse_qsl(target.query, keep_blank_values=True))
        try:
            status, answer = await handler(query, request.body)
        except AdminError as err:
            return err.status, {"error": err.message}, ()
        return status, answer, ()

    def _endpoint(self, segments: list[str]) -> dict[str, _Handler] | None:
        match segments:
            case ["health"]:
                return {"GET": self._get_health}
            case ["connections"]:
                return {"GET": self._get_connections}
            case ["connections", conn_id]:
                return {"DELETE": functools.partial(self._delete_connection, conn_id)}
            case ["connections", conn_id, "session"]:
                return {
                    "GET": functools.partial(self._get_session, conn_id),
                    "PUT": functools.partial(self._put_session, conn_id),
                }
            case ["state"]:
                return {"GET": self._get_state, "PUT": self._put_state}
            case ["journal"]:
                return {"GET": self._get_journal, "DELETE": self._delete_journal}
            case ["send"]:
                return {"POST": self._post_send}
            case ["reset"]:
                return {"POST": self._post_reset}
        return None

    async def _get_health(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        if self.everywhere is not None:
            return 200, await self.everywhere.health()
        return 200, self.health()

    async def _get_connections(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        if self.everywhere is not None:
            return 200, await self.everywhere.connections()
        return 200, {"connections": self.connections()}

    async def _delete_connection(
        self, conn_id: str, query: dict[str, str], body: bytes
    ) -> tuple[int, object]:
        code = _int_param(query, "code")
        code = 1000 if code is None else code
        reason = query.get("reason", "")
        answer = {"closed": conn_id, "code": code, "reason": reason}
        if self.everywhere is not None:
            return 200, {**answer, **await self.everywhere.close(conn_id, code, reason)}
        await self.close(conn_id, code, reason)
        return 200, answer

    async def _get_session(
        self, conn_id: str, query: dict[str, str], body: bytes
    ) -> tuple[int, object]:
        if self.everywhere is not None:
            return 200, await self.everywhere.session(conn_id)
        return 200, {"connection": conn_id, "session": self.session(conn_id)}

    async def _put_session(
        self, conn_id: str, query: dict[str, str], body: bytes
    ) -> tuple[int, object]:
        value = _json(body)
        if self.everywhere is not None:
            return 200, await self.everywhere.set_session(conn_id, value)
        return 200, {"connection": conn_id, "session": self.set_session(conn_id, value)}

    async def _get_state(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        file = query.get("file") or None
        if self.everywhere is not None:
            scope, state = await self.everywhere.state(file)
            return 200, {"file": scope, "state": state}
        scope = self.file(file)
        return 200, {"file": scope, "state": self.state(scope)}

    async def _put_state(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        file, value = query.get("file") or None, _json(body)
        if self.everywhere is not None:
            scope, state = await self.everywhere.set_state(value, file)
            return 200, {"file": scope, "state": state}
        scope = self.file(file)
        return 200, {"file": scope, "state": self.set_state(value, scope)}

    async def _get_journal(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        connection = query.get("connection") or None
        limit = _int_param(query, "limit")
        if self.everywhere is not None:
            self._journal()
            return 200, await self.everywhere.journal(query.get("since"), connection, limit)
        journal = self._journal()
        events = journal.events(
            since=_int_param(query, "since") or 0, connection=connection, limit=limit
        )
        return 200, {"events": events, "last": journal.last_seq}

    async def _delete_journal(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        journal = self._journal()
        if self.everywhere is not None:
            return 200, await self.everywhere.clear_journal()
        journal.clear()
        return 200, {"cleared": True, "last": journal.last_seq}

    async def _post_send(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        message = _json_object(body)
        if self.everywhere is not None:
            return 200, await self.everywhere.send(message)
        return 200, {"delivered": self.send(message)}

    async def _post_reset(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        if self.everywhere is not None:
            return 200, await self.everywhere.reset()
        return 200, {"closed": await self.reset()}

    def _journal(self) -> Journal:
        if self.server.journal is None:
            raise AdminError(404, "this server keeps no journal")
        return self.server.journal


def check_close(code: int, reason: str) -> None:
    """Raise AdminError (400) for a close code a server may not send, or a reason too long."""
    if not (code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000):
        raise AdminError(
            400, f"close code {code} cannot be sent (1000–1003, 1007–1014 or 3000–4999)"
        )
    if len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
        raise AdminError(400, f"close reason longer than {MAX_CLOSE_REASON_BYTES} bytes")


def _message(body: Mapping[str, Any]) -> str | bytes:
    """The frame to send: ``message`` as the ``send`` action encodes values (a string as it
    is, anything else as JSON), or ``binary`` (base64 text, or bytes from Python)."""
    if ("message" in body) == ("binary" in body):
        raise AdminError(400, 'give either "message" (any JSON value) or "binary" (base64)')
    if "message" in body:
        try:
            return encode(body["message"])
        except EvaluationError as err:
            raise AdminError(400, f"cannot send this message: {err}") from None
    binary = body["binary"]
    if isinstance(binary, bytes):
        return binary
    if not isinstance(binary, str):
        raise AdminError(400, '"binary" must be base64 text')
    try:
        return base64.b64decode(binary, validate=True)
    except binascii.Error:
        raise AdminError(400, '"binary" is not valid base64') from None


def _json(body: bytes) -> Any:
    try:
        return decode_json(body.decode("utf-8"))  # strict: no NaN, no Infinity
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise AdminError(400, f"the body is not JSON: {err}") from None


def _json_object(body: bytes) -> dict[str, Any]:
    value = _json(body)
    if not isinstance(value, dict):
        raise AdminError(400, "the body must be a JSON object")
    return value


def _authority(text: str) -> tuple[str, int | None] | None:
    """The name (as ``_normal_name`` gives it) and port of a Host header, or of an Origin
    after ``scheme://``; None when it is not one."""
    match = _HOST.fullmatch(text)
    if match is None:
        return None
    port = match["port"]
    return _normal_name(match["ipv6"] or match["name"]), int(port) if port else None


def _normal_name(name: str) -> str:
    """A host name in one spelling: lower case, an IPv6 address without brackets and in its
    shortest form (``[0:0::1]`` and ``::1`` are the same host)."""
    name = name.lower()
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return name


def _opens_websocket(request: Request) -> bool:
    return any(
        token.strip().lower() == "websocket"
        for value in request.headers.get_all("Upgrade")
        for token in value.split(",")
    )


def _either(items: Iterable[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    listed = list(items)
    return ", ".join(listed[:-1]) + " or " + listed[-1] if len(listed) > 1 else "".join(listed)


def _copy(data: Mapping[str, Any]) -> dict[str, Any]:
    """Plain JSON data sharing nothing with ``data``: the caller may be on another thread."""
    copied: dict[str, Any] = plain(data)
    return copied


def _check_object(value: Any, label: str) -> None:
    if not isinstance(value, Mapping):
        raise AdminError(400, f"the {label} must be a JSON object, not {type_name(value)}")


def _int_param(query: dict[str, str], name: str) -> int | None:
    text = query.get(name)
    if not text:
        return None
    if not _is_number(text):
        raise AdminError(400, f"{name} must be a whole number, not {text!r}")
    return int(text)


def _is_number(text: str) -> bool:
    """Whether ``text`` is a whole number in ASCII digits (str.isdigit also takes "²")."""
    return text.isascii() and text.isdigit()


def error_response(error: AdminError) -> Response:
    """The HTTP answer to a request the admin API refuses: ``{"error": MESSAGE}``."""
    return _json_response(error.status, {"error": error.message}, ())


def _json_response(status: int, answer: object, allow: Sequence[str]) -> Response:
    body = (json.dumps(answer, ensure_ascii=False) + "\n").encode()
    # No CORS header, ever: a page of another site must not read an answer. nosniff: nor
    # load one as a script or a style sheet.
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", JSON_TYPE),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    if allow:
        headers["Allow"] = ", ".join(allow)
    phrase = http.HTTPStatus(status).phrase
    return Response(status, phrase, headers, body)

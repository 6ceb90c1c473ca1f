"""The admin API: look at a running mock and act on it, over plain HTTP on the WebSocket port.

Requests under ``/__admin`` (the prefix WireMock uses for the same purpose) are not WebSocket
handshakes: they may use any method and carry a body of up to ``MAX_BODY`` bytes, which
websockets' own request parser refuses. The server's protocol reads them with ``AdminRequest``
instead and hands them to ``Admin.respond``; the answer is JSON and the connection closes after
it. Only peers in the allowed networks (loopback unless the server is told otherwise) get in.

``Admin``'s other methods are the same operations for Python callers (the pytest fixture).
Every endpoint is described in docs/admin.md.
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
from ..expr.values import encode
from ..language.limits import MAX_CLOSE_REASON_BYTES
from .connection import Connection
from .engine import Engine
from .journal import Journal, timestamp
from .program import Route

__all__ = [
    "ADMIN_PREFIX",
    "LOOPBACK",
    "MAX_BODY",
    "Admin",
    "AdminRequest",
    "Network",
    "Served",
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

logger = logging.getLogger("scenario_engine")


def is_admin_path(path: str) -> bool:
    """Whether a request target (path and query) is under ADMIN_PREFIX."""
    return path == ADMIN_PREFIX or path.startswith((ADMIN_PREFIX + "/", ADMIN_PREFIX + "?"))


class Served(Protocol):
    """What the admin API acts on: a running server (the connection layer implements it)."""

    engine: Engine
    journal: Journal | None
    open_timeout: float

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


class Admin:
    """The admin operations on one server, and their HTTP spelling.

    Every method runs on the server's event loop.
    """

    def __init__(self, server: Served, allow: Sequence[Network] = LOOPBACK) -> None:
        self.server = server
        self.allow = tuple(allow)

    # ---- operations ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return {"status": "ok", "routes": [r.path for r in self.server.engine.program.routes]}

    def connections(self) -> list[dict[str, Any]]:
        """Every open connection, oldest first."""
        listed = [(self.server.connected_at(conn), conn) for conn in self._all_connections()]
        listed.sort(key=lambda pair: pair[0])
        return [
            {
                "id": conn.id,
                "route": conn.route.path,
                "path": conn.request.path,
                "query": conn.request.query,
                "ip": conn.request.ip,
                "rooms": sorted(conn.rooms),
                "connectedAt": timestamp(since),
            }
            for since, conn in listed
        ]

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
        if not (code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000):
            raise AdminError(
                400, f"close code {code} cannot be sent (1000–1003, 1007–1014 or 3000–4999)"
            )
        if len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
            raise AdminError(400, f"close reason longer than {MAX_CLOSE_REASON_BYTES} bytes")
        conn = self._connection(connection)
        await self.server.close_connections([conn], code, reason, self._close_wait())

    async def reset(self) -> int:
        """Close every connection with 1012 (service restart), empty every room, clear the
        journal; the number of connections closed."""
        conns = self._all_connections()
        await self.server.close_connections(
            conns, CLOSE_SERVICE_RESTART, "Service restart", self._close_wait()
        )
        for conn in conns:  # those still closing: their rooms must be empty from now on
            self.server.engine.leave_rooms(conn)
        if self.server.journal is not None:
            self.server.journal.clear()
        return len(conns)

    def _close_wait(self) -> float:
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
        result: tuple[int, object, Sequence[str]]
        if not self._allowed(peer):
            result = 403, {"error": f"the admin API is not open to {peer}"}, ()
        else:
            result = await self._dispatch(request)
        status, answer, allow = result
        logger.info("admin %s %s %s: %d", peer, request.method, request.path, status)
        return _json_response(status, answer, allow)

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
            case ["journal"]:
                return {"GET": self._get_journal, "DELETE": self._delete_journal}
            case ["send"]:
                return {"POST": self._post_send}
            case ["reset"]:
                return {"POST": self._post_reset}
        return None

    async def _get_health(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        return 200, self.health()

    async def _get_connections(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        return 200, {"connections": self.connections()}

    async def _delete_connection(
        self, conn_id: str, query: dict[str, str], body: bytes
    ) -> tuple[int, object]:
        code = _int_param(query, "code")
        code = 1000 if code is None else code
        reason = query.get("reason", "")
        await self.close(conn_id, code, reason)
        return 200, {"closed": conn_id, "code": code, "reason": reason}

    async def _get_journal(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        journal = self._journal()
        events = journal.events(
            since=_int_param(query, "since") or 0,
            connection=query.get("connection") or None,
            limit=_int_param(query, "limit"),
        )
        return 200, {"events": events, "last": journal.last_seq}

    async def _delete_journal(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        journal = self._journal()
        journal.clear()
        return 200, {"cleared": True, "last": journal.last_seq}

    async def _post_send(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        return 200, {"delivered": self.send(_json_object(body))}

    async def _post_reset(self, query: dict[str, str], body: bytes) -> tuple[int, object]:
        return 200, {"closed": await self.reset()}

    def _journal(self) -> Journal:
        if self.server.journal is None:
            raise AdminError(404, "this server keeps no journal")
        return self.server.journal


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


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as err:
        raise AdminError(400, f"the body is not JSON: {err}") from None
    if not isinstance(value, dict):
        raise AdminError(400, "the body must be a JSON object")
    return value


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


def _json_response(status: int, answer: object, allow: Sequence[str]) -> Response:
    body = (json.dumps(answer, ensure_ascii=False) + "\n").encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
        ]
    )
    if allow:
        headers["Allow"] = ", ".join(allow)
    phrase = http.HTTPStatus(status).phrase
    return Response(status, phrase, headers, body)

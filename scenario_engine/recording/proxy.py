"""The recording proxy: clients connect to it as to the server, it relays each to the server
and journals the conversations (``scenario-engine record``).

For each client, the proxy reads the handshake request, opens a connection of its own to the
server at the same path and query, offering the same subprotocols (and permessage-deflate if
the client offered it) with the client's end-to-end headers (``Authorization``, ``Cookie``,
``Origin``, ``User-Agent``, custom ones…; not the hop-by-hop and handshake ones, which belong to
each connection) plus the ``--header`` ones, and only then answers the client:

- the server accepted: the client is accepted with the server's subprotocol, compression if
  the server compresses too, and the server's end-to-end response headers (``Set-Cookie``,
  ``Server``…); then ``relay.Relay`` carries the conversation;
- the server refused (an HTTP status): the client gets the same status, headers and body;
- the server cannot be reached, or its answer is no handshake: 502 (504 after the open
  timeout), and a line on the console; the proxy goes on.

The journal gets the events of runtime/journal.py as the server's side of each conversation
(``route`` null; ``subprotocol`` and ``protocols`` in ``connect``; ``query`` and ``headers`` in
``reject``; ``by`` in ``close``; one ``out`` per client a message reached). A server that
closes a connection with a code of 4000–4999 before any message, within REFUSAL_WINDOW of its
handshake, refused it after the handshake, as an ``auth`` block's ``reject 4001`` does: that is
a ``reject`` with ``code``, not a connection. So a ``connect`` is journaled once the first
message passes or the window is over, with the time of the handshake.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidHeader, InvalidMessage, InvalidURI
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame
from websockets.headers import parse_extension
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from ..runtime.connection import new_connection_id
from ..runtime.journal import Journal, payload_fields
from ..runtime.server import DEFAULT_MAX_MESSAGE, OPEN_TIMEOUT
from ..runtime.wire import header_fields, offered_subprotocols
from .relay import (
    READ_SIZE,
    Peer,
    Relay,
    RelayedClientProtocol,
    RelayedServerProtocol,
    Side,
)

__all__ = ["HOP_BY_HOP", "REFUSAL_WINDOW", "RecordingProxy", "cut"]

logger = logging.getLogger("scenario_engine")

#: Headers of one HTTP connection, not of the request (RFC 9110 §7.6.1), and those of the
#: WebSocket handshake, which each of the proxy's two connections makes its own: none of them
#: is passed on.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-key",
        "sec-websocket-protocol",
        "sec-websocket-version",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: How soon after its handshake a close (4000–4999, before any message) is a refusal.
REFUSAL_WINDOW = 1.0
#: Characters of a message shown on its console line.
SHOWN = 100

Say = Callable[[str], None]


class RecordingProxy:
    """Listens on ``host``:``port`` and relays each client to ``target`` (a ws:// or wss://
    URL; a path in it is put before each client's path), journaling every conversation.

    ``headers``: more request headers for the server (replacing the client's of the same name).
    ``tls``: the TLS settings for a wss:// target (None: the system's defaults). ``say`` gets a
    line per connection, message and refusal (None: none); ``warn`` a line per problem (a
    server out of reach).
    """

    def __init__(
        self,
        target: str,
        journal: Journal,
        host: str = "127.0.0.1",
        port: int = 8765,
        headers: Sequence[tuple[str, str]] = (),
        tls: ssl.SSLContext | None = None,
        say: Say | None = None,
        warn: Say = logger.error,
    ) -> None:
        self.target = target.rstrip("/")
        self.journal = journal
        self.host = host
        self.port = port
        self.headers = list(headers)
        self.tls = tls
        self._say = say
        self._warn = warn
        self._server: asyncio.Server | None = None
        #: Each client's task, and its relay once the handshakes are done.
        self._handlers: set[asyncio.Task[None]] = set()
        self._relays: dict[asyncio.Task[None], Relay] = {}
        #: ``close`` was called: the connections still open are closed by the proxy.
        self.stopping = False

    @property
    def url(self) -> str:
        """The URL clients connect to (with the port listened on, once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        """Listen; OSError if the address cannot be listened on."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening; close every relayed connection with 1001 (going away), cut the
        handshakes under way, and wait for all to end (each within the close timeout)."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            relay = self._relays.get(task)
            if relay is not None:
                relay.go_away()
            else:
                task.cancel()
        if self._handlers:
            await asyncio.wait(list(self._handlers))
        if self._server is not None:
            await self._server.wait_closed()

    # ---- one client --------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        client = Peer("client", RelayedServerProtocol(max_size=DEFAULT_MAX_MESSAGE), reader, writer)
        try:
            await self._proxy(client, task)
        except asyncio.CancelledError:
            client.abort()
        except Exception:  # a bug of ours: this client is cut off, the others go on
            logger.exception("proxying a connection failed")
            client.abort()
        finally:
            self._handlers.discard(task)
            await client.finish()

    async def _proxy(self, client: Peer, task: asyncio.Task[None]) -> None:
        try:
            request, early = await asyncio.wait_for(_request(client), OPEN_TIMEOUT)
        except TimeoutError:
            client.abort()
            return
        if request is None:  # not an HTTP request: websockets answers nothing, nor do we
            client.flush()
            return
        # The client's handshake is checked before anything goes to the server.
        probe = ServerProtocol().accept(request)
        if probe.status_code != 101:
            _answer(client, probe)
            return
        url = self.target + request.path
        try:
            server, response, pushed = await asyncio.wait_for(
                self._open(url, request), OPEN_TIMEOUT
            )
        except TimeoutError:
            self._unreachable(client, url, f"no answer within {OPEN_TIMEOUT:g}s", 504)
            return
        except (OSError, InvalidHandshake, InvalidURI) as err:
            self._unreachable(client, url, _why(err), 502)
            return
        failure = server.protocol.handshake_exc
        if response.status_code == 101 and failure is not None:
            server.abort()
            self._unreachable(client, url, f"its handshake response is invalid: {failure}", 502)
            return
        fields = self._request_fields(request)
        if response.status_code != 101:
            await server.finish()
            self._refused(client, fields, response)
            return
        protocol = client.protocol
        assert isinstance(protocol, RelayedServerProtocol)
        selected = response.headers.get("Sec-WebSocket-Protocol")
        protocol.selected = None if selected is None else Subprotocol(selected)
        if server.protocol.extensions:  # compression on both sides, or on neither
            protocol.available_extensions = [ServerPerMessageDeflateFactory()]
        accepted = protocol.accept(request)
        for name, value in _end_to_end(response.headers, also=("date",)):
            accepted.headers[name] = value
        protocol.send_response(accepted)
        client.flush()
        if accepted.status_code != 101:  # cannot happen: the probe accepted the same request
            server.abort()
            await server.finish()
            return
        recorder = _Recorder(self, new_connection_id(), fields, selected)
        relay = Relay(client, server, recorder, {"client": early, "server": pushed})
        self._relays[task] = relay
        try:
            await relay.run()
        finally:
            del self._relays[task]
            recorder.settle()

    async def _open(self, url: str, request: Request) -> tuple[Peer, Response, list[Frame]]:
        """Connect to the server at ``url`` as the client asked; the server's handshake
        response, and the frames that came with it."""
        uri = parse_uri(url)
        offered = offered_subprotocols(request.headers)
        protocol = RelayedClientProtocol(
            uri,
            extensions=[ClientPerMessageDeflateFactory()] if _offers_deflate(request) else None,
            subprotocols=[Subprotocol(name) for name in offered] or None,
            max_size=DEFAULT_MAX_MESSAGE,
        )
        outgoing = protocol.connect()
        forwarded = [*_end_to_end(request.headers), *self.headers]
        for name in {name.lower() for name, _ in forwarded}:
            if name in outgoing.headers:
                del outgoing.headers[name]
        for name, value in forwarded:
            outgoing.headers[name] = value
        tls: ssl.SSLContext | bool | None = None
        if uri.secure:
            tls = self.tls or True
        reader, writer = await asyncio.open_connection(
            uri.host, uri.port, ssl=tls, server_hostname=uri.host if tls else None
        )
        server = Peer("server", protocol, reader, writer)
        try:
            protocol.send_request(outgoing)
            server.flush()
            while True:
                data = await reader.read(READ_SIZE)
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                events = protocol.events_received()
                if events and isinstance(events[0], Response):
                    return server, events[0], _frames(events[1:])
                if protocol.handshake_exc is not None:
                    raise protocol.handshake_exc
                if not data:
                    raise InvalidMessage("it closed the connection without answering")
        except BaseException:
            server.abort()
            raise

    # ---- what the console and the journal get -------------------------------------------------
    def _unreachable(self, client: Peer, url: str, why: str, status: int) -> None:
        phrase = "Gateway Timeout" if status == 504 else "Bad Gateway"
        self._warn(f"error: cannot reach {url}: {why}; the client got {status} {phrase}")
        protocol = client.protocol
        assert isinstance(protocol, ServerProtocol)
        _answer(client, protocol.reject(status, f"{phrase}: the proxy cannot reach {url}: {why}\n"))

    def _refused(self, client: Peer, fields: _RequestFields, response: Response) -> None:
        headers = Headers(_end_to_end(response.headers))
        body = response.body or b""
        headers["Content-Length"] = str(len(body))
        headers["Connection"] = "close"
        _answer(client, Response(response.status_code, response.reason_phrase, headers, body))
        reason = body.decode(errors="replace").strip() or response.reason_phrase
        self.journal.record(
            "reject",
            path=fields.path,
            query=fields.query,
            headers=fields.headers,
            reason=reason,
            status=response.status_code,
        )
        self.say(f"refused {fields.target}: HTTP {response.status_code} {cut(reason)}")

    def _request_fields(self, request: Request) -> _RequestFields:
        """What the journal keeps of a handshake request: the request as the server received
        it, as far as its path, query and end-to-end headers go."""
        headers = header_fields(request.headers)
        for name, value in self.headers:
            headers[name.lower()] = value
        return _RequestFields(request.path, headers, offered_subprotocols(request.headers))

    def say(self, line: str) -> None:
        if self._say is not None:
            self._say(line)


class _RequestFields:
    """What the journal keeps of a client's handshake request."""

    def __init__(self, target: str, headers: dict[str, str], protocols: list[str]) -> None:
        parts = urlsplit(target)
        self.target = target
        self.path = parts.path
        self.query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.headers = headers
        self.protocols = protocols


class _Recorder:
    """Journals one relayed connection, and says what happens on it."""

    def __init__(
        self,
        proxy: RecordingProxy,
        conn_id: str,
        fields: _RequestFields,
        subprotocol: str | None,
    ) -> None:
        self.proxy = proxy
        self.id = conn_id
        self.fields = fields
        self.subprotocol = subprotocol
        self.opened = time.time()
        self.settled = False
        self._window = asyncio.get_running_loop().call_later(REFUSAL_WINDOW, self.settle)
        chosen = f" ({subprotocol})" if subprotocol else ""
        proxy.say(f"{conn_id} connected {fields.target}{chosen}")

    def settle(self) -> None:
        """It is a connection, not a refusal: journal its ``connect`` (once)."""
        if self.settled:
            return
        self.settled = True
        self._window.cancel()
        fields = self.fields
        self.proxy.journal.record_at(
            self.opened,
            "connect",
            connection=self.id,
            route=None,
            path=fields.path,
            query=fields.query,
            headers=fields.headers,
            subprotocol=self.subprotocol,
            protocols=fields.protocols,
        )

    def message(self, sender: Side, data: str | bytes) -> None:
        self.settle()
        journal = self.proxy.journal
        if sender == "client":
            journal.record("in", connection=self.id, **payload_fields(data))
        else:
            journal.record("out", connections=[self.id], **payload_fields(data))
        arrow = "→" if sender == "client" else "←"
        self.proxy.say(f"{self.id} {arrow} {cut(data)}")

    def closed(self, code: int, reason: str, by: Side) -> None:
        journal = self.proxy.journal
        if not self.settled and by == "server" and 4000 <= code <= 4999:
            self.settled = True
            self._window.cancel()
            journal.record(
                "reject",
                path=self.fields.path,
                query=self.fields.query,
                headers=self.fields.headers,
                reason=reason,
                code=code,
            )
            self.proxy.say(f"{self.id} refused: closed {_close(code, reason)} after the handshake")
            return
        self.settle()
        journal.record("close", connection=self.id, code=code, reason=reason, by=by)
        if code == 1006:
            self.proxy.say(f"{self.id} dropped by the {by} (1006)")
        elif self.proxy.stopping and code == 1001:
            self.proxy.say(f"{self.id} closed by the proxy, stopping: {_close(code, reason)}")
        else:
            self.proxy.say(f"{self.id} closed by the {by}: {_close(code, reason)}")


def cut(data: str | bytes) -> str:
    """A message as a console line shows it: text up to SHOWN characters, on one line; the
    size and first bytes of binary data."""
    if isinstance(data, bytes):
        head = data[:16].hex(" ")
        return f"binary {len(data)} bytes: {head}" + (" …" if len(data) > 16 else "")
    line = data.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    return line if len(line) <= SHOWN else line[: SHOWN - 1] + "…"


def _close(code: int, reason: str) -> str:
    return f"{code} {json.dumps(reason, ensure_ascii=False)}" if reason else str(code)


async def _request(client: Peer) -> tuple[Request | None, list[Frame]]:
    """The client's handshake request (None: it sent no valid HTTP request), and the frames
    it sent right after it, if any."""
    protocol = client.protocol
    while True:
        data = await client.reader.read(READ_SIZE)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        events = protocol.events_received()
        if events and isinstance(events[0], Request):
            return events[0], _frames(events[1:])
        if protocol.handshake_exc is not None or not data:
            return None, []


def _answer(client: Peer, response: Response) -> None:
    """Answer the handshake with a refusal; the connection ends once it is written."""
    protocol = client.protocol
    assert isinstance(protocol, ServerProtocol)
    protocol.send_response(response)
    client.flush()


def _end_to_end(headers: Headers, also: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The headers that are about the request or response, not about its connection: all but
    HOP_BY_HOP, those the Connection header names, and ``also``."""
    skipped = HOP_BY_HOP | set(also)
    for value in headers.get_all("Connection"):
        skipped |= {token.strip().lower() for token in value.split(",")}
    return [(name, value) for name, value in headers.raw_items() if name.lower() not in skipped]


def _offers_deflate(request: Request) -> bool:
    try:
        return any(
            name == "permessage-deflate"
            for value in request.headers.get_all("Sec-WebSocket-Extensions")
            for name, _ in parse_extension(value)
        )
    except InvalidHeader:
        return False


def _frames(events: Iterable[object]) -> list[Frame]:
    return [event for event in events if isinstance(event, Frame)]


def _why(err: BaseException) -> str:
    """Why the server could not be reached, in words (asyncio says "Connect call failed")."""
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"{err.verify_message} (--insecure accepts any certificate)"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__

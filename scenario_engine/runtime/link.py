"""One client's connection on the wire: an ``asyncio.Protocol`` on websockets' sans-I/O core.

Bytes from the socket go to websockets' ``ServerProtocol``, which keeps everything the
protocol needs: the opening handshake, framing and masking, size limits, permessage-deflate,
pings answered, the closing handshake. The events it parses go to the link's host (the server)
as they come: there is no task, stream reader or future per connection.

What is sent to a connection during one turn of the event loop goes out in one
``transport.write`` at the end of that turn: the frames stay in the protocol's buffer until
the host calls ``flush()``. A reply to eight pipelined requests is one system call, a burst of
broadcasts one write per receiver. A burst larger than ``WRITE_LIMIT`` is written at once, so
that the transport's buffer, which the server bounds, always holds what was sent.

The link also does what websockets' asyncio layer did around the protocol: the open timeout,
the close timeout, the keepalive pings of a route's ``heartbeat``, the assembly of fragmented
messages (with UTF-8 checked as the fragments come, and a bound on their number), and taking a
fair share of messages from a client that floods the server.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from .admin import AdminRequest
from .connection import Connection

__all__ = ["CLOSE_TIMEOUT", "FAIR_SHARE", "MAX_FRAGMENTS", "WRITE_LIMIT", "Link", "LinkHost"]

#: How long a closing handshake may take before the TCP connection is cut (websockets' own
#: default).
CLOSE_TIMEOUT = 10.0
#: Most frames one incoming message may come in: a guard against floods of empty continuation
#: frames, which the size limit does not count. websockets' asyncio layer stops at 4096, which
#: refuses a 4 MiB message in 1 KiB fragments that the RFC allows (Autobahn|Testsuite 9.3.3);
#: 2**17 empty fragments cost a connection ~30 MB at most (measured), the order of the default
#: message limit. WEBSOCKETS_MAX_FRAGMENTS, if set, wins.
MAX_FRAGMENTS = 2**17


def _max_fragments() -> int:
    """MAX_FRAGMENTS, or WEBSOCKETS_MAX_FRAGMENTS when it is set to a positive whole number (a
    value that is not one is ignored, with a warning, rather than stopping every server)."""
    text = os.environ.get("WEBSOCKETS_MAX_FRAGMENTS")
    if text is None:
        return MAX_FRAGMENTS
    if text.strip().isdigit() and int(text) > 0:
        return int(text)
    warnings.warn(
        f"WEBSOCKETS_MAX_FRAGMENTS={text!r} is not a positive whole number: using {MAX_FRAGMENTS}",
        stacklevel=2,
    )
    return MAX_FRAGMENTS


#: The bound in force, read once.
FRAGMENT_LIMIT = _max_fragments()
#: Messages taken from one connection before the others get a turn: a client that floods the
#: server must not starve everyone else (the rest waits for the next turn, reading paused).
FAIR_SHARE = 16
#: Bytes the transport buffers before it says "pause writing" (websockets' write limit), and
#: bytes of messages held for the end of the turn before they are written at once.
WRITE_LIMIT = 32 * 1024
#: RFC 6455 close codes used here.
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

_OPEN = State.OPEN
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class LinkHost(Protocol):
    """What a link needs from the server it belongs to."""

    def handshake(self, link: Link, request: HttpRequest) -> None:
        """A WebSocket handshake request arrived: answer it (``Link.respond``), now or later."""
        ...

    def admin_request(self, link: Link, request: AdminRequest) -> None:
        """A request to the admin API arrived: answer it, now or later."""
        ...

    def message(self, link: Link, data: str | bytes) -> None:
        """An open connection received a whole message."""
        ...

    def closed(self, link: Link) -> None:
        """The TCP connection is gone (``link.protocol`` says how the WebSocket ended)."""
        ...

    def flush_soon(self, link: Link) -> None:
        """Call ``link.flush()`` at the end of this turn of the event loop."""
        ...


class Link(asyncio.Protocol):
    """One TCP connection, from its accept to its end."""

    __slots__ = (
        "_decoder",
        "_dirty",
        "_events",
        "_flush_soon",
        "_fragments",
        "_keepalive",
        "_loop",
        "_ping",
        "_queued",
        "_reading_paused",
        "_receiving",
        "_taking",
        "_timeout",
        "conn",
        "gone",
        "held",
        "held_bytes",
        "host",
        "latency",
        "paused",
        "protocol",
        "ready_at",
        "since",
        "too_slow",
        "transport",
    )

    def __init__(self, host: LinkHost, protocol: ServerProtocol, open_timeout: float) -> None:
        self.host = host
        self.protocol = protocol
        self.transport: asyncio.Transport | None = None
        #: The engine's connection once the handshake opened it (None before, and for
        #: requests that never become one).
        self.conn: Connection | None = None
        #: When it opened (time.time()).
        self.since = 0.0
        #: The route's latency (None: none); the messages it holds back, each with when it
        #: goes out (loop time, never before the one ahead of it); their bytes; when the last
        #: one goes out. The server keeps these.
        self.latency: tuple[float, float] | None = None
        self.held: deque[tuple[float, bytes, bool]] | None = None
        self.held_bytes = 0
        self.ready_at = 0.0
        #: The transport asked to stop writing: its buffer is past WRITE_LIMIT.
        self.paused = False
        #: The server found this client too slow and is closing it.
        self.too_slow = False
        self._loop = asyncio.get_running_loop()
        #: Done once the TCP connection is gone and the host was told.
        self.gone: asyncio.Future[None] = self._loop.create_future()
        self._flush_soon: Callable[[Link], None] = host.flush_soon
        self._dirty = False
        self._queued = 0
        self._events: deque[object] = deque()
        self._reading_paused = False
        #: Inside data_received (or taking queued events): sends are flushed on the way out.
        self._receiving = False
        #: Messages are handed to the host: from the opening until the client's close frame
        #: comes in the stream of events, or this side starts closing. Not the protocol's
        #: state: it turns CLOSING as soon as a close frame is parsed, and the messages that
        #: the client sent before it, parsed in the same read, are still the client's.
        self._taking = False
        #: The fragments of the message coming in (None: none), and, for text, their decoder.
        self._fragments: list[bytes] | list[str] | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        #: The open timeout, then the close timeout; the keepalive timer and its ping.
        self._timeout: asyncio.TimerHandle | None = self._loop.call_later(open_timeout, self.abort)
        self._keepalive: asyncio.TimerHandle | None = None
        self._ping: bytes | None = None

    # ---- asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not derive from asyncio.Transport).
        self.transport = stream = cast(asyncio.Transport, transport)
        if self.gone.done():  # given up on while its TLS handshake went on (see _forget)
            stream.abort()
            return
        stream.set_write_buffer_limits(WRITE_LIMIT)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        if events:
            # What this connection is sent meanwhile goes out below, not at the end of the turn.
            self._receiving = True
            try:
                if len(events) <= FAIR_SHARE and not self._events:
                    self._handle(events)
                else:
                    self._events.extend(events)
                    self._pump()
            finally:
                self._receiving = False
        # Replies to what came in (and pongs, and close frames) go out now, in one write.
        self.flush()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self.flush()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self.gone.done():  # forgotten before its TLS handshake ended (_forget)
            return
        self._taking = False
        self.protocol.receive_eof()  # idempotent: from here the protocol's state is CLOSED
        for handle in (self._timeout, self._keepalive):
            if handle is not None:
                handle.cancel()
        self._timeout = self._keepalive = None
        self._events.clear()
        self._fragments = None
        protocol = self.protocol
        protocol.data_to_send()  # nothing more can be written
        try:
            self.host.closed(self)
        finally:
            # websockets' protocol is in reference cycles (its parser, a generator, refers to
            # it; so do the frames of the error it records), which only the cyclic collector
            # frees, and a server that allocates little runs it rarely: its buffers would
            # outlive the connection by minutes. Break them now.
            protocol.parser.close()
            protocol.parser_exc = None
            self.gone.set_result(None)

    def _forget(self) -> None:
        """End a link that was never given its transport: with TLS, ``connection_made`` comes
        only once the TLS handshake is done, and a handshake that fails (a client refusing
        the certificate) never calls the protocol at all. Without this, such links would stay
        with the host for ever and a server stopping would wait on them."""
        if self.gone.done():
            return
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        try:
            self.host.closed(self)
        finally:
            self.gone.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # ---- incoming --------------------------------------------------------------------------
    def _handle(self, events: Iterable[object]) -> None:
        """Hand events to the host: messages as soon as they are whole."""
        for event in events:
            if type(event) is Frame:
                # The common case first: a text message in one frame, with its connection open.
                if event.fin and event.opcode is _TEXT and self.conn is not None:
                    try:
                        text = event.data.decode()  # type: ignore[union-attr]  # bytes
                    except UnicodeDecodeError as err:
                        self._invalid(err)
                        continue
                    if self._taking:
                        self.host.message(self, text)
                else:
                    self._frame(event)
            elif isinstance(event, AdminRequest):
                self.host.admin_request(self, event)
            elif isinstance(event, HttpRequest):
                self.host.handshake(self, event)

    def _pump(self) -> None:
        """Hand the events queued to the host, a fair share of messages at a time."""
        events = self._events
        messages = 0
        while events and messages < FAIR_SHARE:
            event = events.popleft()
            if type(event) is Frame:
                messages += self._frame(event)
            else:
                self._handle((event,))
        transport = self.transport
        if transport is None:
            return
        if events:
            # The rest waits for the next turn, and no more is read meanwhile (what is queued
            # is parsed already: reading more would only grow the queue).
            if not self._reading_paused:
                self._reading_paused = True
                transport.pause_reading()
            self._loop.call_soon(self._resume)
        elif self._reading_paused:
            self._reading_paused = False
            if not transport.is_closing():
                transport.resume_reading()

    def _resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._receiving = True
            try:
                self._pump()
            finally:
                self._receiving = False
            self.flush()

    def _frame(self, frame: Frame) -> int:
        """A frame parsed by the protocol; 1 if it completed a message for the host."""
        opcode = frame.opcode
        # Frames parsed from the wire (and inflated) carry bytes, not any bytes-like object.
        data: bytes = frame.data  # type: ignore[assignment]
        if opcode is _TEXT:
            if frame.fin:
                try:
                    text = data.decode()
                except UnicodeDecodeError as err:
                    self._invalid(err)
                    return 0
                return self._message(text)
            self._decoder = _utf8_decoder()
            self._fragments = []
            return self._text_fragment(frame)
        if opcode is _BINARY:
            if frame.fin:
                return self._message(data)
            self._decoder = None
            self._fragments = [data]
            return 0
        if opcode is _CONT:
            if self._decoder is not None:
                return self._text_fragment(frame)
            fragments = self._fragments
            if fragments is None:
                # The rest of a message already dropped: the connection failed at an earlier
                # fragment parsed in the same read (the protocol itself refuses a
                # continuation out of place).
                return 0
            fragments.append(data)  # type: ignore[arg-type]
            if frame.fin:
                self._fragments = None
                return self._message(b"".join(fragments))  # type: ignore[arg-type]
            self._check_fragments(fragments)
            return 0
        if opcode is Opcode.PONG:
            if self._ping is not None and data == self._ping:
                self._ping = None
        elif opcode is Opcode.CLOSE:
            # A close frame may come between fragments: the unfinished message is dropped.
            self._fragments = self._decoder = None
            self._taking = False
        return 0

    def _text_fragment(self, frame: Frame) -> int:
        """A fragment of a text message: decoded as it comes, so that invalid UTF-8 fails the
        connection at once, not once the whole message is in."""
        decoder, fragments = self._decoder, self._fragments
        assert decoder is not None and fragments is not None
        try:
            fragments.append(decoder.decode(frame.data, frame.fin))  # type: ignore[arg-type]
        except UnicodeDecodeError as err:
            self._invalid(err)
            return 0
        if frame.fin:
            self._fragments = self._decoder = None
            return self._message("".join(fragments))  # type: ignore[arg-type]
        self._check_fragments(fragments)
        return 0

    def _check_fragments(self, fragments: list[bytes] | list[str]) -> None:
        if len(fragments) > FRAGMENT_LIMIT:
            self._fragments = self._decoder = None
            self.fail(CLOSE_TOO_BIG, "too many fragments")

    def _invalid(self, err: UnicodeDecodeError) -> None:
        self._fragments = self._decoder = None
        self.fail(CLOSE_INVALID_DATA, f"{err.reason} at position {err.start}")

    def _message(self, data: str | bytes) -> int:
        if not self._taking or self.conn is None:
            return 0  # the closing handshake has begun: data frames are ignored
        self.host.message(self, data)
        return 1

    # ---- outgoing --------------------------------------------------------------------------
    def respond(self, response: Response) -> None:
        """Answer the handshake (or the admin request): with 101 the connection opens,
        otherwise it ends once the answer is written."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.protocol.state is not State.CONNECTING:
            return
        self.protocol.send_response(response)
        if response.status_code == 101:
            self.since = time.time()
            self._taking = True
            if self._timeout is not None:
                self._timeout.cancel()
                self._timeout = None
        self._mark()

    def send(self, payload: bytes, text: bool) -> None:
        """Send a message (the connection must be open); it goes out at the end of the turn,
        or now if the turn has queued WRITE_LIMIT bytes already."""
        if text:
            self.protocol.send_text(payload)
        else:
            self.protocol.send_binary(payload)
        self._queued += len(payload)
        if self._queued > WRITE_LIMIT:
            self.flush()
        elif not self._dirty:
            self._dirty = True
            if not self._receiving:  # else data_received flushes on its way out
                self._flush_soon(self)

    def ping(self, data: bytes) -> None:
        if self.protocol.state is _OPEN:
            self.protocol.send_ping(data)
            self._mark()

    def pong(self, data: bytes) -> None:
        if self.protocol.state is _OPEN:
            self.protocol.send_pong(data)
            self._mark()

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the TCP connection is cut if it does not end within
        CLOSE_TIMEOUT."""
        self._taking = False
        if self.protocol.state is _OPEN:
            self.protocol.send_close(code, reason)
            self._mark()

    def fail(self, code: int, reason: str) -> None:
        """Send a close frame and end the connection without waiting for the client's, as
        websockets does when a client breaks the protocol or stops answering pings."""
        self._taking = False
        if self.protocol.state is _OPEN:
            self.protocol.fail(code, reason)
            self._mark()

    def abort(self) -> None:
        """Cut the TCP connection now, without a closing handshake; what was sent before goes
        out first if the socket takes it."""
        transport = self.transport
        if transport is None:
            self._forget()
        elif not transport.is_closing():
            self.flush()
            transport.abort()

    def keepalive(self, interval: float) -> None:
        """Ping every ``interval``; a client that has not answered a ping by the next one is
        closed with 1011, as websockets' keepalive with a ping timeout equal to the interval."""
        self._keepalive = self._loop.call_later(interval, self._keep_alive, interval)

    def _keep_alive(self, interval: float) -> None:
        if self.protocol.state is not _OPEN:
            return
        if self._ping is not None:
            self.fail(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
            return
        self._ping = os.urandom(4)
        self.ping(self._ping)
        self._keepalive = self._loop.call_later(interval, self._keep_alive, interval)

    def _mark(self) -> None:
        if not self._dirty:
            self._dirty = True
            if not self._receiving:
                self._flush_soon(self)

    def flush(self) -> None:
        """Write what this turn produced, in one write (then end the stream if the protocol
        says so), and watch for the end of the connection the protocol now expects."""
        self._dirty = False
        self._queued = 0
        protocol = self.protocol
        writes = protocol.data_to_send()
        if writes:
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            end = not writes[-1]  # an empty write: the end of the stream
            if end:
                writes.pop()
            if len(writes) == 1:
                transport.write(writes[0])
            elif writes:
                transport.write(b"".join(writes))
            if end:
                self._end_stream(transport)
        if protocol.state is not _OPEN and self._timeout is None and protocol.close_expected():
            self._timeout = self._loop.call_later(CLOSE_TIMEOUT, self.abort)

    @staticmethod
    def _end_stream(transport: asyncio.Transport) -> None:
        """Half-close when the transport can (TCP), else close (TLS)."""
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                transport.close()
        else:
            transport.close()

    # ---- about the connection --------------------------------------------------------------
    @property
    def peer(self) -> str | None:
        """The client's IP address (None if unknown)."""
        if self.transport is None:
            return None
        address = self.transport.get_extra_info("peername")
        if isinstance(address, tuple) and address:
            return str(address[0])
        return None

    def unsent(self) -> int:
        """Bytes written and not yet taken by the kernel, and bytes sent this turn."""
        buffered = 0 if self.transport is None else self.transport.get_write_buffer_size()
        return buffered + self._queued

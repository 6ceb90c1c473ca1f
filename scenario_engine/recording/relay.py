"""One client's WebSocket relayed to the server it was recorded from, frame by frame.

Each side is websockets' sans-I/O protocol on an asyncio stream: a ``ServerProtocol`` facing
the client, a ``ClientProtocol`` facing the server. websockets' asyncio API would be shorter,
but it answers pings itself, keeps its own keepalive, and hides the frames: through it, a
client's ping would be answered by the proxy and never reach the server. With the protocols,
the relay sees every frame and decides what goes where:

- data frames go to the other side as they come, fragments as fragments, and each whole
  message is handed to the observer (the recording);
- a ping goes to the other side, whose pong comes back the same way: a client gets exactly
  one pong, the server's (the protocols are kept from answering pings themselves);
- a close frame goes to the other side with its code and reason; each protocol completes its
  own closing handshake as RFC 6455 says (the echo of the code it received);
- a side that drops its TCP connection without a close frame has the other side's dropped too,
  so it sees an abrupt close (1006), as it would have without the proxy.

Backpressure: a side is read 64 KiB at a time, and not again until what that read produced
is written to the other side and the other side's buffer has drained below asyncio's
high-water mark. A client that reads slowly slows the reading from the server (and so the
server itself, by TCP's flow control): no queue grows in the proxy. The protocols' size limit
bounds a message, and a bound on fragments keeps empty continuation frames from growing the
one being assembled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Literal, Protocol

from websockets.client import ClientProtocol
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.protocol import Protocol as WebSocketProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from ..runtime.link import CLOSE_TIMEOUT, FRAGMENT_LIMIT

__all__ = [
    "READ_SIZE",
    "Peer",
    "Relay",
    "RelayObserver",
    "RelayedClientProtocol",
    "RelayedServerProtocol",
    "Side",
]

#: Bytes read from a side at once.
READ_SIZE = 64 * 1024

Side = Literal["client", "server"]


class RelayedServerProtocol(ServerProtocol):
    """The protocol facing the client: it leaves pings to the server to answer, and selects
    the subprotocol the server selected."""

    #: The server's selection, set before ``accept``.
    selected: Subprotocol | None = None

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING:
            self.events.append(frame)  # answered by the other side, through the relay
            return
        super().recv_frame(frame)

    def select_subprotocol(self, subprotocols: object) -> Subprotocol | None:
        return self.selected


class RelayedClientProtocol(ClientProtocol):
    """The protocol facing the server: it leaves pings to the client to answer."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.PING:
            self.events.append(frame)
            return
        super().recv_frame(frame)


class RelayObserver(Protocol):
    """What the relay tells about the conversation (the recording)."""

    def message(self, sender: Side, data: str | bytes) -> None:
        """A whole message went from ``sender`` to the other side."""
        ...

    def closed(self, code: int, reason: str, by: Side) -> None:
        """The conversation ends: ``by`` sent a close frame with ``code`` and ``reason``, or
        dropped the connection (1006). Called once."""
        ...


class Peer:
    """One side of a relay: its protocol and its stream."""

    def __init__(
        self,
        side: Side,
        protocol: WebSocketProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.side = side
        self.protocol = protocol
        self.reader = reader
        self.writer = writer
        #: The protocol ended the stream: nothing more may be written.
        self._ended = False

    def flush(self) -> None:
        """Write what the protocol has to send; half-close when it says so."""
        chunks = self.protocol.data_to_send()
        if not chunks or self.writer.is_closing() or self._ended:
            return  # nothing to write, or closed or half-closed already
        data = b"".join(chunks)
        if data:
            self.writer.write(data)
        if chunks[-1] == b"":  # websockets' end of the stream
            self._ended = True
            if self.writer.can_write_eof():
                self.writer.write_eof()
            else:  # TLS cannot half-close: close once what is buffered is written
                self.writer.close()

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def finish(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_TIMEOUT)


class Relay:
    """A client's connection and the server's, both open, relayed until both end.

    ``pending``: frames each side's protocol parsed already (the server's first messages may
    come with its handshake response), handed on first.
    """

    def __init__(
        self,
        client: Peer,
        server: Peer,
        observer: RelayObserver,
        pending: dict[Side, list[Frame]] | None = None,
    ) -> None:
        self.client = client
        self.server = server
        self.observer = observer
        self._pending = pending or {}
        self._ended = False
        self._deadline: asyncio.TimerHandle | None = None

    async def run(self) -> None:
        """Relay until both TCP connections have ended."""
        pumps = [
            asyncio.create_task(self._pump(self.client, self.server)),
            asyncio.create_task(self._pump(self.server, self.client)),
        ]
        try:
            await asyncio.gather(*pumps)
        except BaseException:  # a bug of ours, or the proxy cancelled: cut both, end both
            self._cut()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            raise
        finally:
            if self._deadline is not None:
                self._deadline.cancel()
            await asyncio.gather(self.client.finish(), self.server.finish())

    def go_away(self) -> None:
        """The proxy stops: both sides are closed with 1001 (going away), as the client
        leaving; each gets the close timeout to answer."""
        for peer in (self.client, self.server):
            if peer.protocol.state is State.OPEN:
                peer.protocol.send_close(CloseCode.GOING_AWAY)
                peer.flush()
        self._end(CloseCode.GOING_AWAY, "", "client")
        self._start_deadline()

    # ---- one direction -----------------------------------------------------------------------
    async def _pump(self, source: Peer, target: Peer) -> None:
        """Read ``source`` until its TCP connection ends, handing on what it sends."""
        assembling = _Message()
        self._forward(source, target, self._pending.pop(source.side, ()), assembling)
        target.flush()
        while True:
            try:
                data = await source.reader.read(READ_SIZE)
            except OSError:  # reset by the peer: as an end of stream
                data = b""
            if data:
                source.protocol.receive_data(data)
            else:
                source.protocol.receive_eof()
            self._forward(source, target, source.protocol.events_received(), assembling)
            source.flush()
            target.flush()
            await target.drain()
            if not data:
                return

    def _forward(
        self, source: Peer, target: Peer, events: Iterable[object], assembling: _Message
    ) -> None:
        sending = target.protocol
        for event in events:
            if not isinstance(event, Frame):
                continue
            opcode, data = event.opcode, event.data
            open_ = sending.state is State.OPEN
            if opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                if open_:
                    if opcode is Opcode.TEXT:
                        sending.send_text(data, event.fin)
                    elif opcode is Opcode.BINARY:
                        sending.send_binary(data, event.fin)
                    else:
                        sending.send_continuation(data, event.fin)
                whole = assembling.add(event)
                if whole is not None:
                    self.observer.message(source.side, whole)
                elif assembling.fragments > FRAGMENT_LIMIT:
                    source.protocol.fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
                    break
            elif opcode is Opcode.PING and open_:
                sending.send_ping(data)
            elif opcode is Opcode.PONG and open_:
                sending.send_pong(data)
        self._follow(source, target)

    def _follow(self, source: Peer, target: Peer) -> None:
        """Once ``source`` stopped being open, ``target`` follows: the same close, or a dropped
        connection for a dropped one."""
        protocol = source.protocol
        if protocol.state is State.OPEN:
            return
        self._start_deadline()
        # A close frame received from the source, else the one the proxy sent it on failing it
        # (a protocol error: the source broke the rules), else none: it dropped the connection.
        close: Close | None = protocol.close_rcvd or protocol.close_sent
        if close is None:
            self._end(CloseCode.ABNORMAL_CLOSURE, "", source.side)
            target.abort()
            return
        self._end(close.code, close.reason, source.side)
        if target.protocol.state is State.OPEN:
            if close.code == CloseCode.NO_STATUS_RCVD:
                target.protocol.send_close()
            else:
                target.protocol.send_close(close.code, close.reason)

    def _end(self, code: int, reason: str, by: Side) -> None:
        if not self._ended:
            self._ended = True
            self.observer.closed(code, reason, by)

    def _start_deadline(self) -> None:
        """Closing has begun: both sides have the close timeout to finish it, then are cut."""
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._cut)

    def _cut(self) -> None:
        self.client.abort()
        self.server.abort()


class _Message:
    """The message coming in one direction, assembled from its fragments for the observer."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._text = False

    @property
    def fragments(self) -> int:
        return len(self._parts)

    def add(self, frame: Frame) -> str | bytes | None:
        """The whole message once ``frame`` completes it, else None."""
        if frame.opcode is not Opcode.CONT:
            self._parts = []
            self._text = frame.opcode is Opcode.TEXT
        self._parts.append(bytes(frame.data))
        if not frame.fin:
            return None
        data = b"".join(self._parts)
        self._parts = []
        # Invalid UTF-8 is the server's to refuse (it gets the frames as they came); the
        # recording keeps what it can read of it.
        return data.decode(errors="replace") if self._text else data

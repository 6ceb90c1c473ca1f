"""websockets' server connection, with what the mock changes in how it reads the wire.

Two changes to websockets' sans-I/O ``ServerProtocol``: a close frame between the fragments of
a message is the start of a closing handshake, as RFC 6455 allows, not an error; and, with the
admin API on, a request under its prefix is read by its own parser (any method, a body). A
third is a process-wide setting: how many frames one message may come in.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from websockets.asyncio import messages as websockets_messages
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidMessage
from websockets.frames import Frame, Opcode
from websockets.http11 import MAX_LINE_LENGTH
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from .admin import AdminRequest, is_admin_path

__all__ = [
    "MAX_FRAGMENTS",
    "AdminConnection",
    "ScenarioConnection",
    "peer_ip",
    "raise_fragment_limit",
]

#: Most frames one incoming message may come in. websockets 17 stops at 4096 and closes with
#: 1009 "too many fragments" (a guard against floods of empty continuation frames, which the
#: size limit does not count), so it refuses a 4 MiB message sent in 1 KiB fragments, which the
#: RFC allows (Autobahn|Testsuite 9.3.3). 2**17 empty fragments cost a connection ~30 MB at
#: most (measured), the order of DEFAULT_MAX_MESSAGE. WEBSOCKETS_MAX_FRAGMENTS, if set, wins.
MAX_FRAGMENTS = 2**17


class _ServerProtocol(ServerProtocol):
    """websockets' server protocol, except for a close frame between the fragments of a message.

    RFC 6455 §5.4 lets control frames, close included, come between the fragments of a message,
    and calls that no error. websockets fails the connection there with 1002 ("incomplete
    fragmented message"); here the unfinished message is dropped and the closing handshake goes
    on as for any close frame: the client's code is echoed (Autobahn|Testsuite case 7.1.5).
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE and self.current_size is not None:
            self.current_size = None
        super().recv_frame(frame)


class _AdminServerProtocol(_ServerProtocol):
    """``_ServerProtocol``, which also reads requests to the admin API.

    websockets' parser takes only requests without a body. A request whose target is under the
    admin prefix is read by ``AdminRequest.read`` instead (any method, a bounded body); every
    other request goes to websockets' parser untouched, so WebSocket handshakes are read
    exactly as without the admin API.
    """

    def parse(self) -> Generator[None, None, None]:
        if self.state is State.CONNECTING:
            target = yield from _peek_request_target(self.reader)
            if target is not None and is_admin_path(target):
                yield from self._parse_admin_request()
                return
        yield from super().parse()

    def _parse_admin_request(self) -> Generator[None, None, None]:
        try:
            request = yield from AdminRequest.read(self.reader)
        except Exception as exc:
            # As websockets does with a request it cannot parse: no answer, end of connection.
            self.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
            self.handshake_exc.__cause__ = exc
            self.send_eof()
            self.parser = self.discard()
            next(self.parser)
            yield
            return
        self.events.append(request)
        # What follows the request is read as websockets does after a handshake request; the
        # response (never 101) then discards it.
        yield from super(ServerProtocol, self).parse()


def _peek_request_target(reader: StreamReader) -> Generator[None, None, str | None]:
    """The target of the request line once it is buffered, consuming nothing; None when the
    line is too long, malformed or cut short (websockets' parser then says so)."""
    while True:
        end = reader.buffer.find(b"\n", 0, MAX_LINE_LENGTH)
        if end >= 0:
            break
        if len(reader.buffer) >= MAX_LINE_LENGTH or reader.eof:
            return None
        yield
    parts = bytes(reader.buffer[:end]).split(b" ", 2)
    if len(parts) != 3:
        return None
    try:
        return parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None


class ScenarioConnection(ServerConnection):
    """The connection websockets creates, on a ``_ServerProtocol``."""

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # websockets.serve() builds the ServerProtocol itself and takes no class for it; the
        # subclass adds no state, so switching the class of the new instance is safe.
        protocol.__class__ = _ServerProtocol
        super().__init__(protocol, *args, **kwargs)


class AdminConnection(ServerConnection):
    """The connection websockets creates, on an ``_AdminServerProtocol``."""

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        protocol.__class__ = _AdminServerProtocol
        # The protocol's parser, started when it was built, is websockets' own: start ours
        # instead (nothing has been received yet).
        protocol.parser = protocol.parse()
        next(protocol.parser)
        super().__init__(protocol, *args, **kwargs)


def raise_fragment_limit() -> None:
    """Let messages come in up to MAX_FRAGMENTS frames (a process-wide websockets setting)."""
    current = getattr(websockets_messages, "MAX_FRAGMENTS", None)  # 17.4 has it, 17.0 not
    if current is not None and "WEBSOCKETS_MAX_FRAGMENTS" not in os.environ:
        websockets_messages.MAX_FRAGMENTS = max(current, MAX_FRAGMENTS)


def peer_ip(connection: ServerConnection) -> str | None:
    """The IP address of the client on the other end of a connection; None if unknown."""
    address = connection.remote_address
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None

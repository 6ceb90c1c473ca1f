"""websockets' sans-I/O server protocol, with what the mock changes in how it reads the wire;
and what a handshake request's headers say, as the server and the recording proxy read them.

Two changes to websockets' ``ServerProtocol``: a close frame between the fragments of a message
is the start of a closing handshake, as RFC 6455 allows, not an error; and, with the admin API
on, a request under its prefix is read by its own parser (any method, a body), except at the
paths that are WebSockets of the admin API's own (the inspector's feed).
"""

from __future__ import annotations

import logging
from collections.abc import Generator

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHeader, InvalidMessage
from websockets.frames import Frame, Opcode
from websockets.headers import parse_subprotocol
from websockets.http11 import MAX_LINE_LENGTH
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from .admin import AdminRequest, is_admin_path

__all__ = ["header_fields", "new_protocol", "offered_subprotocols"]


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
    exactly as without the admin API. So are requests to ``websocket_paths``, the admin
    prefix's own WebSockets.
    """

    websocket_paths: frozenset[str] = frozenset()

    def parse(self) -> Generator[None, None, None]:
        if self.state is State.CONNECTING:
            target = yield from _peek_request_target(self.reader)
            if (
                target is not None
                and is_admin_path(target)
                and target.partition("?")[0] not in self.websocket_paths
            ):
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


def new_protocol(
    max_size: int,
    admin: bool,
    logger: logging.Logger,
    websocket_paths: frozenset[str] = frozenset(),
) -> ServerProtocol:
    """The protocol of a new connection: it reads the admin API's requests too if ``admin``,
    except handshakes to ``websocket_paths`` (under the admin prefix), read as WebSocket
    handshakes. Per-route settings (extensions, subprotocols, size limit) are set once the
    route is known."""
    if not admin:
        return _ServerProtocol(max_size=max_size, logger=logger)
    protocol = _AdminServerProtocol(max_size=max_size, logger=logger)
    if websocket_paths:
        protocol.websocket_paths = websocket_paths
    return protocol


def offered_subprotocols(headers: Headers) -> list[str]:
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


def header_fields(headers: Headers) -> dict[str, str]:
    """Headers as a request's ``headers`` (``headers.x`` in scenarios, journal events): names
    in lower case, the values of a repeated header joined with commas."""
    merged: dict[str, str] = {}
    for name, value in headers.raw_items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged

"""permessage-deflate on the wire: the opening handshake and the frames, read byte by byte.

No WebSocket library is involved on the client side: the test writes the HTTP upgrade request
itself (offering ``permessage-deflate; client_max_window_bits``), checks the server's answer,
then reads raw frame headers to see RSV1 — the bit that marks a compressed message (RFC 7692).
The server leaves messages below the route's ``compression threshold`` (1 KB by default, 1024
bytes) uncompressed and compresses the others; ``compression off`` does not negotiate the
extension at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from support import BOUND, ServedMock, async_test, handshake_request, start_mock

pytestmark = pytest.mark.e2e

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
OFFER = "permessage-deflate; client_max_window_bits"
TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9


def text_of(size: int) -> str:
    """ASCII text of exactly ``size`` bytes (varied enough that deflate has work to do)."""
    base = "The quick brown fox jumps over the lazy dog 0123456789. "
    return (base * (size // len(base) + 1))[:size]


#: The messages each route sends, by request type: every one is a literal in the scenario.
SIZES = {
    "small": 1,
    "below": 1023,
    "at": 1024,
    "above": 1025,
    "big": 2048,
    "s99": 99,
    "s100": 100,
    "s101": 101,
}
WIDE = "é" * 600  # 600 characters, 1200 bytes: the threshold counts bytes


def route(path: str, setting: str) -> str:
    handlers = "\n".join(
        f'  on message type "{name}" {{ send "{text_of(size)}" }}' for name, size in SIZES.items()
    )
    return (
        f"route {path} {{\n  {setting}\n{handlers}\n"
        f'  on message type "wide" {{ send "{WIDE}" }}\n'
        "  on message { send raw }\n}\n"
    )


SCENARIO = (
    "# Written by tests/test_compression.py.\n"
    + route("/default", "")
    + route("/low", "compression threshold 100B")
    + route("/off", "compression off")
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedMock]:
    path = tmp_path_factory.mktemp("compression") / "compression.mock"
    path.write_text(SCENARIO, encoding="utf-8")
    served = start_mock(path, extra=("--quiet",))
    yield served
    served.stop()


# ---- a WebSocket client made of bytes --------------------------------------------------------


@dataclass
class WireFrame:
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    payload: bytes


class Wire:
    """One raw connection: the handshake's response headers, then frames in and out."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers
        self.inflater = zlib.decompressobj(wbits=-15)  # context takeover: one per connection

    @classmethod
    async def open(cls, port: int, path: str, offer: str | None = OFFER) -> Wire:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), BOUND)
        key = base64.b64encode(os.urandom(16)).decode()
        extension = b"" if offer is None else f"Sec-WebSocket-Extensions: {offer}\r\n".encode()
        writer.write(handshake_request(path, key=key.encode(), extra=extension))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, header_lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        wire = cls(reader, writer, int(status_line.split()[1]), headers)
        if wire.status == 101:
            expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            assert headers.get("sec-websocket-accept") == expected, headers
        return wire

    async def read_frame(self) -> WireFrame:
        async def exactly(n: int) -> bytes:
            return await asyncio.wait_for(self.reader.readexactly(n), BOUND)

        first, second = await exactly(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await exactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await exactly(8), "big")
        masked = bool(second & 0x80)
        mask = await exactly(4) if masked else b""
        payload = await exactly(length)
        if masked:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return WireFrame(
            fin=bool(first & 0x80),
            rsv1=bool(first & 0x40),
            rsv2=bool(first & 0x20),
            rsv3=bool(first & 0x10),
            opcode=first & 0x0F,
            masked=masked,
            payload=payload,
        )

    async def read_message(self) -> WireFrame:
        """The next data frame (the server sends every message in one frame)."""
        while True:
            frame = await self.read_frame()
            if frame.opcode == PING:
                self.send_frame(0xA, frame.payload)
                continue
            assert frame.opcode != CLOSE, f"the server closed: {frame.payload!r}"
            assert frame.fin, "expected a single-frame message"
            return frame

    def inflate(self, frame: WireFrame) -> bytes:
        """RFC 7692 §7.2.2: append 00 00 ff ff to the payload and inflate (raw deflate)."""
        return self.inflater.decompress(frame.payload + b"\x00\x00\xff\xff")

    def send_frame(self, opcode: int, payload: bytes, rsv1: bool = False) -> None:
        mask = os.urandom(4)
        header = bytearray([0x80 | (0x40 if rsv1 else 0) | opcode])
        if len(payload) < 126:
            header.append(0x80 | len(payload))
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(bytes(header) + mask + masked)

    async def ask(self, kind: str) -> WireFrame:
        self.send_frame(TEXT, json.dumps({"type": kind}).encode())
        return await self.read_message()

    async def __aenter__(self) -> Wire:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closing handshake, then TCP close (also after a failed assertion)."""
        with contextlib.suppress(OSError):
            self.send_frame(CLOSE, (1000).to_bytes(2, "big"))
        with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
            while (await self.read_frame()).opcode != CLOSE:
                pass
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), BOUND)


def parameters(extension_header: str) -> dict[str, str | None]:
    name, *params = (p.strip() for p in extension_header.split(";"))
    assert name == "permessage-deflate", extension_header
    return {k.strip(): (v.strip() if v else None) for k, _, v in (p.partition("=") for p in params)}


# ---- the tests -------------------------------------------------------------------------------


@async_test
async def test_handshake_accepts_permessage_deflate(server: ServedMock) -> None:
    async with await Wire.open(server.port, "/default") as wire:
        assert wire.status == 101, wire.status
        accepted = wire.headers.get("sec-websocket-extensions")
        assert accepted is not None, f"permessage-deflate not accepted: {wire.headers}"
        params = parameters(accepted)
        # The client offered client_max_window_bits without a value: the server may choose one.
        bits = params.get("client_max_window_bits")
        assert bits is None or 8 <= int(bits) <= 15, params


@pytest.mark.parametrize(
    ("kind", "compressed"),
    [
        ("small", False),
        ("below", False),
        ("at", True),
        ("above", True),
        ("big", True),
    ],
)
@async_test
async def test_default_threshold_is_1kb(server: ServedMock, kind: str, compressed: bool) -> None:
    """Below 1024 bytes RSV1 is clear; from 1024 bytes on (as Node's ws: ``>= threshold``) it
    is set."""
    expected = text_of(SIZES[kind]).encode()
    async with await Wire.open(server.port, "/default") as wire:
        frame = await wire.ask(kind)
        assert frame.opcode == TEXT and not frame.masked, frame
        assert not (frame.rsv2 or frame.rsv3), frame
        assert frame.rsv1 is compressed, (
            f"{len(expected)}-byte message: RSV1 {'set' if frame.rsv1 else 'clear'}"
        )
        if compressed:
            assert len(frame.payload) < len(expected), "a compressed payload is smaller"
            assert wire.inflate(frame) == expected
        else:
            assert frame.payload == expected


@async_test
async def test_compressed_messages_share_one_context(server: ServedMock) -> None:
    """Small messages between big ones do not disturb the compression context."""
    async with await Wire.open(server.port, "/default") as wire:
        sizes = []
        for kind in ("big", "small", "big", "below", "above", "big"):
            frame = await wire.ask(kind)
            expected = text_of(SIZES[kind]).encode()
            data = wire.inflate(frame) if frame.rsv1 else frame.payload
            assert data == expected, kind
            assert frame.rsv1 is (len(expected) >= 1024), kind
            if kind == "big":
                sizes.append(len(frame.payload))
        assert sizes[-1] < sizes[0], f"context takeover makes repeats cheaper: {sizes}"


@async_test
async def test_threshold_counts_utf8_bytes_not_characters(server: ServedMock) -> None:
    async with await Wire.open(server.port, "/default") as wire:
        frame = await wire.ask("wide")
        assert frame.rsv1, "600 characters but 1200 bytes: above the 1 KB threshold"
        assert wire.inflate(frame).decode() == WIDE


@pytest.mark.parametrize(
    ("kind", "compressed"),
    [
        ("s99", False),
        ("s100", True),
        ("s101", True),
        ("big", True),
    ],
)
@async_test
async def test_threshold_setting_moves_the_cutoff(
    server: ServedMock, kind: str, compressed: bool
) -> None:
    expected = text_of(SIZES[kind]).encode()
    async with await Wire.open(server.port, "/low") as wire:
        assert "sec-websocket-extensions" in wire.headers, wire.headers
        frame = await wire.ask(kind)
        assert frame.rsv1 is compressed, (
            f"threshold 100B, {len(expected)}-byte message: RSV1 {frame.rsv1}"
        )
        assert (wire.inflate(frame) if frame.rsv1 else frame.payload) == expected


@async_test
async def test_compression_off_declines_the_extension(server: ServedMock) -> None:
    async with await Wire.open(server.port, "/off") as wire:
        assert wire.status == 101, wire.status
        assert "sec-websocket-extensions" not in wire.headers, (
            f"compression off must not accept permessage-deflate: {wire.headers}"
        )
        for kind in ("small", "big"):
            frame = await wire.ask(kind)
            assert not frame.rsv1, f"{kind}: RSV1 set with compression off"
            assert frame.payload == text_of(SIZES[kind]).encode()


@async_test
async def test_client_without_the_offer_gets_plain_frames(server: ServedMock) -> None:
    async with await Wire.open(server.port, "/default", offer=None) as wire:
        assert "sec-websocket-extensions" not in wire.headers, wire.headers
        frame = await wire.ask("big")
        assert not frame.rsv1 and frame.payload == text_of(2048).encode()


@async_test
async def test_server_inflates_compressed_client_messages(server: ServedMock) -> None:
    """A compressed frame from the client is inflated; the echo is compressed by size."""
    async with await Wire.open(server.port, "/default") as wire:
        params = parameters(wire.headers["sec-websocket-extensions"])
        bits = int(params.get("client_max_window_bits") or 15)
        deflater = zlib.compressobj(wbits=-bits)
        for size in (2000, 10, 3000):
            message = ("echo " + text_of(size)).encode()
            payload = deflater.compress(message) + deflater.flush(zlib.Z_SYNC_FLUSH)
            assert payload.endswith(b"\x00\x00\xff\xff")
            wire.send_frame(TEXT, payload[:-4], rsv1=True)
            frame = await wire.read_message()
            assert frame.rsv1 is (len(message) >= 1024), size
            assert (wire.inflate(frame) if frame.rsv1 else frame.payload) == message, size

"""permessage-deflate (RFC 7692) with a size threshold and lazily allocated zlib contexts.

websockets compresses every outgoing message once the extension is negotiated. Node's ``ws``
(whose behaviour the reference describes) leaves messages under a threshold — 1 KB by default —
uncompressed: compressing a short JSON message costs more CPU than the bytes it saves. RFC 7692
allows this per message: an uncompressed message is simply sent with RSV1 clear.

websockets also allocates both zlib contexts when the extension is negotiated, tens of KB per
connection even if the connection never sends a large message. Here each context is created on
first use, so idle connections and connections that only exchange small messages cost little.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CONT, CTRL_OPCODES, Frame
from websockets.typing import ExtensionParameter

__all__ = ["ThresholdDeflate", "ThresholdDeflateFactory"]


class ThresholdDeflate(PerMessageDeflate):
    """PerMessageDeflate that sends messages shorter than ``threshold`` bytes uncompressed."""

    def __init__(self, base: PerMessageDeflate, threshold: int) -> None:
        # The parent's __init__ would allocate the zlib contexts; copy its settings instead.
        self.remote_no_context_takeover = base.remote_no_context_takeover
        self.local_no_context_takeover = base.local_no_context_takeover
        self.remote_max_window_bits = base.remote_max_window_bits
        self.local_max_window_bits = base.local_max_window_bits
        self.compress_settings = base.compress_settings
        self.decode_cont_data = False
        self.threshold = threshold
        self._sending_raw = False  # the message being sent goes out uncompressed

    def __getattr__(self, name: str) -> Any:
        # Only called when the attribute is missing: the contexts are created on first use
        # (and again after the parent deletes them under no_context_takeover).
        if name == "encoder":
            self.encoder = zlib.compressobj(
                wbits=-self.local_max_window_bits, **self.compress_settings
            )
            return self.encoder
        if name == "decoder":
            self.decoder = zlib.decompressobj(wbits=-self.remote_max_window_bits)
            return self.decoder
        raise AttributeError(name)

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is not CONT:
            # Decided on the first frame of a message, kept for its continuation frames.
            self._sending_raw = len(frame.data) < self.threshold
        if self._sending_raw:
            return frame
        return super().encode(frame)


class ThresholdDeflateFactory(ServerPerMessageDeflateFactory):
    """Negotiates permessage-deflate like websockets' defaults, with a threshold."""

    def __init__(self, threshold: int) -> None:
        super().__init__(
            server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
        )
        self.threshold = threshold

    def process_request_params(
        self,
        params: Sequence[ExtensionParameter],
        accepted_extensions: Sequence[Extension],
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, extension = super().process_request_params(params, accepted_extensions)
        return response, ThresholdDeflate(extension, self.threshold)

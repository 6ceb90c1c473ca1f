"""Limits of the WebSocket protocol (RFC 6455) that a scenario can run into.

Kept apart from the engine so that validation (which runs before anything is compiled) and the
admin API check against the same numbers the engine enforces at run time.
"""

from __future__ import annotations

__all__ = ["MAX_CLOSE_REASON_BYTES", "MAX_CONTROL_PAYLOAD"]

#: Most bytes a control frame (close, ping, pong) may carry: RFC 6455 §5.5. websockets refuses
#: to send more (ProtocolError), so the engine checks first and fails the action at its line.
MAX_CONTROL_PAYLOAD = 125
#: Most bytes of UTF-8 a close reason may have: the close frame's payload less the 2-byte code.
MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2

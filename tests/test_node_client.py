"""The example scenarios driven by Node's `ws` client (the reference's own runtime).

Needs node and the packages of tests/node (`npm ci --prefix tests/node`, which CI runs).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from support import UNIT, ServedMock, needs, run_process

NODE_DIR = Path(__file__).parent / "node"

pytestmark = [
    pytest.mark.e2e,
    needs(
        shutil.which("node") is None or not (NODE_DIR / "node_modules" / "ws").exists(),
        reason="needs node and `npm ci --prefix tests/node`",
    ),
]


def test_node_ws_client_sees_every_promise_of_the_reference(mock_server: ServedMock) -> None:
    result = run_process("node", NODE_DIR / "clients.mjs", mock_server.base, timeout=60 * UNIT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    chat = report["chat"]
    assert [m["type"] for m in chat["welcome"]] == ["connected", "connected"]
    alice_id = chat["welcome"][0]["id"]
    assert chat["joined"] == {"type": "user-joined", "username": "Bob"}
    for message in chat["messages"]:
        assert message["type"] == "chat-message"
        assert message["username"] == "Alice" and message["message"] == "Hello!"
        assert abs(message["timestamp"] - time.time() * 1000) < 60_000 * UNIT
    assert chat["left"] == {"type": "user-left", "userId": alice_id}
    # ws offers permessage-deflate by default, and the route accepts it.
    assert "permessage-deflate" in chat["extensions"]
    assert report["private"] == {
        "none": {"code": 4001, "reason": "No token provided"},
        "bad": {"code": 4002, "reason": "Invalid token"},
        "alice": {"type": "authenticated", "user": {"name": "Alice"}},
    }
    assert report["echo"] == {"binary": [0, 1, 2, 255]}

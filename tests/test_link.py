"""Writes coalesced per turn of the event loop (runtime/link.py), seen on real sockets.

A server in this process serves real clients; the transport of a client's link is wrapped to
count the writes it is given (each ``transport.write`` is a ``send`` system call when the
socket can take the bytes), and the bytes still go to the socket.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from support import RawClient, async_test, serving
from websockets.frames import Opcode

from scenario_engine.runtime.link import Link

SCENARIO = """
route /ping {
  on message type "ping" { send { type: "pong", seq: msg.seq } }
}
route /chat {
  on message type "join" { join "room" send { type: "joined" } }
  on message type "say" { broadcast { type: "said", n: msg.n } to "room" include self }
}
"""


class CountingTransport:
    """A real transport, with the sizes of the writes it was given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append(len(data))
        self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def counted(server: Any, count: int) -> list[CountingTransport]:
    """Wrap the transports of the server's ``count`` open connections (oldest first)."""
    links: list[Link] = list(server._live.values())
    assert len(links) == count, links
    transports = []
    for link in links:
        transport = CountingTransport(link.transport)
        link.transport = transport  # type: ignore[assignment]
        transports.append(transport)
    return transports


async def frames(client: RawClient, count: int) -> list[Any]:
    received = []
    for _ in range(count):
        frame = await client.next_frame()
        assert frame.opcode is Opcode.TEXT, frame
        received.append(json.loads(frame.data))
    return received


@async_test
async def test_the_replies_to_eight_pipelined_requests_are_one_write() -> None:
    async with serving(SCENARIO) as server, await RawClient.open(server.url("/ping")) as client:
        await asyncio.sleep(0)
        [transport] = counted(server, 1)
        for seq in range(8):  # one TCP write: the server reads them in one go
            client.protocol.send_text(json.dumps({"type": "ping", "seq": seq}).encode())
        client.flush()
        replies = await frames(client, 8)
    assert [reply["seq"] for reply in replies] == list(range(8))
    assert len(transport.writes) == 1, transport.writes


@async_test
async def test_a_burst_of_broadcasts_is_one_write_per_receiver() -> None:
    async with serving(SCENARIO) as server:
        clients = [await RawClient.open(server.url("/chat")) for _ in range(3)]
        try:
            for client in clients:
                client.protocol.send_text(b'{"type": "join"}')
                client.flush()
                assert await frames(client, 1) == [{"type": "joined"}]
            transports = counted(server, 3)
            sender = clients[0]
            for n in range(8):
                sender.protocol.send_text(json.dumps({"type": "say", "n": n}).encode())
            sender.flush()
            for client in clients:
                heard = await frames(client, 8)
                assert [message["n"] for message in heard] == list(range(8))
        finally:
            for client in clients:
                await client.aclose()
    # The sender's own copies go out with the rest of its turn; every receiver gets one write.
    assert [len(t.writes) for t in transports] == [1, 1, 1], [t.writes for t in transports]


@async_test
async def test_a_message_read_with_the_close_frame_behind_it_is_still_handled() -> None:
    # A client that sends its last message and closes at once (socket.io-client's DISCONNECT
    # packet, then close): both frames come in one read, and the protocol is CLOSING before
    # the message is handed over. The message is still the client's, and its handler runs.
    async with serving(SCENARIO) as server:
        listener = await RawClient.open(server.url("/chat"))
        leaver = await RawClient.open(server.url("/chat"))
        try:
            for client in (listener, leaver):
                client.protocol.send_text(b'{"type": "join"}')
                client.flush()
                assert await frames(client, 1) == [{"type": "joined"}]
            leaver.protocol.send_text(b'{"type": "say", "n": 1}')
            leaver.protocol.send_close(1000, "bye")
            leaver.flush()
            assert await frames(listener, 1) == [{"type": "said", "n": 1}]
            # The leaver gets the close echoed, and not its own message: after its close
            # frame, nothing but a close may be sent to it.
            event = await leaver.next_frame()
            assert event.opcode is Opcode.CLOSE, event
        finally:
            await listener.aclose()
            await leaver.aclose()


def test_a_fragment_limit_from_the_environment_that_is_no_number_is_a_warning_not_a_crash() -> None:
    import os
    import subprocess
    import sys

    code = "from scenario_engine.runtime import link; print(link.FRAGMENT_LIMIT)"
    for value, limit, warned in (("abc", 2**17, True), ("4096", 4096, False)):
        env = {**os.environ, "WEBSOCKETS_MAX_FRAGMENTS": value}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) == limit
        assert ("is not a positive whole number" in done.stderr) is warned
        assert "Traceback" not in done.stderr

"""The recording proxy: what a client sees through it, what the server sees, what is journaled;
and the ``record`` command around it, as a real process stopped with Ctrl+C.

The proxy runs in this process for the tests of its behaviour on the wire (real sockets on
port 0, real clients); the server behind it is ``RawTarget``, a WebSocket server on websockets'
sans-I/O protocol that shows the test every frame it receives (pings and pongs included) and
does only what the test tells it. Every wait is a multiple of UNIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from support import (
    BOUND,
    UNIT,
    RawClient,
    async_test,
    close_of,
    closed,
    handshake_request,
    handshake_status,
    recv,
    run_cli,
    self_signed_certificate,
    start_backend,
    start_record,
)
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from scenario_engine.recording import relay
from scenario_engine.recording.proxy import RecordingProxy
from scenario_engine.runtime.journal import Journal
from scenario_engine.testing.runner import unverified_tls

pytestmark = pytest.mark.e2e


# ---- a server that shows every frame -------------------------------------------------------


class _MuteProtocol(ServerProtocol):
    """A server protocol that answers neither pings nor close frames."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.PING, Opcode.CLOSE):
            self.events.append(frame)
            return
        super().recv_frame(frame)


class TargetConnection:
    """A connection the target accepted: its request, the frames it received, and what the
    test makes it do."""

    def __init__(
        self,
        request: Request,
        protocol: ServerProtocol,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.request = request
        self.protocol = protocol
        self.writer = writer
        self.frames: asyncio.Queue[Frame | None] = asyncio.Queue()  # None: TCP ended
        self.ended = False  # the protocol ended the stream

    def flush(self) -> None:
        chunks = self.protocol.data_to_send()
        if self.writer.is_closing() or self.ended:
            return
        data = b"".join(chunks)
        if data:
            self.writer.write(data)
        if chunks and chunks[-1] == b"":
            self.ended = True
            if self.writer.can_write_eof():
                self.writer.write_eof()
            else:  # TLS
                self.writer.close()

    async def next_frame(self, within: float = BOUND) -> Frame | None:
        """The next frame the client sent (None: the TCP connection ended)."""
        return await asyncio.wait_for(self.frames.get(), within)

    def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            self.protocol.send_text(data.encode())
        else:
            self.protocol.send_binary(data)
        self.flush()

    def ping(self, data: bytes) -> None:
        self.protocol.send_ping(data)
        self.flush()

    def close(self, code: int, reason: str) -> None:
        self.protocol.send_close(code, reason)
        self.flush()

    def drop(self) -> None:
        self.writer.transport.abort()


class RawTarget:
    """The server behind the proxy. ``echo``: every message is sent back; ``mute``: neither
    pings nor closes are answered; ``subprotocols``: those it speaks; ``refuse``: a response
    instead of the handshake for the requests it returns one for; ``response_headers``: added
    to its 101; ``greeting``: a message sent with the 101; ``tls``: serve wss://."""

    def __init__(
        self,
        *,
        echo: bool = True,
        mute: bool = False,
        subprotocols: list[str] | None = None,
        refuse: Callable[[Request], Response | None] | None = None,
        response_headers: dict[str, str] | None = None,
        greeting: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.echo = echo
        self.mute = mute
        self.subprotocols = subprotocols
        self.refuse = refuse
        self.response_headers = response_headers or {}
        self.greeting = greeting
        self.tls = tls
        self.accepted: asyncio.Queue[TargetConnection] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> RawTarget:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        scheme = "ws" if self.tls is None else "wss"
        return f"{scheme}://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def connection(self) -> TargetConnection:
        return await asyncio.wait_for(self.accepted.get(), BOUND)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        kind = _MuteProtocol if self.mute else ServerProtocol
        protocol = kind(subprotocols=[Subprotocol(s) for s in self.subprotocols or []] or None)
        conn: TargetConnection | None = None
        try:
            while True:
                data = await reader.read(65536)
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                for event in protocol.events_received():
                    if isinstance(event, Request):
                        conn = TargetConnection(event, protocol, writer)
                        self._answer(conn)
                    elif isinstance(event, Frame) and conn is not None:
                        conn.frames.put_nowait(event)
                        if self.echo and event.opcode is Opcode.TEXT:
                            conn.send(bytes(event.data).decode())
                        elif self.echo and event.opcode is Opcode.BINARY:
                            conn.send(bytes(event.data))
                if conn is not None:
                    conn.flush()
                if not data:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if conn is not None:
                conn.frames.put_nowait(None)
            writer.close()
            self._tasks.discard(task)

    def _answer(self, conn: TargetConnection) -> None:
        refusal = self.refuse(conn.request) if self.refuse else None
        response = refusal or conn.protocol.accept(conn.request)
        if refusal is None:
            for name, value in self.response_headers.items():
                response.headers[name] = value
        conn.protocol.send_response(response)
        if response.status_code == 101 and self.greeting is not None:
            conn.protocol.send_text(self.greeting.encode())  # in the same write as the 101
        conn.flush()
        if response.status_code == 101:
            self.accepted.put_nowait(conn)


@contextlib.asynccontextmanager
async def proxying(
    target: RawTarget | str, **options: Any
) -> AsyncIterator[tuple[RecordingProxy, list[str], list[str]]]:
    """A proxy in front of ``target`` on a free port; its journal, and the lines it said and
    warned."""
    said: list[str] = []
    warned: list[str] = []
    url = target if isinstance(target, str) else target.url
    proxy = RecordingProxy(
        url,
        Journal(),
        port=0,
        say=said.append,
        warn=warned.append,
        **options,
    )
    await proxy.start()
    try:
        yield proxy, said, warned
    finally:
        await asyncio.wait_for(proxy.close(), 2 * BOUND)


def events(proxy: RecordingProxy, *kinds: str) -> list[dict[str, Any]]:
    return [e for e in proxy.journal.events() if not kinds or e["event"] in kinds]


def shown(event: dict[str, Any]) -> dict[str, Any]:
    """An event without what changes from run to run."""
    return {k: v for k, v in event.items() if k not in ("seq", "time", "connection")}


# ---- transparency ----------------------------------------------------------------------------


@async_test
async def test_a_client_cannot_tell_the_proxy_from_the_server() -> None:
    """The same client, against the server and then through the proxy, observes the same
    handshake, messages, pong and close; and the server observes the same client."""
    async with RawTarget(
        subprotocols=["chat.v2", "chat.v1"],
        response_headers={"Set-Cookie": "session=s1"},
        greeting="welcome",
    ) as target:

        async def conversation(url: str) -> dict[str, Any]:
            async with connect(
                url + "/api/chat?room=blue&n=1",
                subprotocols=[Subprotocol("chat.v1"), Subprotocol("chat.v3")],
                additional_headers={
                    "Authorization": "Bearer t0k3n",
                    "Cookie": "theme=dark",
                    "X-Team": "blue",
                },
                origin="http://app.example",  # type: ignore[arg-type]
                user_agent_header="team-client/1.0",
                open_timeout=BOUND,
            ) as ws:
                conn = await target.connection()
                seen: dict[str, Any] = {
                    "subprotocol": ws.subprotocol,
                    "cookie": ws.response.headers.get("Set-Cookie"),
                    # Sent with the handshake's answer, before the client says anything.
                    "greeting": await recv(ws),
                }
                await ws.send("héllo")
                await ws.send(b"\x00\xff binary")
                seen["echoes"] = [await recv(ws), await recv(ws)]
                conn.send('{"type": "push"}')
                conn.send(b"\x01\x02")
                seen["pushes"] = [await recv(ws), await recv(ws)]
                await asyncio.wait_for(await ws.ping(b"are you there"), BOUND)
                conn.close(4001, "bad token")
                seen["close"] = await closed(ws)
            received = []
            while (frame := await conn.next_frame()) is not None:
                received.append((frame.opcode.name, bytes(frame.data)))
            headers = conn.request.headers
            seen["server saw"] = {
                "path": conn.request.path,
                "headers": {
                    name: headers.get(name)
                    for name in (
                        "Authorization",
                        "Cookie",
                        "Origin",
                        "User-Agent",
                        "X-Team",
                        "Sec-WebSocket-Protocol",
                    )
                },
                "frames": received,
            }
            return seen

        direct = await conversation(target.url)
        async with proxying(target) as (proxy, _, _):
            through = await conversation(proxy.url)
    assert through == direct
    assert direct["subprotocol"] == "chat.v1"
    assert direct["close"] == (4001, "bad token")
    assert direct["server saw"]["path"] == "/api/chat?room=blue&n=1"
    assert direct["server saw"]["headers"]["Authorization"] == "Bearer t0k3n"
    # The ping reached the server once, and its close came back as the client's echo.
    assert direct["server saw"]["frames"] == [
        ("TEXT", "héllo".encode()),
        ("BINARY", b"\x00\xff binary"),
        ("PING", b"are you there"),
        ("CLOSE", bytes(direct["server saw"]["frames"][-1][1])),
    ]


@async_test
async def test_the_client_gets_the_servers_pong_only() -> None:
    """A client's ping is answered by the server, through the proxy, once; a server that does
    not answer pings leaves it without a pong: the proxy never answers for it."""
    for pongs in (True, False):
        async with (
            RawTarget(mute=not pongs) as target,
            proxying(target) as (proxy, _, _),
            await RawClient.open(proxy.url + "/ws") as client,
        ):
            conn = await target.connection()
            client.protocol.send_ping(b"p1")
            client.flush()
            assert (await conn.next_frame()).opcode is Opcode.PING  # type: ignore[union-attr]
            client.protocol.send_text(b"after the ping")
            client.flush()
            frames = [await client.next_frame()]
            if frames[0].opcode is Opcode.PONG:
                frames.append(await client.next_frame())
        kinds = [(f.opcode.name, bytes(f.data)) for f in frames]
        expected = [("PONG", b"p1")] if pongs else []
        assert kinds == [*expected, ("TEXT", b"after the ping")]


@async_test
async def test_the_servers_ping_reaches_the_client_and_its_pong_the_server() -> None:
    async with (
        RawTarget() as target,
        proxying(target) as (proxy, _, _),
        await RawClient.open(proxy.url + "/ws") as client,
    ):
        conn = await target.connection()
        conn.ping(b"server ping")
        frame = await client.next_frame()  # RawClient's protocol answers it
        assert (frame.opcode, frame.data) == (Opcode.PING, b"server ping")
        pong = await conn.next_frame()
        assert pong is not None and (pong.opcode, pong.data) == (Opcode.PONG, b"server ping")


@async_test
async def test_a_clients_close_code_and_reason_reach_the_server() -> None:
    async with RawTarget() as target, proxying(target) as (proxy, said, _):
        async with connect(proxy.url + "/ws", open_timeout=BOUND) as ws:
            conn = await target.connection()
            await ws.close(4000, "bye for now")
        frame = await conn.next_frame()
        assert frame is not None and close_of(frame).code == 4000
        assert close_of(frame).reason == "bye for now"
        assert (ws.close_code, ws.close_reason) == (4000, "bye for now")
        assert await conn.next_frame() is None  # then the proxy closed TCP
        closes = events(proxy, "close")
    assert [shown(e) for e in closes] == [
        {"event": "close", "code": 4000, "reason": "bye for now", "by": "client"}
    ]
    assert re.fullmatch(r"[0-9a-f]{12} closed by the client: 4000 \"bye for now\"", said[-1])


@async_test
async def test_a_dropped_connection_is_dropped_on_the_other_side() -> None:
    async with RawTarget() as target, proxying(target) as (proxy, said, _):
        # The server drops: the client sees an abrupt close, not a clean one.
        async with connect(proxy.url + "/ws", open_timeout=BOUND) as ws:
            (await target.connection()).drop()
            assert await closed(ws) == (1006, "")
        # The client drops: the server's TCP connection ends without a close frame.
        client = await RawClient.open(proxy.url + "/ws")
        conn = await target.connection()
        client.writer.transport.abort()
        assert await conn.next_frame() is None
        await asyncio.sleep(0.05 * UNIT)  # the proxy journals the second drop
        closes = [shown(e) for e in events(proxy, "close")]
    assert closes == [
        {"event": "close", "code": 1006, "reason": "", "by": "server"},
        {"event": "close", "code": 1006, "reason": "", "by": "client"},
    ]
    assert said[-1].endswith("dropped by the client (1006)")


@async_test
async def test_a_refused_handshake_reaches_the_client_as_the_server_answered_it() -> None:
    def refuse(request: Request) -> Response | None:
        if "token=" in request.path:
            return None
        headers = Headers([("WWW-Authenticate", "Bearer"), ("Content-Length", "14")])
        return Response(401, "Unauthorized", headers, b"missing token\n")

    async with RawTarget(refuse=refuse) as target, proxying(target) as (proxy, said, _):
        direct = await handshake_status(target.url + "/feed?room=1", user_agent_header="ua/2")
        refused = await handshake_status(proxy.url + "/feed?room=1", user_agent_header="ua/2")
        rejects = events(proxy)
    for seen in (direct, refused):
        response = seen.response
        assert response.status_code == 401
        assert response.body == b"missing token\n"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    (reject,) = rejects  # a refusal only: no connection
    assert reject["event"] == "reject"
    assert (reject["path"], reject["query"], reject["status"]) == ("/feed", {"room": "1"}, 401)
    assert reject["reason"] == "missing token"
    assert reject["headers"]["user-agent"] == "ua/2"
    assert said == ["refused /feed?room=1: HTTP 401 missing token"]


@async_test
async def test_a_close_right_after_the_handshake_is_journaled_as_a_refusal() -> None:
    """A server that closes with 4000–4999 before any message refused the client, as an auth
    block's ``reject 4001`` does; once a message has passed, a close is a close."""
    async with RawTarget() as target, proxying(target) as (proxy, said, _):
        async with connect(proxy.url + "/feed?token=nope", open_timeout=BOUND) as ws:
            (await target.connection()).close(4001, "unauthorized")
            assert await closed(ws) == (4001, "unauthorized")
        async with connect(proxy.url + "/feed?token=good", open_timeout=BOUND) as ws:
            conn = await target.connection()
            conn.send("welcome")
            assert await recv(ws) == "welcome"
            conn.close(4001, "unauthorized")
            assert await closed(ws) == (4001, "unauthorized")
        await asyncio.sleep(0.05 * UNIT)
        recorded = [shown(e) for e in events(proxy)]
    reject, connect_, out, close = recorded
    assert reject == {
        "event": "reject",
        "path": "/feed",
        "query": {"token": "nope"},
        "headers": reject["headers"],
        "reason": "unauthorized",
        "code": 4001,
    }
    assert "upgrade" in reject["headers"]
    assert (connect_["event"], connect_["route"], connect_["query"]) == (
        "connect",
        None,
        {"token": "good"},
    )
    assert (connect_["subprotocol"], connect_["protocols"]) == (None, [])
    assert out == {"event": "out", "connections": out["connections"], "text": "welcome"}
    assert close == {"event": "close", "code": 4001, "reason": "unauthorized", "by": "server"}
    assert said[1].endswith('refused: closed 4001 "unauthorized" after the handshake')


@async_test
async def test_the_journal_holds_the_conversation_as_the_server_had_it() -> None:
    async with (
        RawTarget(subprotocols=["v1"]) as target,
        proxying(target, headers=[("X-Recorded-By", "proxy")]) as (proxy, said, _),
    ):
        async with connect(
            proxy.url + "/echo", subprotocols=[Subprotocol("v0"), Subprotocol("v1")]
        ) as ws:
            await ws.send('{"type": "hello"}')
            assert await recv(ws) == '{"type": "hello"}'
            await ws.send(b"\x00\x01\x02")
            assert await recv(ws) == b"\x00\x01\x02"
        await asyncio.sleep(0.05 * UNIT)
        conn = await target.connection()
        recorded = events(proxy)
    assert conn.request.headers["X-Recorded-By"] == "proxy"
    assert [e["event"] for e in recorded] == ["connect", "in", "out", "in", "out", "close"]
    connect_ = recorded[0]
    assert (connect_["path"], connect_["subprotocol"], connect_["protocols"]) == (
        "/echo",
        "v1",
        ["v0", "v1"],
    )
    assert connect_["headers"]["x-recorded-by"] == "proxy"
    ids = {e.get("connection") for e in recorded} | {
        c for e in recorded for c in e.get("connections", ())
    }
    assert ids - {None} == {connect_["connection"]}
    assert [e.get("text", e.get("binary")) for e in recorded[1:5]] == [
        '{"type": "hello"}',
        '{"type": "hello"}',
        "AAEC",
        "AAEC",
    ]
    assert [line.split(" ", 1)[1] for line in said] == [
        "connected /echo (v1)",
        '→ {"type": "hello"}',
        '← {"type": "hello"}',
        "→ binary 3 bytes: 00 01 02",
        "← binary 3 bytes: 00 01 02",
        "closed by the client: 1000",
    ]


@async_test
async def test_stopping_closes_both_sides_with_1001_and_cuts_who_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(relay, "CLOSE_TIMEOUT", 0.2 * UNIT)
    async with RawTarget(mute=True) as target:
        async with proxying(target) as (proxy, said, _):
            polite = await connect(proxy.url + "/ws", open_timeout=BOUND)
            silent = await RawClient.open(proxy.url + "/ws", answer=False)
            conns = [await target.connection(), await target.connection()]
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.wait_for(proxy.close(), BOUND)
            took = loop.time() - started
            recorded = [shown(e) for e in events(proxy, "close")]
        assert await closed(polite) == (1001, "")
        assert close_of(await silent.next_frame()).code == 1001
        with pytest.raises((EOFError, OSError)):  # then cut off
            await silent.next_event()
        await silent.aclose()
        for conn in conns:
            frame = await conn.next_frame()
            assert frame is not None and close_of(frame).code == 1001
    # The silent client and the mute server were cut at the close timeout.
    assert 0.2 * UNIT <= took < BOUND, took
    assert recorded == 2 * [{"event": "close", "code": 1001, "reason": "", "by": "client"}]
    assert said[-1].endswith("closed by the proxy, stopping: 1001")


@async_test
async def test_an_unreachable_server_gets_the_client_a_502_and_the_proxy_goes_on() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there once it is closed
    async with proxying(f"ws://127.0.0.1:{port}") as (proxy, said, warned):
        for _ in range(2):
            refused = await handshake_status(proxy.url + "/chat")
            assert refused.response.status_code == 502
        assert refused.response.body is not None
        assert b"cannot reach ws://127.0.0.1:" in refused.response.body
        assert events(proxy) == [] and said == []
    assert len(warned) == 2
    assert re.fullmatch(
        rf"error: cannot reach ws://127\.0\.0\.1:{port}/chat: connection refused \(is the server "
        r"running\?\); the client got 502 Bad Gateway",
        warned[0],
    ), warned


@async_test
async def test_a_wss_server_is_recorded_with_its_certificate_checked_or_insecure(
    tmp_path: Path,
) -> None:
    """A self-signed wss:// server: the proxy refuses it (502, and why) unless told to trust
    any certificate, as ``test --insecure`` does."""
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with RawTarget(tls=context) as target:
        async with proxying(target, tls=unverified_tls()) as (proxy, _, warned):
            async with connect(proxy.url + "/echo", open_timeout=BOUND) as ws:
                await ws.send("over TLS")
                assert await recv(ws) == "over TLS"
            assert warned == []
        async with proxying(target) as (proxy, _, warned):
            refused = await handshake_status(proxy.url + "/echo")
        url = target.url
    assert refused.response.status_code == 502
    assert warned[0].startswith(f"error: cannot reach {url}/echo: "), warned
    assert "(--insecure accepts any certificate)" in warned[0], warned


@async_test
async def test_misbehaving_clients_do_not_take_the_proxy_down() -> None:
    async with RawTarget() as target, proxying(target) as (proxy, _, _):
        host, port = "127.0.0.1", proxy.port
        for garbage in (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # TLS on plain port
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not a WebSocket handshake
            handshake_request("/ws")[:30],  # half a request, then gone
        ):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(garbage)
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), BOUND)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
            writer.close()
        # A client breaking the protocol after its handshake: an unmasked frame.
        client = await RawClient.open(proxy.url + "/ws")
        conn = await target.connection()
        client.send_raw(b"\x81\x02hi")
        assert close_of(await client.next_frame()).code == 1002
        frame = await conn.next_frame()
        assert frame is not None and close_of(frame).code == 1002
        await client.aclose()
        # The proxy still relays a well-behaved client.
        async with connect(proxy.url + "/ws", open_timeout=BOUND) as ws:
            await ws.send("still there?")
            assert await recv(ws) == "still there?"


@async_test
async def test_a_slow_client_slows_the_server_down_instead_of_filling_the_proxy() -> None:
    """A client that does not read: the proxy stops reading from the server (which then
    cannot write more than the sockets' buffers hold), and hands everything over once the
    client reads again, in order."""
    message, total = b"x" * 65536, 1024  # 64 MiB offered
    async with RawTarget(echo=False) as target, proxying(target) as (proxy, _, _):
        client = await RawClient.open(proxy.url + "/ws", rcvbuf=65536, max_size=None)
        conn = await target.connection()
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for _ in range(total):
                conn.send(message)
                await conn.writer.drain()
                sent += 1

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(1 * UNIT)
        stalled = sent
        assert stalled < total // 2, f"the server wrote {stalled * 64} KiB while nobody read"
        received = 0
        while received < total:
            frame = await client.next_frame()
            assert frame.data == message
            received += 1
        await asyncio.wait_for(flooding, BOUND)
        await client.aclose()
    print(f"the server had written {stalled * 64} KiB of {total * 64} KiB while the client slept")


# ---- the record command, a real process --------------------------------------------------------


def test_bad_arguments_are_one_line_errors_with_exit_2(tmp_path: Path) -> None:
    out = str(tmp_path / "out.mock")
    cases = [
        (["--target", "ws://127.0.0.1:9", "-o", str(tmp_path / "o.txt")], "a scenario file ends"),
        (["--target", "ws://127.0.0.1:9", "-o", str(tmp_path / "no" / "x.mock")], "no folder"),
        (["--target", "http://127.0.0.1:9", "-o", out], "must be a ws:// or wss:// URL"),
        (["--target", "ws://127.0.0.1:9?x=1", "-o", out], "no query"),
        (["--target", "ws://127.0.0.1:9", "-o", out, "--header", "no colon"], "NAME: VALUE"),
        (["--target", "ws://127.0.0.1:9", "-o", out, "--header", "Host: x"], "--header Host:"),
        (["--from-journal", "j.jsonl", "-o", out, "--port", "0"], "--port is for recording"),
        (["--target", "ws://127.0.0.1:9", "--from-journal", "j.jsonl", "-o", out], "not allowed"),
        (["--target", "ws://127.0.0.1:9"], "required: -o/--output"),
    ]
    for args, message in cases:
        result = run_cli("record", *args)
        assert result.status == 2, (args, result)
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and message in errors[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())


def test_record_help_explains_the_command() -> None:
    result = run_cli("record", "--help")
    assert result.status == 0
    text = " ".join(result.stdout.split())
    for words in ("--target URL", "--from-journal FILE", "-o OUT", "--raw", "Ctrl+C", "1001"):
        assert words in text, words


def test_ctrl_c_with_no_client_writes_nothing_and_says_so(tmp_path: Path) -> None:
    backend = start_backend("chat_backend.py")
    out = tmp_path / "chat.mock"
    try:
        recorder = start_record(backend.url, out)
        status = recorder.stop(signal.SIGINT)
    finally:
        backend.stop()
    assert status == 1
    assert recorder.err.wait_for("nothing recorded") == (
        f"nothing recorded: no client connected; {out} not written"
    )
    assert not out.exists()


@async_test
async def test_record_prints_each_connection_and_message_and_writes_out_on_ctrl_c(
    tmp_path: Path,
) -> None:
    """A real ``record`` process in front of the chat backend: its console lines, its
    --journal file as the conversation goes, and on SIGINT: the clients still connected
    closed with 1001, OUT written and summed up."""
    backend = start_backend("chat_backend.py")
    out, journal = tmp_path / "chat.mock", tmp_path / "chat.jsonl"
    recorder = start_record(backend.url, out, "--journal", str(journal))
    try:
        async with connect(recorder.url + "/api/ws/chat", open_timeout=BOUND) as alice:
            welcome = json.loads(await recv(alice))
            await alice.send(json.dumps({"type": "join", "username": "Alice"}))
            await alice.send(json.dumps({"type": "message", "username": "Alice", "message": "hi"}))
            said = json.loads(await recv(alice))
            assert said["message"] == "hi"
            first = json.loads(journal.read_text().splitlines()[0])
            assert first["event"] == "connect" and first["path"] == "/api/ws/chat"
            status = await asyncio.to_thread(recorder.stop, signal.SIGINT)
            assert await closed(alice) == (1001, "")
    finally:
        backend.stop()
    assert status == 0, recorder.err.lines
    lines = [line.split(" ", 2)[2] for line in recorder.out.lines if re.match(r"\d\d:", line)]
    conn = first["connection"]
    clock = r"\d\d:\d\d:\d\d\.\d{3}"
    assert re.match(rf"{clock} {conn} connected /api/ws/chat$", recorder.out.lines[2])
    assert lines == [
        "connected /api/ws/chat",
        f'← {{"type": "connected", "id": "{welcome["id"]}"}}',
        '→ {"type": "join", "username": "Alice"}',
        '→ {"type": "message", "username": "Alice", "message": "hi"}',
        "← " + json.dumps(said),
        "closed by the proxy, stopping: 1001",
    ]
    assert recorder.out.lines[-3] == "stopping: closing connections with 1001 (going away)"
    assert re.fullmatch(
        rf"wrote {re.escape(str(out))}: 1 route, \d+ handlers?, \d+ tests? "
        r"\(from 1 connection, 0 refusals, 4 messages\)",
        recorder.out.lines[-1],
    )
    assert out.exists()
    kinds = [json.loads(line)["event"] for line in journal.read_text().splitlines()]
    assert kinds == ["connect", "out", "in", "in", "out", "close"]


@async_test
async def test_quiet_prints_no_traffic(tmp_path: Path) -> None:
    backend = start_backend("chat_backend.py")
    out = tmp_path / "chat.yaml"
    recorder = start_record(backend.url, out, "--quiet")
    try:
        async with connect(recorder.url + "/api/ws/chat", open_timeout=BOUND) as ws:
            await recv(ws)
        status = await asyncio.to_thread(recorder.stop, signal.SIGINT)
    finally:
        backend.stop()
    assert status == 0, recorder.err.lines
    starts = [f"recording {backend.url} through ws://", "ready: ", "stopping: ", f"wrote {out}: "]
    printed = [line for line in recorder.out.lines if not line.startswith("note: ")]
    assert len(printed) == len(starts), recorder.out.lines
    for line, start in zip(printed, starts, strict=True):
        assert line.startswith(start), (line, start)
    assert out.read_text(encoding="utf-8").startswith(("routes:", "#", "prefix:"))


@async_test
async def test_record_tells_an_unreachable_server_on_the_console_and_goes_on(
    tmp_path: Path,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    recorder = start_record(f"ws://127.0.0.1:{port}", tmp_path / "x.mock")
    try:
        for _ in range(2):
            refused = await handshake_status(recorder.url + "/chat")
            assert refused.response.status_code == 502
        line = recorder.err.wait_for("cannot reach")
        assert recorder.process.poll() is None
    finally:
        status = recorder.stop(signal.SIGTERM)
    assert line.startswith(f"error: cannot reach ws://127.0.0.1:{port}/chat: ")
    assert line.endswith("; the client got 502 Bad Gateway")
    assert status == 1  # nothing was recorded

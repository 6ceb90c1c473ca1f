"""What the tests share: paths and the time unit; the command line, in this process or as a real
one; a real `scenario-engine serve` process on a free port; the clients, raw or not, that
talk to servers; and a real Redis for the servers joined through it.

Every wait in the suite is a multiple of UNIT.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import http.client
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.sync.client import ClientConnection as SyncClientConnection
from websockets.sync.client import connect as sync_connect
from websockets.uri import parse_uri

from scenario_engine.cli import main
from scenario_engine.language.loader import load_source
from scenario_engine.language.source import Source
from scenario_engine.runtime.compiler import compile_program
from scenario_engine.runtime.connection import Connection, Request
from scenario_engine.runtime.effects import Accepted, Broadcast, Effect, Send
from scenario_engine.runtime.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
#: In CI (``.ci/run`` sets it), a test whose tools are missing (Node's packages, Chromium)
#: runs anyway and fails, instead of being skipped: CI must prove what it claims.
REQUIRE_ALL = os.environ.get("SCENARIO_TEST_REQUIRE_ALL") == "1"
#: Every wait in the suite is a multiple of this, so a slow machine can scale them all.
UNIT = float(os.environ.get("SCENARIO_TEST_UNIT", "1.0"))
#: The longest any single expected event (a message, a close, an answer) may take to arrive.
BOUND = 5 * UNIT
#: The longest a whole test's client side may take.
TEST_BOUND = 20 * UNIT


# ---- the command line ------------------------------------------------------------------------


class CliResult(NamedTuple):
    """What a command printed, and its exit status."""

    status: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, cwd: Path = ROOT) -> CliResult:
    """``scenario-engine ARGS`` in this process, in ``cwd``: its exit status (argparse's own
    exits included) and what it printed."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(cwd),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    return CliResult(status, stdout.getvalue(), stderr.getvalue())


def run_process(
    *command: str | Path, timeout: float = 60 * UNIT, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a program in ROOT, its output captured as text."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def run_cli_process(
    *args: str | Path, timeout: float = 60 * UNIT, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m scenario_engine ARGS`` as a process of its own, in ROOT."""
    return run_process(sys.executable, "-m", "scenario_engine", *args, timeout=timeout, env=env)


# ---- waiting ---------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], object], within: float = BOUND, step: float = 0.01 * UNIT
) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds have passed; whether it held."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


async def wait_until_async(
    condition: Callable[[], object], within: float = BOUND, step: float = 0.01 * UNIT
) -> bool:
    """``wait_until`` for a test running on an event loop: it sleeps without blocking it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async def`` test with asyncio.run, bounded by TEST_BOUND (no pytest-asyncio)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def bounded() -> None:
            await asyncio.wait_for(fn(*args, **kwargs), TEST_BOUND)

        asyncio.run(bounded())

    return wrapper


# ---- a real `scenario-engine serve` ----------------------------------------------------------


class LogTail:
    """Drains a server's stderr in a thread (so its pipe never fills and blocks the server)
    and lets a test wait for a line."""

    def __init__(self, stream: IO[str], read: Sequence[str] = ()) -> None:
        #: ``read``: the lines a test read from the stream before handing it over.
        self.lines: list[str] = list(read)
        #: Where the current test's part of the log starts (see ``mark``).
        self.start = 0
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, within: float = 10 * UNIT) -> str:
        regex = re.compile(pattern)
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((x for x in self.lines if regex.search(x)), None), within
            )
        assert found, (
            f"no server log line matching {pattern!r} within {within:.1f}s; log:\n"
            + "\n".join(self.lines[-30:])
        )
        return found

    def mark(self) -> None:
        """What is logged from now on is the current test's (a server shared by tests)."""
        self.start = len(self.lines)

    def since_mark(self) -> list[str]:
        return self.lines[self.start :]

    def join(self) -> None:
        self._thread.join(timeout=10 * UNIT)


@dataclass
class ServedMock:
    """A running ``scenario-engine serve``: its process, base URL, route URLs and log."""

    process: subprocess.Popen[str]
    base: str
    urls: list[str]
    log: LogTail
    #: The start line ("ready: N routes on HOST:PORT, ... loop ...").
    ready: str = ""
    #: What it printed before the start line.
    printed: tuple[str, ...] = ()

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def host(self) -> str:
        return parse_uri(self.base + "/").host

    @property
    def port(self) -> int:
        return parse_uri(self.base + "/").port

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10 * UNIT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def stderr_text(self) -> str:
        """What the server has logged so far."""
        return "\n".join(self.log.lines)


def start_mock(*paths: str | Path, extra: tuple[str, ...] = ()) -> ServedMock:
    """Start ``serve`` on port 0 and wait until it has printed every route URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scenario_engine", "serve", *map(str, paths), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    urls: list[str] = []
    printed: list[str] = []
    deadline = time.monotonic() + 20 * UNIT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(
                "serve exited early:\n" + (process.stderr.read() if process.stderr else "")
            )
        match = re.match(r"serving (wss?://[^/]+)(/\S*)", line)
        if match:
            urls.append(match.group(1) + match.group(2))
        elif line.startswith("ready:"):
            base = re.match(r"(wss?://[^/]+)", urls[0]).group(1)  # type: ignore[union-attr]
            assert process.stderr is not None
            return ServedMock(
                process, base, urls, LogTail(process.stderr), line.strip(), tuple(printed)
            )
        printed.append(line.rstrip("\n"))
    process.kill()
    raise RuntimeError("serve did not print its routes in time")


@dataclass
class Backend:
    """A hand-written backend of tests/backends running as a process of its own."""

    process: subprocess.Popen[str]
    url: str

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10 * UNIT)


def start_backend(name: str, *extra: str) -> Backend:
    """Start ``tests/backends/NAME`` (with ``extra`` options) and wait for its ``ready PORT``."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "backends" / name), *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.match(r"ready (\d+)", line)
    if match is None:
        process.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return Backend(process, f"ws://127.0.0.1:{match.group(1)}")


@dataclass
class Recorder:
    """A running ``scenario-engine record``: its process, the proxy's URL, what it printed on
    stdout (``out``: its start lines, then the traffic) and on stderr (``err``)."""

    process: subprocess.Popen[str]
    url: str
    out: LogTail
    err: LogTail

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20 * UNIT) -> int:
        """Stop it as Ctrl+C does (or with ``sig``); its exit status, once its output is in."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        status = self.process.wait(timeout=timeout)
        self.out.join()
        self.err.join()
        return status


def start_record(target: str, out: str | Path, *extra: str) -> Recorder:
    """Start ``record --target TARGET -o OUT`` on port 0 and wait for its ``ready:`` line."""
    command = ["record", "--target", target, "-o", str(out), "--port", "0", *extra]
    process = subprocess.Popen(
        [sys.executable, "-m", "scenario_engine", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    read: list[str] = []
    deadline = time.monotonic() + 20 * UNIT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("record exited early:\n" + process.stderr.read())
        read.append(line.rstrip("\n"))
        match = re.match(r"ready: proxy on (\S+):(\d+) ", line)
        if match:
            url = f"ws://{match.group(1)}:{match.group(2)}"
            return Recorder(process, url, LogTail(process.stdout, read), LogTail(process.stderr))
    process.kill()
    raise RuntimeError("record did not print its ready line in time")


async def assert_alive(
    served: ServedMock,
    path: str = "/alive",
    messages: Sequence[str] = ("still alive?", '{"type": "x", "n": [1, 2]}'),
    **kwargs: Any,
) -> None:
    """The server still runs and a well-behaved client on ``path`` (a route that sends every
    message back) is served correctly; and nothing logged since ``log.mark()`` is a
    traceback."""
    assert served.process.poll() is None, f"the server died:\n{served.stderr_text()[-3000:]}"
    async with connect(served.url(path), open_timeout=BOUND, **kwargs) as ws:
        for message in messages:
            await ws.send(message)
            assert await recv(ws) == message, "the server stopped serving correctly"
    log = "\n".join(served.log.since_mark())
    assert "Traceback" not in log, "the server logged a traceback:\n" + log[-3000:]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory (or, with ``VmHWM``, its peak), in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def line_of(text: str, marker: str) -> int:
    """The number of the first line of ``text`` that contains ``marker``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key: with the openssl command if
    there is one, else with the cryptography package; the test is skipped without either."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is not None:
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
            timeout=20 * UNIT,
        )
        return cert, key
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        pytest.skip("neither the openssl command nor the cryptography package is available")
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key


# ---- clients ---------------------------------------------------------------------------------


def http_call(
    port: int,
    method: str,
    path: str,
    body: bytes | str | object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPResponse, Any]:
    """One HTTP request to 127.0.0.1 (the admin API): (status, response, the body decoded as
    JSON when it is JSON, else as text). ``body`` that is not bytes or text is sent as JSON.
    A method other than GET, HEAD and OPTIONS says ``Content-Type: application/json``, as the
    admin API requires of them, unless ``headers`` give another; ``headers`` may also replace
    the Host header http.client sends."""
    if body is not None and not isinstance(body, bytes | str):
        body = json.dumps(body)
    sent = dict(headers or {})
    if method not in ("GET", "HEAD", "OPTIONS"):
        sent.setdefault("Content-Type", "application/json")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=BOUND)
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.getheader("Content-Type") == "application/json":
        return response.status, response, json.loads(data)
    return response.status, response, data.decode()


class HasUrl(Protocol):
    """A server a test talks to: a ServedMock or a BackgroundServer."""

    def url(self, path: str) -> str: ...


def sync_client(server: HasUrl, path: str, **kwargs: Any) -> SyncClientConnection:
    """A websockets synchronous client of ``path``, its handshake bounded."""
    return sync_connect(server.url(path), open_timeout=BOUND, **kwargs)


async def recv(ws: ClientConnection, within: float = BOUND, what: str = "a message") -> str | bytes:
    try:
        return await asyncio.wait_for(ws.recv(), within)
    except TimeoutError:
        raise AssertionError(f"expected {what}, got nothing within {within:.1f}s") from None
    except ConnectionClosed:
        raise AssertionError(
            f"expected {what}, but the server closed the connection: "
            f"{ws.close_code} {ws.close_reason!r}"
        ) from None


async def recv_json(
    ws: ClientConnection,
    within: float = BOUND,
    what: str = "a message",
    skip: Callable[[Any], bool] | None = None,
) -> Any:
    """The next text message, parsed; messages for which ``skip`` is true are passed over."""
    while True:
        raw = await recv(ws, within, what)
        assert isinstance(raw, str), f"expected a text frame, got binary {raw!r}"
        value = json.loads(raw)
        if skip is None or not skip(value):
            return value


async def closed(ws: ClientConnection, within: float = BOUND) -> tuple[int | None, str | None]:
    """Expect the server to close ``ws`` before sending anything else; (code, reason)."""
    try:
        message = await asyncio.wait_for(ws.recv(), within)
    except ConnectionClosed:
        return ws.close_code, ws.close_reason
    except TimeoutError:
        raise AssertionError(
            f"the server did not close the connection within {within:.1f}s; state {ws.state.name}"
        ) from None
    raise AssertionError(f"expected the server to close the connection, got {message!r}")


async def handshake_status(url: str, **kwargs: Any) -> InvalidStatus:
    """Connect expecting the handshake to be refused; the refusal."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=BOUND, **kwargs):
            pass
    return info.value


def handshake_request(
    path: str, *, upgrade: bool = True, key: bytes | None = None, extra: bytes = b""
) -> bytes:
    """The bytes of an opening handshake's HTTP request (``upgrade=False``: a plain GET);
    ``extra`` are more header lines, each ending in CRLF."""
    lines = [b"GET " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if upgrade:
        lines += [
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + (key or base64.b64encode(os.urandom(16))),
            b"Sec-WebSocket-Version: 13",
        ]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


class RawClient:
    """websockets' sans-I/O ClientProtocol over asyncio streams.

    It sees every frame, pings and pongs included, and can send what a well-behaved client never
    would (a text frame that is not UTF-8). With ``answer=False`` it reads and parses but never
    writes after the handshake: no pong, no closing handshake, as a peer that stopped answering.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        protocol: ClientProtocol,
        answer: bool,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.answer = answer
        self.pending: collections.deque[Any] = collections.deque()
        self.eof = False

    @classmethod
    async def open(
        cls, url: str, answer: bool = True, rcvbuf: int | None = None, max_size: int | None = 2**20
    ) -> RawClient:
        """Handshake over a fresh socket; ``rcvbuf`` shrinks its receive buffer (a client
        that does not read then stops the kernel from absorbing what the server sends)."""
        uri = parse_uri(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port)), BOUND
        )
        reader, writer = await asyncio.open_connection(sock=sock)
        protocol = ClientProtocol(uri, max_size=max_size)
        protocol.send_request(protocol.connect())
        client = cls(reader, writer, protocol, answer=True)
        client.flush()
        response = await client.next_event()
        assert isinstance(response, Response), response
        assert response.status_code == 101, f"handshake refused: {response.status_code}"
        client.answer = answer
        return client

    def flush(self) -> None:
        if not self.answer:
            self.protocol.data_to_send()  # discarded: this peer does not answer
            return
        # One write, so that the frames sent together arrive together: the server reads them
        # in one go, as it would from a client that pipelines.
        chunks = self.protocol.data_to_send()
        self.writer.write(b"".join(chunks))
        if b"" in chunks and self.writer.can_write_eof():  # websockets' "half-close now"
            self.writer.write_eof()

    async def next_event(self, within: float = BOUND) -> Any:
        """The next handshake response or frame; EOFError once the server closed TCP."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self.pending:
            if self.eof:
                raise EOFError("the server closed the TCP connection")
            remaining = deadline - loop.time()
            try:
                data = await asyncio.wait_for(self.reader.read(65536), max(remaining, 0))
            except TimeoutError:
                raise AssertionError(f"no frame within {within:.1f}s") from None
            if data:
                self.protocol.receive_data(data)
            else:
                self.eof = True
                self.protocol.receive_eof()
            self.pending.extend(self.protocol.events_received())
            self.flush()
        return self.pending.popleft()

    async def next_frame(self, within: float = BOUND) -> Frame:
        event = await self.next_event(within)
        assert isinstance(event, Frame), event
        return event

    def send_raw(self, data: bytes) -> None:
        """Bytes straight onto the socket, bypassing the protocol (a handcrafted frame)."""
        self.writer.write(data)

    def send_text_bytes(self, data: bytes) -> None:
        self.protocol.send_text(data)
        self.flush()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), BOUND)


def close_of(frame: Frame) -> Close:
    assert frame.opcode is Opcode.CLOSE, f"expected a close frame, got {frame}"
    return Close.parse(frame.data)


# ---- the engine, without I/O ------------------------------------------------------------------


def engine_of(text: str) -> Engine:
    """An engine running the scenario ``text`` (a file named test.mock)."""
    loaded, errors = load_source(Source("test.mock", text))
    assert errors == [], [e.format_text() for e in errors]
    assert loaded is not None
    return Engine(compile_program([loaded]))


def engine_connect(
    engine: Engine,
    path: str,
    query: dict[str, str] | None = None,
    effects: list[Effect] | None = None,
    subprotocol: str | None = None,
) -> Connection:
    """Open a connection on the engine as the server would; what ``on connect`` does goes to
    ``effects`` when given."""
    resolved = engine.resolve(path)
    assert resolved is not None
    route, params = resolved
    request = Request(path, query or {}, {"user-agent": "test"}, "127.0.0.1", subprotocol)
    outcome, _ = engine.authenticate(route, request, params, "probe")
    assert isinstance(outcome, Accepted)
    conn = engine.open(route, request, params, outcome.auth)
    done = engine.connect(conn)
    if effects is not None:
        effects.extend(done)
    return conn


def frames(effects: Iterable[Effect], conn: Connection) -> list[Any]:
    """The decoded messages ``conn`` receives from these effects."""
    out = []
    for effect in effects:
        if (isinstance(effect, Send) and effect.conn is conn) or (
            isinstance(effect, Broadcast) and conn in effect.targets
        ):
            out.append(json.loads(effect.data))
    return out


@contextlib.asynccontextmanager
async def serving(text: str, name: str = "test.mock", **options: Any) -> AsyncIterator[Any]:
    """The scenario ``text`` served in this process on a free port, with a journal, for the
    time of the block; ``options`` go to ScenarioServer."""
    from scenario_engine.runtime.journal import Journal
    from scenario_engine.runtime.server import ScenarioServer

    loaded, errors = load_source(Source(name, text))
    assert errors == [], [e.format_text() for e in errors]
    assert loaded is not None
    options.setdefault("journal", Journal())
    server = ScenarioServer(compile_program([loaded]), "127.0.0.1", 0, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def needs(missing: bool, reason: str) -> pytest.MarkDecorator:
    """Skip the tests when something they need is ``missing`` (saying what in ``reason``),
    except under SCENARIO_TEST_REQUIRE_ALL=1."""
    return pytest.mark.skipif(missing and not REQUIRE_ALL, reason=reason)


# ---- a browser driven by Selenium ------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
#: Why Selenium cannot drive Chromium here, or None if it can.
SELENIUM_MISSING = (
    None
    if CHROMIUM and CHROMEDRIVER and importlib.util.find_spec("selenium")
    else "chromium, chromedriver (Debian: apt-get install chromium chromium-driver) and selenium "
    "(pip install -e '.[test]') are needed"
)


def selenium_chromium(window_size: str = "1500,1000") -> Any:
    """Headless Chromium driven by Debian's chromedriver (the caller quits it).

    The flags are what this kind of machine needs: no sandbox (root in a container), no GPU, no
    /dev/shm (small in containers), and no calls home that could stall on a closed network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    assert SELENIUM_MISSING is None, SELENIUM_MISSING
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--window-size={window_size}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


# ---- a real Redis ------------------------------------------------------------------------------

try:
    import redis
except ImportError:  # the [redis] extra is not installed
    redis = None  # type: ignore[assignment]

#: The marks of the tests that need a Redis server of their own (serve --backplane).
NEEDS_REDIS = [
    needs(shutil.which("redis-server") is None, "redis-server is not installed"),
    needs(redis is None, "redis-py is not installed: pip install -e '.[redis]'"),
]


class RedisServer:
    """``redis-server`` on a free port of 127.0.0.1, without persistence: stopping it loses
    everything, as a restart of a Redis without persistence does."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--logfile", ""),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert wait_until(self._answers, within=10 * UNIT), "redis-server did not start"
        return self

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10 * UNIT)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> Any:
        return redis.Redis(port=self.port, db=db, socket_timeout=BOUND)

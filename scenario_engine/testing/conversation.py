"""Runs one conversation test: named WebSocket clients, driven step by step against a server.

Each client reads its connection in a task of its own and queues what arrives (messages, then
the close), so that steps about other clients never make it miss anything. An expect step
takes messages from its client's queue: by default it passes over those that do not match (a
test need not mention every message); in a ``strict`` test the next message must match, and
none may be left unread at the end.

Every wait is bounded (connect, expect, close; the whole test too), so a server that never
answers fails the test at its timeout; nothing here waits for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from ..errors import EvaluationError
from ..expr.evaluate import compile_template
from ..expr.values import Context, Evaluator, encode, to_text
from ..language.ir import (
    ClientStep,
    ConnectStep,
    ExpectCloseStep,
    ExpectNoMessageStep,
    ExpectStep,
    SendStep,
    Template,
    Test,
    TestStep,
)
from ..language.source import escape_pointer
from ..language.units import parse_duration
from ..runtime.compiler import seconds_of
from .expectations import compile_expectation, mismatches, show

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_EXPECT_TIMEOUT",
    "DEFAULT_TEST_TIMEOUT",
    "Failure",
    "Outcome",
    "check_target",
    "compile_test",
    "run_conversation",
    "shown_url",
]

DEFAULT_EXPECT_TIMEOUT = 1.0
#: Longer than an expectation's: connecting to a real backend in CI may be slow to start.
DEFAULT_CONNECT_TIMEOUT = 5.0
#: A bound on a whole test, whatever its steps say.
DEFAULT_TEST_TIMEOUT = 60.0
#: How long closing a client may take when the test is over.
_CLOSE_TIMEOUT = 1.0
#: Received messages listed in a failure report, at most.
_SHOWN_MESSAGES = 5
#: Messages larger than this fail the connection (1009); a test never needs more.
_MAX_MESSAGE = 64 * 1024 * 1024
#: Characters of a refused handshake's response body quoted in a report (a real server may
#: answer with a whole HTML page).
_SHOWN_BODY = 300


@dataclass(frozen=True, slots=True)
class Closed:
    """The last item of a client's queue: how its connection ended."""

    code: int | None
    reason: str


@dataclass
class Failure:
    """Why a test failed: the step (an IR pointer), what went wrong, and the evidence."""

    pointer: str
    message: str
    details: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What running a test came to: ``failure`` is None if it passed."""

    failure: Failure | None
    duration: float


class _Failed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _Client:
    """One named client: its connection and everything it has received, in order."""

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.closed: Closed | None = None
        self.reader = asyncio.create_task(self._read(), name=f"client {name}")

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.inbox.put_nowait(_decode(message))
        except ConnectionClosed:
            pass
        finally:
            self.inbox.put_nowait(Closed(self.ws.close_code, self.ws.close_reason or ""))

    async def next(self, deadline: float) -> Any:
        """The next item of the queue; TimeoutError at the deadline (a loop.time())."""
        if self.closed is not None:
            return self.closed
        # An item already queued is returned even past the deadline: get() does not suspend.
        async with asyncio.timeout_at(deadline):
            item = await self.inbox.get()
        if isinstance(item, Closed):
            self.closed = item
        return item

    def unread(self) -> list[Any]:
        """Messages received and not yet taken (the close excluded)."""
        items = []
        while not self.inbox.empty():
            item = self.inbox.get_nowait()
            if isinstance(item, Closed):
                self.closed = item
            else:
                items.append(item)
        return items

    async def shutdown(self, code: int = 1000, reason: str = "") -> None:
        """Close (bounded by the connection's close_timeout: a server that never answers the
        closing handshake is cut off) and stop reading."""
        await self.ws.close(code, reason)
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


def _decode(message: str | bytes) -> Any:
    """A received message as the test sees it: JSON text parsed, other text as a string,
    binary as bytes."""
    if isinstance(message, str):
        try:
            return json.loads(message)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to be data
            return message
    return message


class _Conversation:
    def __init__(
        self,
        test: Test,
        pointer: str,
        base_url: str,
        constants: Context,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.test = test
        self.pointer = pointer
        #: The step running: where a test that times out or breaks stopped.
        self.current = pointer
        self.compiled = compile_test(test, pointer)
        self.base_url = base_url
        self.tls = tls
        self.strict = bool(test.get("strict", False))
        self.ctx: Context = dict(constants)
        self.clients: dict[str, _Client] = {}

    async def run(self) -> None:
        try:
            for i, step in enumerate(self.test["steps"]):
                self.current = f"{self.pointer}/steps/{i}"
                await self.step(step, self.current)
            if self.strict:
                self.nothing_left_unread()
        finally:
            await asyncio.gather(*(c.shutdown() for c in self.clients.values()))

    async def step(self, step: TestStep, pointer: str) -> None:
        try:
            if "connect" in step:
                await self.connect(step, pointer)
            elif "wait" in step:
                # A duration as written, or an expression giving one (``wait pingInterval``).
                await asyncio.sleep(seconds_of(self.value(pointer + "/wait"), minimum=0))
            elif "let" in step:
                self.ctx[step["let"]["name"]] = self.value(pointer + "/let/value")
            else:
                await self.client_step(step, pointer)
        except EvaluationError as err:
            raise _Failed(Failure(pointer, f"cannot evaluate this step: {err}")) from None

    def value(self, pointer: str, ctx: Context | None = None) -> Any:
        """The value of the template at ``pointer`` (an IR pointer of one of the steps)."""
        return self.compiled[pointer](self.ctx if ctx is None else ctx)

    # ---- connect ---------------------------------------------------------------------------
    async def connect(self, step: ConnectStep, pointer: str) -> None:
        name = step["connect"]
        url = self.url(
            self.value(pointer + "/path"), self.value(pointer + "/query") if "query" in step else {}
        )
        headers = self.value(pointer + "/headers") if "headers" in step else {}
        protocols = self.value(pointer + "/protocols") if "protocols" in step else []
        if not isinstance(headers, dict):
            raise EvaluationError(f"headers must be an object, not {show(headers)}")
        if not isinstance(protocols, list):
            raise EvaluationError(f"protocols must be an array, not {show(protocols)}")
        timeout = _within(step, DEFAULT_CONNECT_TIMEOUT)
        expected_status = step.get("expectReject")
        # websockets takes ssl=None as "no TLS", which a wss:// URL refuses: only pass it set.
        tls: dict[str, Any] = {} if self.tls is None else {"ssl": self.tls}
        shown = shown_url(url)
        try:
            async with asyncio.timeout(timeout):
                ws = await connect(
                    url,
                    additional_headers={str(k): to_text(v) for k, v in headers.items()},
                    subprotocols=[Subprotocol(to_text(p)) for p in protocols] or None,
                    open_timeout=None,
                    ping_interval=None,
                    close_timeout=_CLOSE_TIMEOUT,
                    max_size=_MAX_MESSAGE,
                    **tls,
                )
        except InvalidStatus as err:
            status = err.response.status_code
            if expected_status == status:
                return
            body = (err.response.body or b"").decode("utf-8", "replace").strip()
            if len(body) > _SHOWN_BODY:
                body = body[:_SHOWN_BODY] + "…"
            expected = (
                f"expected HTTP {expected_status}"
                if expected_status is not None
                else "expected the connection to open"
            )
            raise _Failed(
                Failure(
                    pointer,
                    f"{name} was refused with HTTP {status}",
                    [f"{expected}, got HTTP {status}" + (f" {body!r}" if body else "")],
                )
            ) from None
        except TimeoutError:
            raise _Failed(
                Failure(pointer, f"{name} could not connect to {shown} within {_seconds(timeout)}")
            ) from None
        except (OSError, WebSocketException, ValueError) as err:
            # ValueError: what the handshake refuses to send (a subprotocol with a space).
            raise _Failed(Failure(pointer, f"{name} could not connect to {shown}: {err}")) from None
        if expected_status is not None:
            await ws.close()
            raise _Failed(
                Failure(
                    pointer,
                    f"{name} connected, but the server was expected to "
                    f"refuse the handshake with HTTP {expected_status}",
                )
            )
        if protocols and ws.subprotocol is None:
            # websockets accepts a handshake that selects none of the offered subprotocols;
            # browsers and Node's ws fail the connection instead (ws: "Server sent no
            # subprotocol"), dropping it without a close frame. A test does as they do.
            await _abort(ws)
            offered = ", ".join(json.dumps(to_text(p)) for p in protocols)
            noun = "subprotocol" if len(protocols) == 1 else "subprotocols"
            raise _Failed(
                Failure(
                    pointer,
                    f"{name} offered the {noun} {offered}, and the server selected none",
                    [
                        "the handshake response has no Sec-WebSocket-Protocol header: a browser "
                        "or Node's ws refuses such a connection "
                        '(ws: "Server sent no subprotocol")'
                    ],
                )
            )
        self.clients[name] = _Client(name, ws)

    def url(self, path: Any, query: Any) -> str:
        if not isinstance(path, str):
            raise EvaluationError(f"a path must be a string, not {show(path)}")
        if not isinstance(query, dict):
            raise EvaluationError(f"query must be an object, not {show(query)}")
        base = self.base_url.rstrip("/")
        url = base + (path if path.startswith("/") else "/" + path)
        if query:
            separator = "&" if urlsplit(url).query else "?"
            url += separator + urlencode({str(k): to_text(v) for k, v in query.items()})
        return url

    # ---- client steps ----------------------------------------------------------------------
    async def client_step(self, step: ClientStep, pointer: str) -> None:
        # Validation saw to it that the client is connected here.
        client = self.clients[step["client"]]
        if "send" in step:
            await self.send(client, step, pointer)
        elif "expect" in step:
            await self.expect(client, step, pointer)
        elif "expectNoMessage" in step:
            await self.expect_no_message(client, step, pointer)
        elif "expectClose" in step:
            await self.expect_close(client, step, pointer)
        else:
            body = step["close"]
            reason = to_text(self.value(pointer + "/close/reason")) if "reason" in body else ""
            del self.clients[client.name]
            await client.shutdown(body.get("code", 1000), reason)

    async def send(self, client: _Client, step: SendStep, pointer: str) -> None:
        data = encode(self.value(pointer + "/send"))
        if step.get("binary") and isinstance(data, str):
            data = data.encode()
        try:
            async with asyncio.timeout(DEFAULT_EXPECT_TIMEOUT):
                await client.ws.send(data)
        except ConnectionClosed:
            closed = _close_text(client.ws.close_code, client.ws.close_reason)
            raise _Failed(
                Failure(pointer, f"{client.name} cannot send: its connection is closed ({closed})")
            ) from None
        except TimeoutError:
            raise _Failed(
                Failure(
                    pointer,
                    f"{client.name} could not send within "
                    f"{_seconds(DEFAULT_EXPECT_TIMEOUT)}: the server does not "
                    "read",
                )
            ) from None

    async def expect(self, client: _Client, step: ExpectStep, pointer: str) -> None:
        expected = self.value(pointer + "/expect")
        timeout = _within(step, DEFAULT_EXPECT_TIMEOUT)
        deadline = asyncio.get_running_loop().time() + timeout
        passed_over: list[tuple[Any, list[str]]] = []
        while True:
            try:
                item = await client.next(deadline)
            except TimeoutError:
                raise _Failed(
                    Failure(
                        pointer,
                        f"{client.name} did not receive the expected message within "
                        f"{_seconds(timeout)}",
                        _evidence(expected, passed_over),
                    )
                ) from None
            if isinstance(item, Closed):
                closed = _close_text(item.code, item.reason)
                raise _Failed(
                    Failure(
                        pointer,
                        f"{client.name}'s connection closed ({closed}) before the "
                        "expected message came",
                        _evidence(expected, passed_over),
                    )
                )
            differences = mismatches(expected, item)
            if not differences:
                break
            passed_over.append((item, differences))
            if self.strict:
                raise _Failed(
                    Failure(
                        pointer,
                        f"{client.name} received another message than expected (strict test)",
                        _evidence(expected, passed_over),
                    )
                )
        for name in step.get("capture", {}):
            self.ctx[name] = self.value(
                f"{pointer}/capture/{escape_pointer(name)}", {**self.ctx, "msg": item}
            )

    async def expect_no_message(
        self, client: _Client, step: ExpectNoMessageStep, pointer: str
    ) -> None:
        earlier = client.unread()
        if self.strict and earlier:
            raise _Failed(
                Failure(
                    pointer,
                    f"{client.name} has unread messages (strict test)",
                    [f"received {show(m)}" for m in earlier[:_SHOWN_MESSAGES]],
                )
            )
        if client.closed is not None:
            return  # a closed connection receives nothing more
        period = parse_duration(step["expectNoMessage"])
        deadline = asyncio.get_running_loop().time() + period
        try:
            item = await client.next(deadline)
        except TimeoutError:
            return
        if isinstance(item, Closed):
            return
        raise _Failed(
            Failure(
                pointer,
                f"{client.name} received a message within "
                f"{_seconds(period)}, where none was expected",
                [f"received {show(item)}"],
            )
        )

    async def expect_close(self, client: _Client, step: ExpectCloseStep, pointer: str) -> None:
        body = step["expectClose"]
        timeout = _within(step, DEFAULT_EXPECT_TIMEOUT)
        deadline = asyncio.get_running_loop().time() + timeout
        passed_over: list[tuple[Any, list[str]]] = []
        code: int | None = body.get("code")
        reason = to_text(self.value(pointer + "/expectClose/reason")) if "reason" in body else None
        wanted = [str(code)] if code is not None else []
        if reason is not None:
            wanted.append(json.dumps(reason))
        expected_text = _Description("close " + " ".join(wanted) if wanted else "a close")
        while True:
            try:
                item = await client.next(deadline)
            except TimeoutError:
                raise _Failed(
                    Failure(
                        pointer,
                        f"{client.name}'s connection did not close within {_seconds(timeout)}",
                        _evidence(expected_text, passed_over),
                    )
                ) from None
            if isinstance(item, Closed):
                break
            passed_over.append((item, []))
            if self.strict:
                raise _Failed(
                    Failure(
                        pointer,
                        f"{client.name} received a message before the close (strict test)",
                        _evidence(expected_text, passed_over),
                    )
                )
        problems = []
        if code is not None and item.code != code:
            problems.append(f"expected code {code}, received {item.code}")
        if reason is not None and item.reason != reason:
            problems.append(
                f"expected reason {json.dumps(reason)}, received {json.dumps(item.reason)}"
            )
        if problems:
            raise _Failed(
                Failure(
                    pointer,
                    f"{client.name}'s connection closed "
                    f"({_close_text(item.code, item.reason)}), not as expected",
                    problems,
                )
            )
        del self.clients[client.name]
        await client.shutdown()

    def nothing_left_unread(self) -> None:
        for client in self.clients.values():
            left = client.unread()
            if left:
                raise _Failed(
                    Failure(
                        self.pointer,
                        f"{client.name} has messages no step expected (strict test)",
                        [f"received {show(m)}" for m in left[:_SHOWN_MESSAGES]],
                    )
                )


def _evidence(expected: Any, passed_over: Sequence[tuple[Any, list[str]]]) -> list[str]:
    """What was expected (a value, or a description such as 'close 4001') and the messages
    received instead, the last few with their differences."""
    lines = [f"expected {expected if isinstance(expected, _Description) else show(expected)}"]
    if not passed_over:
        lines.append("received nothing")
        return lines
    if len(passed_over) > _SHOWN_MESSAGES:
        lines.append(f"received {len(passed_over)} other messages; the last {_SHOWN_MESSAGES}:")
    for message, differences in passed_over[-_SHOWN_MESSAGES:]:
        lines.append(f"received {show(message)}")
        lines.extend(f"  {d}" for d in differences)
    return lines


class _Description(str):
    """What a step expects, in words ('close 4001'), shown as it is rather than as a value."""


def compile_test(test: Test, pointer: str) -> dict[str, Evaluator]:
    """Every template of a test's steps compiled once, before anything connects: IR pointer of
    the template → its evaluator. Expected messages compile with their matchers."""
    compiled: dict[str, Evaluator] = {}
    for i, step in enumerate(test["steps"]):
        for where, template, compile_ in _templates(step, f"{pointer}/steps/{i}"):
            compiled[where] = compile_(template)
    return compiled


def _templates(
    step: TestStep, pointer: str
) -> Iterator[tuple[str, Template, Callable[[Template], Evaluator]]]:
    def plain(template: Template) -> Evaluator:
        return compile_template(template)[0]

    if "connect" in step:
        for key in ("path", "query", "headers", "protocols"):
            if key in step:
                yield f"{pointer}/{key}", step[key], plain
    elif "send" in step:
        yield f"{pointer}/send", step["send"], plain
    elif "expect" in step:
        yield f"{pointer}/expect", step["expect"], compile_expectation
        for name, template in step.get("capture", {}).items():
            yield f"{pointer}/capture/{escape_pointer(name)}", template, plain
    elif "close" in step:
        if "reason" in step["close"]:
            yield f"{pointer}/close/reason", step["close"]["reason"], plain
    elif "expectClose" in step:
        if "reason" in step["expectClose"]:
            yield f"{pointer}/expectClose/reason", step["expectClose"]["reason"], plain
    elif "let" in step:
        yield f"{pointer}/let/value", step["let"]["value"], plain
    elif "wait" in step:
        yield f"{pointer}/wait", step["wait"], plain


def check_target(url: str) -> str:
    """``url`` if tests can run against it (a ws:// or wss:// URL with a host, no query or
    fragment: a step's path is appended to it); ValueError saying what is wrong otherwise."""
    try:
        parse_uri(url)
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except (InvalidURI, ValueError) as err:
        raise ValueError(f"not a WebSocket URL ({err}): write ws://HOST:PORT") from None
    if parts.query or parts.fragment:
        raise ValueError("a target has no query or fragment: the steps' paths are appended to it")
    return url


def shown_url(url: str) -> str:
    """``url`` without its password, for reports that end up in CI logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def _abort(ws: ClientConnection) -> None:
    """Cut the connection without a closing handshake, as a client failing it does."""
    ws.transport.abort()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await ws.wait_closed()


def _within(step: ConnectStep | ExpectStep | ExpectCloseStep, default: float) -> float:
    return parse_duration(step["within"]) if "within" in step else default


def _seconds(value: float) -> str:
    return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"


def _close_text(code: int | None, reason: str | None) -> str:
    return f"code {code}" + (f", reason {json.dumps(reason)}" if reason else "")


async def run_conversation(
    test: Test,
    pointer: str,
    base_url: str,
    constants: Context,
    timeout: float = DEFAULT_TEST_TIMEOUT,
    tls: ssl.SSLContext | None = None,
) -> Outcome:
    """Run one test (its IR at ``pointer``) against the server at ``base_url``; ``tls``:
    the TLS settings for a wss:// server (None: the system's defaults)."""
    conversation = _Conversation(test, pointer, base_url, constants, tls)
    started = time.perf_counter()
    failure: Failure | None = None
    try:
        async with asyncio.timeout(timeout):
            await conversation.run()
    except _Failed as failed:
        failure = failed.failure
    except TimeoutError:
        failure = Failure(
            conversation.current, f"the test did not finish within {_seconds(timeout)}"
        )
    except Exception as err:  # one broken test must not stop the others: report it as failed
        failure = Failure(
            conversation.current, f"the test could not run: {type(err).__name__}: {err}"
        )
    return Outcome(failure, time.perf_counter() - started)

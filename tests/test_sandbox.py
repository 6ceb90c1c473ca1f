"""Scenario expressions cannot reach the process they run in, and cannot make it do unbounded
work.

- Names and functions that are not the language's (``open``, ``os``, ``eval``, ``exec``,
  ``globals``, ``__import__`` …) are compile-time errors: ``scenario-engine check`` exits 1 and
  ``serve`` refuses the file, so nothing of it ever runs (a canary file they would create is
  never created).
- Member access never touches Python attributes: ``msg.__class__`` reads the key
  ``"__class__"`` of the JSON message (null when absent), ``headers.__init__`` the header named
  ``__init__``. These compile (they are data lookups) and are checked at run time.
  ``conn.__dict__`` is a compile-time error ('conn' has no property '__dict__').
- Run-time errors follow the rule of docs/language.md: ``on error`` runs if the route has one,
  else the connection closes with 1011, and the log names the failing action's file:line.
- Work is bounded: strings built by operators are capped; messages nested deeper than the JSON
  parser's recursion limit do not crash the server.

Servers run under an address-space limit (``SERVER_MEMORY``) so that a regression fails a test
instead of exhausting the machine.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    BOUND,
    UNIT,
    ServedMock,
    assert_alive,
    async_test,
    closed,
    line_of,
    recv,
    recv_json,
    rss_mb,
    run_cli,
    run_cli_process,
    start_mock,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from scenario_engine.expr.values import MAX_STRING
from scenario_engine.language.loader import load_source
from scenario_engine.language.source import Source
from scenario_engine.runtime.compiler import _size_is_bounded

#: The sandbox server may not map more than this (a MemoryError instead of a dead machine).
SERVER_MEMORY = 1024 * 1024 * 1024


# ---- compile time: nothing of Python is reachable by name ------------------------------------

#: Expressions that try to reach Python, and the error ``check`` must give.
ESCAPES: list[tuple[str, str]] = [
    ('"${__import__}"', "unknown name '__import__'"),
    ('__import__("os")', "unknown function '__import__'"),
    ("__builtins__", "unknown name '__builtins__'"),
    ('open("/etc/passwd")', "unknown function 'open'"),
    ("os.environ", "unknown name 'os'"),
    ("sys.modules", "unknown name 'sys'"),
    ('eval("1 + 1")', "unknown function 'eval'"),
    ('exec("import os")', "unknown function 'exec'"),
    ("globals()", "unknown function 'globals'"),
    ("locals()", "unknown function 'locals'"),
    ("vars()", "unknown function 'vars'"),
    ('getattr(msg, "__class__")', "unknown function 'getattr'"),
    ("type(msg)", "unknown function 'type'"),
    ("__class__", "unknown name '__class__'"),
    ("len.__self__", "unknown name 'len'"),
    ("ctx", "unknown name 'ctx'"),
    ("conn.__dict__", "'conn' has no property '__dict__'"),
    ("\"${open('/etc/passwd')}\"", "unknown function 'open'"),
]
#: Python syntax that is not the language's: a syntax error (its wording depends on where).
SYNTAX_ESCAPES = [
    "msg.__class__()",
    "msg.s.upper()",
    "(lambda: 1)()",
    "[x for x in msg]",
    "msg[0:2]",
    "`id`",
    "msg; os",
    "@msg",
    '"${msg[0:2]}"',
    '"${lambda: 1}"',
    '"${msg if msg else os}"',
]


def compile_errors(text: str, name: str = "escape.mock") -> list[tuple[int, str]]:
    try:
        loaded, errors = load_source(Source(name, text))
    except Exception as err:
        raise AssertionError(
            f"the checker crashed ({type(err).__name__}: {err}) on:\n{text}"
        ) from err
    assert (loaded is None) == bool(errors)
    return [(e.line, e.message) for e in errors]


#: Every place an expression can be written, with EXPR where it goes; the line it is on.
POSITIONS = {
    "send": ("route /x {\n  on connect {\n    send EXPR\n  }\n}\n", 3),
    "where": ("route /x {\n  on message where EXPR { send 1 }\n}\n", 2),
    "if": ("route /x {\n  on connect {\n    if EXPR { send 1 }\n  }\n}\n", 3),
    "operand": ("route /x {\n  on connect {\n    send 1 + EXPR\n  }\n}\n", 3),
    "log": ("route /x {\n  on connect {\n    log EXPR\n  }\n}\n", 3),
    "join": ("route /x {\n  on connect {\n    join EXPR\n  }\n}\n", 3),
    "constant": ("let c = EXPR\nroute /x { on connect { send c } }\n", 1),
    "auth": ("route /x {\n  auth {\n    accept { v: EXPR }\n  }\n}\n", 3),
}


@pytest.mark.parametrize(
    ("position", "expression", "error"),
    [(p, e, error) for p in POSITIONS for e, error in ESCAPES]
    + [(p, e, "") for p in ("send", "where", "constant") for e in SYNTAX_ESCAPES],
    ids=lambda value: str(value)[:40],
)
def test_escape_is_a_compile_time_error(position: str, expression: str, error: str) -> None:
    template, line = POSITIONS[position]
    if position == "constant" and re.search(r"\b(msg|conn|ctx)\b", expression):
        error = ""  # msg and conn do not exist at the top level either: any error will do
    errors = compile_errors(template.replace("EXPR", expression))
    assert errors, f"{expression!r} in {position} compiled"
    assert any(found_line == line and error in message for found_line, message in errors), (
        f"{expression!r} in {position}: {errors}"
    )


def test_escapes_in_yaml_are_compile_time_errors() -> None:
    text = "routes:\n  - path: /x\n    on:\n      connect:\n" + "".join(
        f"        - send: {json.dumps('${' + e + '}')}\n"
        for e in ("open('/etc/passwd')", "__import__", "os.environ", "eval('1')")
    )
    messages = [m for _, m in compile_errors(text, "escape.yaml")]
    for expected in (
        "unknown function 'open'",
        "unknown name '__import__'",
        "unknown name 'os'",
        "unknown function 'eval'",
    ):
        assert any(expected in m for m in messages), messages


@pytest.mark.e2e
def test_check_and_serve_refuse_escapes_and_never_run_them(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    would_write = [
        f'open("{canary}", "w")',
        f"\"${{__import__('os').system('touch {canary}')}}\"",
        f"exec(\"open('{canary}', 'w')\")",
    ]
    expressions = [e for e, _ in ESCAPES] + would_write
    # Five lines per route, the expression on the third. (Syntax errors are left out: the
    # parser stops at them, and they are covered above.)
    routes = "".join(
        f"route /r{i} {{\n  on connect {{\n    send {e}\n  }}\n}}\n"
        for i, e in enumerate(expressions)
    )
    path = tmp_path / "escapes.mock"
    path.write_text(routes, encoding="utf-8")
    checked = run_cli("check", path)
    assert checked.status == 1, checked
    reported_lines = {
        int(n) for n in re.findall(r"escapes\.mock:(\d+):\d+: error:", checked.stdout)
    }
    expected_lines = {5 * i + 3 for i in range(len(expressions))}
    assert expected_lines <= reported_lines, (
        f"no error for lines {sorted(expected_lines - reported_lines)}:\n{checked.stdout}"
    )
    served = run_cli_process("serve", path, "--port", "0", timeout=30 * UNIT)
    assert served.returncode == 1, served
    assert "ready" not in served.stdout and "not serving" in served.stderr, served
    assert not canary.exists(), "an expression of a refused scenario ran"


@pytest.mark.e2e
def test_interpolation_inside_an_expression_is_checked_too(tmp_path: Path) -> None:
    """A string with ``${…}`` used as an operand (``where "${…}"``, ``if``, ``1 + "${…}"``) is
    checked like any template: an unknown function there must be reported by ``check``, not
    crash ``serve`` when it compiles the handler."""
    path = tmp_path / "inner.mock"
    path.write_text(
        "route /x {\n  on message where \"${open('/etc/passwd')}\" { send 1 }\n}\n",
        encoding="utf-8",
    )
    checked = run_cli("check", path)
    served = run_cli_process("serve", path, "--port", "0", timeout=30 * UNIT)
    assert "internal error" not in served.stderr, (
        f"serve crashed (exit {served.returncode}): {served.stderr.strip()}"
    )
    assert served.returncode == 1, served
    assert checked.status == 1, f"check accepted it: {checked.stdout.strip()}"
    assert "unknown function 'open'" in checked.stdout, checked.stdout


# ---- run time --------------------------------------------------------------------------------

DEPTH_FOR_EQUAL = 700  # parses fine (json's limit is ~980 here); deep for a recursive compare

SANDBOX = """\
# Written by tests/test_sandbox.py.
route /alive { on message { send raw } }

route /dunder {
  on message type "read" {
    send { cls: msg.__class__, cls2: msg["__class__"], init: headers.__init__,
           dict: conn["__dict__"], slots: conn["__slots__"], inner: conn["_conn"],
           getitem: msg["__getitem__"], keys: keys(conn), query: query.__class__,
           auth: auth.__class__, params: params.__dict__ }
  }
  on message type "mro" {
    send { mro: msg.__class__.__mro__ }  # MRO
  }
  on message type "raw" {
    send { r: raw.__class__ }  # RAW
  }
  on error { send { type: "error", message: error.message, location: error.location } }
}

route /crash {
  on message type "missing" { send { x: msg.a.b } }  # MISSING
  on message type "wrong-type" { send { x: msg.n - "text" } }  # WRONG-TYPE
  on message type "zero" { send { x: msg.n / msg.d } }  # ZERO
  on message type "bad-index" { send { x: msg.items[msg.i] } }  # BAD-INDEX
  on message type "bad-room" { join msg.room }  # BAD-ROOM
}

route /crash-handled {
  on message type "missing" { send { x: msg.a.b } }  # H-MISSING
  on message type "wrong-type" { send { x: msg.n - "text" } }  # H-WRONG-TYPE
  on message type "zero" { send { x: msg.n / msg.d } }  # H-ZERO
  on message type "bad-index" { send { x: msg.items[msg.i] } }  # H-BAD-INDEX
  on message type "bad-room" { join msg.room }  # H-BAD-ROOM
  on message type "ok" { send "ok" }
  on error { send { type: "error", message: error.message, location: error.location } }
}

route /double {
  on message {
    let a1 = msg.s + msg.s  # DOUBLE
    let a2 = a1 + a1
    let a3 = a2 + a2
    let a4 = a3 + a3
    let a5 = a4 + a4
    let a6 = a5 + a5
    let a7 = a6 + a6
    let a8 = a7 + a7
    let a9 = a8 + a8
    let a10 = a9 + a9
    let a11 = a10 + a10
    let a12 = a11 + a11
    let a13 = a12 + a12
    let a14 = a13 + a13
    let a15 = a14 + a14
    let a16 = a15 + a15
    let a17 = a16 + a16
    let a18 = a17 + a17
    let a19 = a18 + a18
    let a20 = a19 + a19
    let a21 = a20 + a20
    let a22 = a21 + a21
    let a23 = a22 + a22
    let a24 = a23 + a23
    let a25 = a24 + a24
    send { len: len(a25) }
  }
}

route /nest-array {
  on message {
    let a1 = [msg.s, msg.s]
    let a2 = [a1, a1]
    let a3 = [a2, a2]
    let a4 = [a3, a3]
    let a5 = [a4, a4]
    let a6 = [a5, a5]
    let a7 = [a6, a6]
    send a7  # NEST-ARRAY
  }
}

route /nest-object {
  on message {
    let a1 = { l: msg.s, r: msg.s }
    let a2 = { l: a1, r: a1 }
    let a3 = { l: a2, r: a2 }
    let a4 = { l: a3, r: a3 }
    let a5 = { l: a4, r: a4 }
    let a6 = { l: a5, r: a5 }
    let a7 = { l: a6, r: a6 }
    broadcast a7 include self  # NEST-OBJECT
  }
}

route /parsed {
  on message type "x" { send "typed" }
  on message { send msg }
}

route /compare {
  on message { if msg == msg { send "equal" } }  # COMPARE
}

route /compare-handled {
  on message { if msg in [msg] { send "member" } }  # H-COMPARE
  on error { send { type: "error", message: error.message, location: error.location } }
}

route /nest-string {
  on message {
    send [  # NEST-STRING
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
      "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}", "${str('${raw}')}",
    ]
  }
}

let k0 = "0123456789abcdef"
let k1 = k0 + k0
let k2 = k1 + k1
let k3 = k2 + k2
let k4 = k3 + k3
let k5 = k4 + k4
let k6 = k5 + k5
let k7 = k6 + k6
let k8 = k7 + k7
let k9 = k8 + k8
let k10 = k9 + k9
let k11 = k10 + k10
let k12 = k11 + k11
let k13 = k12 + k12
route /nest-constant {
  on message {
    send [  # NEST-CONSTANT
      msg.s,
      k13, k13, k13, k13, k13, k13, k13, k13, k13, k13,
      k13, k13, k13, k13, k13, k13, k13, k13, k13, k13,
      k13, k13, k13, k13, k13, k13, k13, k13, k13, k13,
      k13, k13, k13, k13, k13, k13, k13, k13, k13, k13,
      k13, k13, k13, k13, k13, k13, k13, k13, k13, k13,
    ]
  }
}
"""


class Sandbox:
    def __init__(self, served: ServedMock) -> None:
        self.served = served
        self.pid = served.process.pid

    def url(self, path: str) -> str:
        return self.served.url(path)

    def line(self, marker: str) -> int:
        return line_of(SANDBOX, f"# {marker}")

    async def assert_alive(self) -> None:
        await assert_alive(self.served)


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    path = tmp_path_factory.mktemp("sandbox") / "sandbox.mock"
    path.write_text(SANDBOX, encoding="utf-8")
    served = start_mock(path)
    resource.prlimit(served.process.pid, resource.RLIMIT_AS, (SERVER_MEMORY, SERVER_MEMORY))
    yield Sandbox(served)
    served.stop()
    served.log.join()


@pytest.fixture
def sandbox(sandbox_server: Sandbox) -> Sandbox:
    """The sandbox server, its log checked from the start of this test only."""
    sandbox_server.served.log.mark()
    return sandbox_server


@pytest.mark.e2e
@async_test
async def test_member_access_reads_data_never_python_attributes(sandbox: Sandbox) -> None:
    url = sandbox.url("/dunder")
    async with connect(url, additional_headers={"__init__": "a header"}) as ws:
        await ws.send(json.dumps({"type": "read"}))
        assert await recv_json(ws) == {
            "cls": None,
            "cls2": None,
            "init": "a header",
            "dict": None,
            "slots": None,
            "inner": None,
            "getitem": None,
            "keys": ["id", "rooms", "ip", "path", "query", "headers", "params", "subprotocol"],
            "query": None,
            "auth": None,
            "params": None,
        }
        await ws.send(json.dumps({"type": "read", "__class__": "just data"}))
        got = await recv_json(ws)
        assert (got["cls"], got["cls2"]) == ("just data", "just data"), got

        await ws.send(json.dumps({"type": "mro", "__class__": {"__mro__": ["data"]}}))
        assert await recv_json(ws) == {"mro": ["data"]}
        await ws.send(json.dumps({"type": "mro"}))
        error = await recv_json(ws)
        assert error["message"] == "cannot read '__mro__' of null", error
        assert re.fullmatch(rf".*sandbox\.mock:{sandbox.line('MRO')}:\d+", error["location"]), error
        await ws.send("raw")  # not JSON: msg and raw are the string; no type, no handler
        await ws.send(json.dumps({"type": "raw"}))
        error = await recv_json(ws)
        assert error["type"] == "error", error
        assert error["message"] == "cannot read '__class__' of a string", error
    await sandbox.assert_alive()


RUNTIME_ERRORS = {
    "missing": ({"type": "missing"}, "cannot read 'b' of null"),
    "wrong-type": ({"type": "wrong-type", "n": 1}, "'-' needs numbers, not a number and a string"),
    "zero": ({"type": "zero", "n": 1, "d": 0}, "division by zero"),
    "bad-index": (
        {"type": "bad-index", "items": [1], "i": "0"},
        "an index into an array must be a whole number, not a string",
    ),
    "bad-room": (
        {"type": "bad-room", "room": {"a": 1}},
        "a room name must be a string, not an object",
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(RUNTIME_ERRORS))
@async_test
async def test_runtime_error_closes_1011_and_logs_the_line(sandbox: Sandbox, case: str) -> None:
    message, error = RUNTIME_ERRORS[case]
    async with connect(sandbox.url("/crash")) as ws:
        await ws.send(json.dumps(message))
        assert await closed(ws) == (1011, "Internal error")
    line = sandbox.line(case.upper())
    logged = sandbox.served.log.wait_for(
        rf"sandbox\.mock:{line}:\d+: \[[0-9a-f]+\] handler failed: "
    )
    assert logged.endswith(error), logged
    await sandbox.assert_alive()


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(RUNTIME_ERRORS))
@async_test
async def test_runtime_error_runs_on_error_and_stays_open(sandbox: Sandbox, case: str) -> None:
    message, error = RUNTIME_ERRORS[case]
    async with connect(sandbox.url("/crash-handled")) as ws:
        await ws.send(json.dumps(message))
        reply = await recv_json(ws)
        assert reply["type"] == "error" and reply["message"] == error, reply
        assert re.fullmatch(
            rf".*sandbox\.mock:{sandbox.line('H-' + case.upper())}:\d+", reply["location"]
        ), reply
        await ws.send(json.dumps({"type": "ok"}))
        assert await recv(ws) == "ok"
    await sandbox.assert_alive()


# ---- bounded work ----------------------------------------------------------------------------


@pytest.mark.e2e
@async_test
async def test_doubling_a_string_hits_the_cap(sandbox: Sandbox) -> None:
    peak = rss_mb(sandbox.pid, "VmHWM")
    async with connect(sandbox.url("/double"), compression=None) as ws:
        await ws.send(json.dumps({"s": "x" * 100_000}))
        assert await closed(ws) == (1011, "Internal error")
    logged = sandbox.served.log.wait_for(
        rf"sandbox\.mock:{sandbox.line('DOUBLE') + 3}:\d+: .*handler failed: string too long"
    )
    assert f"the limit is {MAX_STRING:,}" in logged, logged
    growth = rss_mb(sandbox.pid, "VmHWM") - peak
    print(f"\nstring doubling: {logged.split('handler failed: ')[1]}; peak RSS +{growth:.1f} MB")
    assert growth < 50, f"the server's peak RSS grew by {growth:.0f} MB"
    await sandbox.assert_alive()


@pytest.mark.e2e
@pytest.mark.parametrize("path", ["/nest-array", "/nest-object"])
@async_test
async def test_nesting_a_value_in_itself_is_bounded_too(sandbox: Sandbox, path: str) -> None:
    """2⁷ copies of a 100 KB string: 12.8 MB of JSON, past MAX_STRING. Literal arrays and
    objects are not capped, and ``send``/``broadcast`` encode without a cap, so each level of
    nesting doubles what the server builds: 13 levels made an 819 MB frame (12 s of a blocked
    server); 25 would need 3 TB."""
    peak = rss_mb(sandbox.pid, "VmHWM")
    async with connect(sandbox.url(path), compression=None, max_size=None) as ws:
        await ws.send(json.dumps({"s": "x" * 100_000}))
        try:
            reply = await asyncio.wait_for(ws.recv(), BOUND)
        except ConnectionClosed:
            code, reason = ws.close_code, ws.close_reason
        else:
            raise AssertionError(
                f"{path}: the server built and sent a {len(reply):,}-character message from "
                f"a 100 KB one (the cap is {MAX_STRING:,} characters): the size of what "
                f"send/broadcast encode is not bounded"
            )
    assert (code, reason) == (1011, "Internal error")
    growth = rss_mb(sandbox.pid, "VmHWM") - peak
    assert growth < 50, f"the server's peak RSS grew by {growth:.0f} MB"
    await sandbox.assert_alive()


@pytest.mark.e2e
@pytest.mark.parametrize("path", ["/nest-string", "/nest-constant"])
@async_test
async def test_repeating_a_value_is_measured_before_it_is_sent(sandbox: Sandbox, path: str) -> None:
    """50 copies of the 100 KB message, each inside a string embedded in an expression
    (``"${str("${raw}")}"``), or of a 128 KB constant: 5 MB or more, past MAX_STRING. The
    check that lets a template go unmeasured must see the names in nested strings, and count
    what constants add, or the server sends what it would refuse to build otherwise."""
    peak = rss_mb(sandbox.pid, "VmHWM")
    async with connect(sandbox.url(path), compression=None, max_size=None) as ws:
        await ws.send(json.dumps({"s": "x" * 100_000}))
        try:
            reply = await asyncio.wait_for(ws.recv(), BOUND)
        except ConnectionClosed:
            code, reason = ws.close_code, ws.close_reason
        else:
            raise AssertionError(
                f"{path}: the server sent a {len(reply):,}-character message "
                f"(the cap is {MAX_STRING:,} characters) without measuring it"
            )
    assert (code, reason) == (1011, "Internal error")
    marker = path.removeprefix("/").upper()
    sandbox.served.log.wait_for(
        rf"sandbox\.mock:{sandbox.line(marker)}:\d+: .*handler failed: value too large to send"
    )
    assert rss_mb(sandbox.pid, "VmHWM") - peak < 50
    await sandbox.assert_alive()


@pytest.mark.parametrize(
    ("template", "constants", "bounded"),
    [
        (["${raw}"] * 4, {}, True),
        (["${raw}"] * 5, {}, False),
        (['${str("${raw}")}'] * 50, {}, False),  # names inside nested strings count too
        (['${"${msg.a}" + "${msg.b}" + "${msg.c}"}'] * 2, {}, False),
        ({"a": "${big}"}, {"big": "x" * 600_000}, True),
        ({"a": "${big}", "b": "${big}"}, {"big": "x" * 600_000}, False),  # 1.2 MB of constant
        ({"a": "${small}", "b": "${small}"}, {"small": "x" * 10}, True),
        ("${conn.id}", {}, True),
        ("${conn.rooms}", {}, False),  # grows with every room joined
        ("${conn}", {}, False),
        ("${[auth, auth]}", {}, False),  # each up to MAX_STRING
        ("${[code, reason, msg]}", {}, True),
        ("${x}", {}, False),  # a let: values may share parts and grow exponentially
    ],
)
def test_which_templates_are_sent_unmeasured(
    template: object, constants: dict[str, object], bounded: bool
) -> None:
    assert _size_is_bounded(template, constants) is bounded


#: 16 MiB messages (the default limit) nested far deeper than json's recursion limit.
DEEP_MESSAGES = {
    "arrays": "[" * (8 * 1024 * 1024) + "]" * (8 * 1024 * 1024),
    "objects": '{"a":' * (2 * 1024 * 1024) + "1" + "}" * (2 * 1024 * 1024),
    "unclosed": "[" * (16 * 1024 * 1024),
}


@pytest.mark.e2e
@pytest.mark.parametrize("kind", list(DEEP_MESSAGES))
@async_test
async def test_deeply_nested_16mb_message_does_not_crash_the_server(
    sandbox: Sandbox, kind: str
) -> None:
    text = DEEP_MESSAGES[kind]
    assert len(text) <= 16 * 1024 * 1024
    peak = rss_mb(sandbox.pid, "VmHWM")
    async with connect(sandbox.url("/parsed"), compression=None, max_size=None) as ws:
        await ws.send(text)
        # Too deep to be data: the message is a string (so `on message` sends it back).
        reply = await recv(ws, within=BOUND * 2)
        assert reply == text, f"{kind}: got {str(reply)[:80]!r}…"
    growth = rss_mb(sandbox.pid, "VmHWM") - peak
    print(f"\ndeep {kind}: answered as text; peak RSS +{growth:.1f} MB")
    assert growth < 200, f"the server's peak RSS grew by {growth:.0f} MB"
    await sandbox.assert_alive()


@pytest.mark.e2e
@pytest.mark.parametrize(("path", "handled"), [("/compare", False), ("/compare-handled", True)])
@async_test
async def test_comparing_a_deep_message_is_an_ordinary_runtime_error(
    sandbox: Sandbox, path: str, handled: bool
) -> None:
    """A message json parses (DEPTH_FOR_EQUAL levels) but too deep for the evaluator's
    recursive ``==``/``in``: the rule of any runtime error, not a crash of the handler."""
    deep = "[" * DEPTH_FOR_EQUAL + "]" * DEPTH_FOR_EQUAL
    marker = "H-COMPARE" if handled else "COMPARE"
    async with connect(sandbox.url(path)) as ws:
        await ws.send(deep)
        if handled:
            try:
                reply = await recv_json(ws)
            except AssertionError as err:
                raise AssertionError(f"on error did not run: {err}") from None
            assert reply["type"] == "error", reply
        else:
            assert await closed(ws) == (1011, "Internal error")
    sandbox.served.log.wait_for(rf"sandbox\.mock:{sandbox.line(marker)}:\d+: ")
    await sandbox.assert_alive()

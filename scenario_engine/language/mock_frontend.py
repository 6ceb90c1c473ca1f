"""`.mock` text → IR document + source map, or every syntax error of the file.

Parsing is lark's (see ``syntax``); this module turns the statement nodes into the IR of
``docs/ir.md``, recording where each IR node came from. Expressions are copied verbatim into the
IR (``conn.id`` becomes ``"${conn.id}"``) so that a position inside one can always be traced back.

After a syntax error the parser blanks the offending line (when its brackets balance) and parses
again, so that one run reports the errors of several lines, as a compiler does.
"""

from __future__ import annotations

import bisect
import contextlib
import re
from collections.abc import Mapping
from typing import TypedDict, cast

from lark import Token
from lark.exceptions import UnexpectedInput

from ..errors import ScenarioError, StringSyntaxError
from ..expr.strings import join_template, split_literal, unquote
from ..expr.syntax import (
    ArrayLit,
    Expr,
    Literal,
    Name,
    Node,
    ObjectLit,
    Stmt,
    StringLit,
    negative_number,
    parser,
    string_literal,
)
from ..expr.syntax_errors import (
    MAX_NESTING,
    block_end,
    brackets_balance,
    describe_syntax_error,
    max_nesting,
)
from .ir import (
    Action,
    AfterBody,
    AuthStep,
    Binding,
    BroadcastBody,
    CloseBody,
    ConnectStep,
    Document,
    EveryBody,
    ExpectCloseStep,
    ExpectStep,
    Expression,
    Handlers,
    IfAction,
    MessageHandler,
    PingPongBody,
    RejectBody,
    Route,
    RouteTimer,
    SendStep,
    Subprotocols,
    Template,
    Test,
    TestStep,
)
from .source import Source, SourceMap, Span, escape_pointer

__all__ = ["parse_mock"]

_MAX_RECOVERIES = 20


class _Abort(Exception):
    """Stops the conversion of a statement whose error has been recorded."""


class _Match(TypedDict, total=False):
    """What a message handler matches on: its keys before ``do`` (built first, in order)."""

    type: str
    where: Expression
    binary: bool


def parse_mock(source: Source) -> tuple[Document | None, SourceMap, list[ScenarioError]]:
    """Parse a `.mock` file. Returns the IR (None when it has syntax errors), its source map,
    and the errors found."""
    front = _Front(source)
    depth, where = max_nesting(source.text)
    if depth > MAX_NESTING:
        line, col = front.position(where)
        return (
            None,
            {},
            [
                source.error(
                    line,
                    col,
                    f"nesting too deep (more than {MAX_NESTING} levels of brackets)",
                    "flatten the structure",
                )
            ],
        )
    tree, errors = _parse_with_recovery(source, front)
    if tree is None:
        return None, {}, errors
    ir = front.document(tree)
    return (ir if not front.errors else None), front.source_map, front.errors


def _parse_with_recovery(source: Source, front: _Front) -> tuple[Stmt | None, list[ScenarioError]]:
    text = source.text
    errors: list[ScenarioError] = []
    for _ in range(_MAX_RECOVERIES):
        try:
            tree: Stmt = parser().parse(text, start="start")  # type: ignore[assignment]
        except UnexpectedInput as err:
            message, hint, start, end = describe_syntax_error(err, text)
            line, col = front.position(start)
            end_line, end_col = front.position(end)
            errors.append(
                source.error(
                    line, col, message, hint, end_col if end_line == line and end > start else None
                )
            )
            # After a missing '}', the brackets no longer say where statements end: what the
            # parser would find next is noise.
            blanked = None if "'}' is missing" in message else _blank_line(text, start)
            if blanked is None:
                return None, errors
            text = blanked
            continue
        return (tree if not errors else None), errors
    return None, errors


def _blank_line(text: str, offset: int) -> str | None:
    """``text`` with the line holding ``offset`` replaced by spaces, if that keeps brackets
    balanced (otherwise recovery would only produce noise). A line that opens a block
    (``on conect {``) is blanked with its whole block, up to the bracket that closes it."""
    if offset >= len(text):
        return None
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    end = len(text) if end < 0 else end
    line = text[start:end]
    if not line.strip():
        return None
    if not brackets_balance(line):
        closing = block_end(text, start, end)
        if closing is None:
            return None
        end = closing + 1
    blanked = "".join("\n" if c == "\n" else " " for c in text[start:end])
    return text[:start] + blanked + text[end:]


class _Front:
    """Converts the statement nodes of one file into IR, recording the source map."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.text = source.text
        self.source_map: SourceMap = {}
        self.errors: list[ScenarioError] = []
        self._line_starts = [0]
        self._line_starts.extend(m.end() for m in re.finditer("\n", self.text))

    # ---- positions -------------------------------------------------------------------------
    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def span(self, start: int, end: int, origin_offset: int | None = None) -> Span:
        line, col = self.position(start)
        end_line, end_col = self.position(end)
        origin = None
        if origin_offset is not None:
            oline, ocol = self.position(max(origin_offset, 0))
            origin = (oline, ocol + min(origin_offset, 0))
        return Span(line, col, end_line, end_col, origin)

    def mark(self, pointer: str, node: Node | Token, origin_offset: int | None = None) -> None:
        if isinstance(node, Token):
            start, end = node.start_pos or 0, node.end_pos or 0
        else:
            start, end = node.start, node.end
        self.source_map[pointer] = self.span(start, end, origin_offset)

    def error(self, start: int, end: int, message: str, hint: str | None = None) -> None:
        line, col = self.position(start)
        end_line, end_col = self.position(end)
        self.errors.append(
            self.source.error(
                line, col, message, hint, end_col if end_line == line and end > start else None
            )
        )

    # ---- document ---------------------------------------------------------------------------
    def document(self, tree: Stmt) -> Document:
        ir: Document = {}
        routes: list[Route] = []
        tests: list[Test] = []
        constants: dict[str, Template] = {}
        state: dict[str, Template] | None = None
        self.mark("", tree)
        for item in tree.parts:
            try:
                if item.kind == "prefix":
                    if "prefix" in ir:
                        self.error(
                            item.start,
                            item.end,
                            "'prefix' is given twice",
                            "a file has one prefix, written before its routes",
                        )
                        continue
                    ir["prefix"] = self.path(item.parts[0], "/prefix")
                elif item.kind == "let_stmt":
                    name = str(item.parts[0])
                    if name in constants:
                        self.error(
                            item.parts[0].start_pos,
                            item.parts[0].end_pos,
                            f"'{name}' is already defined",
                            "give each constant one name",
                        )
                        continue
                    pointer = f"/let/{name}"
                    self.mark(pointer + "#key", item.parts[0])
                    constants[name] = self.template(item.parts[1], pointer)
                elif item.kind == "state":
                    if state is not None:
                        self.error(
                            item.start,
                            item.end,
                            "'state' is given twice",
                            "a file has one state block; put every key in it",
                        )
                        continue
                    state = self.state(item)
                elif item.kind == "test":
                    tests.append(self.test(item, f"/tests/{len(tests)}"))
                else:
                    routes.append(self.route(item, f"/routes/{len(routes)}"))
            except _Abort:
                continue
        if "prefix" in ir:
            ir = {"prefix": ir["prefix"]}
        if constants:
            ir["let"] = constants
            self.mark("/let", tree)
        if state is not None:
            ir["state"] = state
        ir["routes"] = routes
        self.mark("/routes", tree)
        if tests:
            ir["tests"] = tests
            self.mark("/tests", tree)
        return ir

    def state(self, node: Stmt) -> dict[str, Template]:
        value = node.parts[0]
        if not isinstance(value, ObjectLit):
            self.error(
                value.start,
                value.end,
                "the state block is an object",
                "write its initial keys and values: state { highest: 0, bidder: null }",
            )
            raise _Abort
        initial: dict[str, Template] = self.template(value, "/state")
        self.mark("/state", node)
        return initial

    def path(self, node: Stmt, pointer: str) -> str:
        token = node.parts[0]
        value = self.plain_string(token) if token.type == "STRING" else str(token)
        self.mark(pointer, token)
        return value

    def plain_string(self, token: Token | StringLit) -> str:
        node = token if isinstance(token, StringLit) else string_literal(token)
        try:
            return unquote(node.raw)
        except StringSyntaxError as err:
            at = node.start + err.offset
            self.error(at, at + 2, err.message, err.hint)
            raise _Abort from None

    # ---- routes -----------------------------------------------------------------------------
    def route(self, node: Stmt, pointer: str) -> Route:
        self.mark(pointer, node)
        route: Route = {"path": self.path(node.parts[0], pointer + "/path")}
        handlers: dict[str, list[Action]] = {}  # event (connect, close, error) → its actions
        messages: list[MessageHandler] = []
        timers: list[RouteTimer] = []
        seen: dict[str, Stmt] = {}
        for item in node.parts[1:]:
            key = _SETTING_KEYS.get(item.kind, item.kind)
            if item.kind == "route_every":
                with contextlib.suppress(_Abort):
                    timers.append(self.route_timer(item, f"{pointer}/every/{len(timers)}"))
                continue
            if key in seen and key != "on_message":
                first_line, _ = self.position(seen[key].start)
                what = _SETTING_NAMES.get(key, key.replace("_", " "))
                self.error(
                    item.start,
                    item.end,
                    f"'{what}' is given twice in this route",
                    f"the first is on line {first_line}; keep one",
                )
                continue
            seen[key] = item
            try:
                self.route_item(item, route, handlers, messages, pointer)
            except _Abort:
                continue
        on: Handlers = {}  # in this order, whatever the order written
        if "connect" in handlers:
            on["connect"] = handlers["connect"]
        if messages:
            on["message"] = messages
        if "close" in handlers:
            on["close"] = handlers["close"]
        if "error" in handlers:
            on["error"] = handlers["error"]
        if on:
            route["on"] = on
            self.mark(pointer + "/on", node)
        if timers:
            route["every"] = timers
            self.mark(pointer + "/every", node)
        return route

    def route_timer(self, node: Stmt, pointer: str) -> RouteTimer:
        delay, times, block = node.parts
        self.mark(pointer, node)
        timer: dict[str, object] = {"interval": self.delay(delay, pointer + "/interval")}
        if times is not None:
            timer["times"] = self.integer(
                times.parts[0], pointer + "/times", "'times' is a whole number like 3"
            )
        timer["do"] = self.block(block, pointer + "/do", node)
        return cast(RouteTimer, timer)  # built key by key for the IR's order: ``do`` last

    def route_item(
        self,
        item: Stmt,
        route: Route,
        handlers: dict[str, list[Action]],
        messages: list[MessageHandler],
        pointer: str,
    ) -> None:
        kind = item.kind
        if kind == "heartbeat":
            route["heartbeat"] = self.quantity(item.parts[0], pointer + "/heartbeat", "duration")
        elif kind == "compression_off":
            route["compression"] = {"enabled": False}
            self.mark(pointer + "/compression", item)
        elif kind == "compression_on":
            route["compression"] = {"enabled": True}
            self.mark(pointer + "/compression", item)
        elif kind == "compression_threshold":
            route["compression"] = {
                "threshold": self.quantity(
                    item.parts[0], pointer + "/compression/threshold", "size"
                )
            }
            self.mark(pointer + "/compression", item)
        elif kind == "max_message":
            route["maxMessage"] = self.quantity(item.parts[0], pointer + "/maxMessage", "size")
        elif kind == "max_connections":
            route["maxConnections"] = self.integer(
                item.parts[0],
                pointer + "/maxConnections",
                "a connection limit is a whole number like 100",
            )
        elif kind == "max_rooms":
            route["maxRooms"] = self.integer(
                item.parts[0], pointer + "/maxRooms", "a room limit is a whole number like 100"
            )
        elif kind == "max_timers":
            route["maxTimers"] = self.integer(
                item.parts[0], pointer + "/maxTimers", "a timer limit is a whole number like 10"
            )
        elif kind == "max_session":
            route["maxSession"] = self.quantity(item.parts[0], pointer + "/maxSession", "size")
        elif kind == "origins":
            self.mark(pointer + "/origins", item)
            route["origins"] = []
            for i, token in enumerate(t for t in item.parts if t is not None):
                route["origins"].append(self.plain_string(token))
                self.mark(f"{pointer}/origins/{i}", token)
        elif kind == "subprotocols":
            *tokens, required = item.parts
            self.mark(pointer + "/subprotocols", item)
            protocols: Subprotocols = {"names": []}
            self.mark(pointer + "/subprotocols/names", item)
            for i, token in enumerate(t for t in tokens if t is not None):
                protocols["names"].append(self.plain_string(token))
                self.mark(f"{pointer}/subprotocols/names/{i}", token)
            if required is not None:
                protocols["required"] = True
                self.mark(pointer + "/subprotocols/required", required)
            route["subprotocols"] = protocols
        elif kind == "latency":
            # The optional '..' and upper bound are absent as placeholders (None, None).
            low, *rest = item.parts
            high = next((part for part in rest if part is not None), None)
            latency = self.quantity(low, pointer + "/latency", "duration")
            if high is not None:
                latency += ".." + self.quantity(high, pointer + "/latency", "duration")
            self.mark(pointer + "/latency", item)
            route["latency"] = latency
        elif kind == "auth":
            self.mark(pointer + "/auth", item)
            route["auth"] = [
                self.auth_step(step, f"{pointer}/auth/{i}") for i, step in enumerate(item.parts)
            ]
        elif kind == "on_message":
            messages.append(self.message_handler(item, f"{pointer}/on/message/{len(messages)}"))
        else:
            event = kind.removeprefix("on_")
            handlers[event] = self.block(item.parts[0], f"{pointer}/on/{event}", item)

    def quantity(self, node: Stmt, pointer: str, what: str) -> str:
        token = node.parts[0]
        self.mark(pointer, token)
        if token.type == "NUMBER":
            if what == "size" and str(token).isdigit():
                return f"{token}B"
            self.error(
                token.start_pos,
                token.end_pos,
                f"a {what} needs a unit",
                "write for example 30s or 500ms"
                if what == "duration"
                else "write for example 64KB or 1MB",
            )
            raise _Abort
        return str(token)

    def auth_step(self, node: Stmt, pointer: str) -> AuthStep:
        self.mark(pointer, node)
        if node.kind == "accept":
            return {"accept": self.template(node.parts[0], pointer + "/accept")}
        if node.kind == "let_stmt":
            return {"let": self.let(node, pointer + "/let")}
        if node.kind == "wait":
            return {"wait": self.delay(node.parts[0], pointer + "/wait")}
        code_node, reason, condition = node.parts
        body: RejectBody = {}
        if code_node.kind == "close_code":
            body["code"] = self.integer(code_node.parts[0], pointer + "/reject/code")
        else:
            body["status"] = self.integer(code_node.parts[0], pointer + "/reject/status")
        if reason is not None:
            body["reason"] = self.template(reason, pointer + "/reject/reason")
        if condition is not None:
            if condition.kind == "unless":
                body["unless"] = self.expression(condition.parts[0], pointer + "/reject/unless")
            else:
                body["if"] = self.expression(condition.parts[0], pointer + "/reject/if")
        self.mark(pointer + "/reject", node)
        return {"reject": body}

    def integer(
        self, token: Token, pointer: str, hint: str = "codes are whole numbers like 4001"
    ) -> int:
        self.mark(pointer, token)
        text = str(token)
        if not text.isdigit():
            self.error(
                token.start_pos or 0, token.end_pos or 0, f"'{text}' is not a whole number", hint
            )
            raise _Abort
        return int(text)

    def message_handler(self, node: Stmt, pointer: str) -> MessageHandler:
        binary, msg_type, where, block = node.parts
        self.mark(pointer, node)
        match: _Match = {}
        if msg_type is not None:
            token = msg_type.parts[0]
            match["type"] = self.plain_string(token)
            self.mark(pointer + "/type", token)
        if where is not None:
            match["where"] = self.expression(where.parts[0], pointer + "/where")
        if binary is not None:
            match["binary"] = True
            self.mark(pointer + "/binary", binary)
        return {**match, "do": self.block(block, pointer + "/do", node)}

    # ---- actions ----------------------------------------------------------------------------
    def block(self, block: Stmt, pointer: str, owner: Stmt) -> list[Action]:
        self.mark(pointer, owner)
        actions: list[Action] = []
        for action in block.parts:
            try:
                actions.append(self.action(action, f"{pointer}/{len(actions)}"))
            except _Abort:
                continue
        return actions

    def action(self, node: Stmt, pointer: str) -> Action:
        self.mark(pointer, node)
        kind = node.kind
        if kind in ("send", "join", "leave", "log"):
            value = self.template(node.parts[0], f"{pointer}/{kind}")
            if kind == "send":
                return {"send": value}
            if kind == "join":
                return {"join": value}
            if kind == "leave":
                return {"leave": value}
            return {"log": value}
        if kind == "broadcast":
            data, to, include_self = node.parts
            body: BroadcastBody = {"data": self.template(data, pointer + "/broadcast/data")}
            if to is not None:
                rooms = to.parts[0]
                items = rooms.items if isinstance(rooms, ArrayLit) else (rooms,)
                self.mark(pointer + "/broadcast/to", to)
                body["to"] = [
                    self.template(room, f"{pointer}/broadcast/to/{i}")
                    for i, room in enumerate(items)
                ]
            if include_self is not None:
                body["includeSelf"] = True
                self.mark(pointer + "/broadcast/includeSelf", include_self)
            self.mark(pointer + "/broadcast", node)
            return {"broadcast": body}
        if kind == "close":
            code, reason = node.parts
            return {"close": self.close_body(code, reason, pointer + "/close", node)}
        if kind in ("ping", "pong"):
            (payload,) = node.parts
            self.mark(f"{pointer}/{kind}", node)
            frame: PingPongBody = {}
            if payload is not None:
                frame["data"] = self.template(payload, f"{pointer}/{kind}/data")
            return {"ping": frame} if kind == "ping" else {"pong": frame}
        if kind == "let_stmt":
            return {"let": self.let(node, pointer + "/let")}
        if kind == "every":
            delay, times, name, block = node.parts
            every: dict[str, object] = {"interval": self.delay(delay, pointer + "/every/interval")}
            if times is not None:
                every["times"] = self.integer(
                    times.parts[0], pointer + "/every/times", "'times' is a whole number like 3"
                )
            if name is not None:
                every["as"] = self.timer_name(name.parts[0], pointer + "/every/as")
            every["do"] = self.block(block, pointer + "/every/do", node)
            self.mark(pointer + "/every", node)
            return {"every": cast(EveryBody, every)}  # key by key for the order: ``do`` last
        if kind == "after":
            delay, name, block = node.parts
            after: dict[str, object] = {"delay": self.delay(delay, pointer + "/after/delay")}
            if name is not None:
                after["as"] = self.timer_name(name.parts[0], pointer + "/after/as")
            after["do"] = self.block(block, pointer + "/after/do", node)
            self.mark(pointer + "/after", node)
            return {"after": cast(AfterBody, after)}  # key by key for the order: ``do`` last
        if kind == "cancel":
            return {"cancel": self.timer_name(node.parts[0], pointer + "/cancel")}
        if kind == "wait":
            return {"wait": self.delay(node.parts[0], pointer + "/wait")}
        if kind == "set":
            target, value = node.parts
            self.mark(pointer + "/set", node)
            return {
                "set": {
                    "path": self.expression(target, pointer + "/set/path"),
                    "value": self.template(value, pointer + "/set/value"),
                }
            }
        if kind == "unset":
            return {"unset": self.expression(node.parts[0], pointer + "/unset")}
        if kind == "drop":
            self.mark(pointer + "/drop", node)
            return {"drop": {}}
        assert kind == "if_stmt", kind
        return self.if_action(node, pointer)

    def delay(self, node: Stmt, pointer: str) -> str:
        """A timer's interval or a wait: a duration as written, or ``${EXPR}`` to evaluate."""
        value = node.parts[0]
        if isinstance(value, Token):  # QUANTITY
            self.mark(pointer, value)
            return str(value)
        if isinstance(value, Literal) and not isinstance(value.value, bool | None):
            self.error(
                value.start,
                value.end,
                "a duration needs a unit",
                f"write for example {value.value}ms or {value.value}s",
            )
            raise _Abort
        template = self.template(value, pointer)
        if not isinstance(template, str):
            self.error(
                value.start,
                value.end,
                "a duration is a value such as 500ms, or an expression giving one",
                "write for example every 500ms, or every interval with let interval = 500",
            )
            raise _Abort
        return template

    def timer_name(self, node: Expr, pointer: str) -> Template:
        """A timer's name: a bare word is that word; any other expression is evaluated."""
        if isinstance(node, Name):
            self.mark(pointer, node)
            return node.name
        return self.template(node, pointer)

    def if_action(self, node: Stmt, pointer: str) -> IfAction:
        test, then, otherwise = node.parts
        action: IfAction = {
            "if": self.expression(test, pointer + "/if"),
            "then": self.block(then, pointer + "/then", then),
        }
        if otherwise is not None:
            branch = otherwise.parts[0]
            if branch.kind == "block":
                action["else"] = self.block(branch, pointer + "/else", otherwise)
            else:
                self.mark(pointer + "/else", otherwise)
                action["else"] = [self.action(branch, pointer + "/else/0")]
        return action

    def let(self, node: Stmt, pointer: str) -> Binding:
        name_token, value = node.parts
        self.mark(pointer, node)
        self.mark(pointer + "/name", name_token)
        return {"name": str(name_token), "value": self.template(value, pointer + "/value")}

    # ---- tests ------------------------------------------------------------------------------
    def test(self, node: Stmt, pointer: str) -> Test:
        name_token, strict, *step_nodes = node.parts
        self.mark(pointer, node)
        self.mark(pointer + "/name", name_token)
        name = self.plain_string(name_token)
        steps: list[TestStep] = []
        test: Test
        if strict is not None:
            test = {"name": name, "strict": True, "steps": steps}
            self.mark(pointer + "/strict", strict)
        else:
            test = {"name": name, "steps": steps}
        self.mark(pointer + "/steps", node)
        for step in step_nodes:
            try:
                steps.append(self.test_step(step, f"{pointer}/steps/{len(steps)}"))
            except _Abort:
                continue
        return test

    def test_step(self, node: Stmt, pointer: str) -> TestStep:
        self.mark(pointer, node)
        kind = node.kind
        if kind == "connect":
            return self.connect(node, pointer)
        if kind == "wait":
            return {"wait": self.delay(node.parts[0], pointer + "/wait")}
        if kind == "let_stmt":
            return {"let": self.let(node, pointer + "/let")}
        client_token, *rest = node.parts
        client = str(client_token)
        self.mark(pointer + "/client", client_token)
        if kind == "client_send":
            binary, value = rest
            send: SendStep = {"client": client, "send": self.template(value, pointer + "/send")}
            if binary is not None:
                send["binary"] = True
                self.mark(pointer + "/binary", binary)
            return send
        if kind == "client_expect":
            value, *options = rest
            expect: ExpectStep = {
                "client": client,
                "expect": self.template(value, pointer + "/expect"),
            }
            for option in options:
                if option.kind == "within":
                    self.once(expect, "within", option)
                    expect["within"] = self.quantity(
                        option.parts[0], pointer + "/within", "duration"
                    )
                else:
                    self.once(expect, "capture", option)
                    expect["capture"] = self.captures(option, pointer + "/capture")
            return expect
        if kind == "client_expect_no_message":
            return {
                "client": client,
                "expectNoMessage": self.quantity(rest[0], pointer + "/expectNoMessage", "duration"),
            }
        if kind == "client_expect_close":
            code, reason, within = rest
            expect_close: ExpectCloseStep = {
                "client": client,
                "expectClose": self.close_body(code, reason, pointer + "/expectClose", node),
            }
            if within is not None:
                expect_close["within"] = self.quantity(
                    within.parts[0], pointer + "/within", "duration"
                )
            return expect_close
        assert kind == "client_close", kind
        code, reason = rest
        return {"client": client, "close": self.close_body(code, reason, pointer + "/close", node)}

    def connect(self, node: Stmt, pointer: str) -> ConnectStep:
        client, path, *options, reject = node.parts
        self.mark(pointer + "/connect", client)
        token = path.parts[0]
        step: ConnectStep = {
            "connect": str(client),
            "path": (
                self.string_template(string_literal(token), pointer + "/path")
                if token.type == "STRING"
                else self.path(path, pointer + "/path")
            ),
        }
        for option in options:
            key = option.kind
            self.once(step, key, option)
            where = f"{pointer}/{key}"
            if key == "within":
                step["within"] = self.quantity(option.parts[0], where, "duration")
            elif key == "query":
                step["query"] = self.template(option.parts[0], where)
            elif key == "headers":
                step["headers"] = self.template(option.parts[0], where)
            else:
                assert key == "protocols", key
                step["protocols"] = self.template(option.parts[0], where)
        if reject is not None:
            step["expectReject"] = self.integer(reject.parts[0], pointer + "/expectReject")
        return step

    def once(self, step: Mapping[str, object], key: str, node: Stmt) -> None:
        if key in step:
            self.error(node.start, node.end, f"'{key}' is given twice in this step", "keep one")
            raise _Abort

    def captures(self, node: Stmt, pointer: str) -> dict[str, Template]:
        self.mark(pointer, node)
        captured: dict[str, Template] = {}
        parts = node.parts
        for name_token, value in zip(parts[::2], parts[1::2], strict=True):
            name = str(name_token)
            if name in captured:
                self.error(
                    name_token.start_pos,
                    name_token.end_pos,
                    f"'{name}' is captured twice in this step",
                    "capture it once",
                )
                raise _Abort
            self.mark(f"{pointer}/{name}#key", name_token)
            captured[name] = self.template(value, f"{pointer}/{name}")
        return captured

    def close_body(
        self, code: Token | None, reason: Expr | Token | None, pointer: str, node: Stmt
    ) -> CloseBody:
        """The body of a close (an action's reason is an expression, a test step's a STRING)."""
        self.mark(pointer, node)
        body: CloseBody = {}
        if code is not None:
            body["code"] = self.integer(code, pointer + "/code")
        if reason is not None:
            body["reason"] = self.template(
                string_literal(reason) if isinstance(reason, Token) else reason, pointer + "/reason"
            )
        return body

    # ---- expressions and templates ----------------------------------------------------------
    def expression(self, node: Expr, pointer: str) -> str:
        """An EXPR slot: the expression's source text, verbatim."""
        self.mark(pointer, node, origin_offset=node.start)
        return self.text[node.start : node.end]

    def template(self, node: Expr, pointer: str) -> Template:
        """A TEMPLATE slot: literal structure stays structure, any other expression ``${…}``."""
        if isinstance(node, ObjectLit):
            self.mark(pointer, node)
            obj: dict[str, Template] = {}
            for raw_key, kstart, kend, value in node.pairs:
                key = (
                    raw_key
                    if raw_key[0] not in "\"'"
                    else self.plain_string(StringLit(kstart, kend, raw_key))
                )
                if key in obj:
                    self.error(kstart, kend, f"key '{key}' appears twice in this object")
                    raise _Abort
                child = f"{pointer}/{escape_pointer(key)}"
                self.source_map[child + "#key"] = self.span(kstart, kend)
                obj[key] = self.template(value, child)
            return obj
        if isinstance(node, ArrayLit):
            self.mark(pointer, node)
            return [self.template(item, f"{pointer}/{i}") for i, item in enumerate(node.items)]
        if isinstance(node, Literal):
            self.mark(pointer, node)
            return node.value
        number = negative_number(node)
        if number is not None:
            self.mark(pointer, node)
            return number
        if isinstance(node, StringLit):
            return self.string_template(node, pointer)
        self.mark(pointer, node, origin_offset=node.start - 2)
        return "${" + self.text[node.start : node.end] + "}"

    def string_template(self, node: StringLit, pointer: str) -> str:
        try:
            parts = split_literal(node.raw)
        except StringSyntaxError as err:
            at = node.start + err.offset
            self.error(at, at + 2, err.message, err.hint)
            raise _Abort from None
        value = join_template(parts)
        # When the IR string is the literal's text itself (no escapes, no '$' written before
        # a '${'), a position inside it maps back to the file by adding its offset.
        verbatim = value == node.raw[1:-1]
        self.mark(pointer, node, origin_offset=node.start + 1 if verbatim else None)
        return value


_SETTING_KEYS = {
    "compression_off": "compression",
    "compression_on": "compression",
    "compression_threshold": "compression",
}
_SETTING_NAMES = {
    "max_message": "max message",
    "max_connections": "max connections",
    "max_rooms": "max rooms",
    "max_timers": "max timers",
    "max_session": "max session",
    "on_connect": "on connect",
    "on_close": "on close",
    "on_error": "on error",
}

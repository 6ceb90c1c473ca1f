"""Checks beyond the schema: names, functions, arities, reachability, codes, duplicates.

The schema (``schema.py``) checks the shape of the IR. What it cannot see is checked here, with
the source map giving every finding a file:line:col: names that are not defined where they are
used (with did-you-mean), calls of unknown functions or with the wrong number of arguments,
handlers and auth steps that can never run, durations and sizes that are zero (and timers under
10 ms), close reasons longer than the protocol allows, what each place may do (no ``send`` in a
route timer, no ``wait`` in ``on close``, ``set`` only into ``session`` or ``state``), and
routes defined twice, also across files. A ``cancel`` of a name no timer of its route starts is
a warning (``Loaded.warnings``), not an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import (
    ConstantError,
    EvaluationError,
    ExpressionSyntaxError,
    ScenarioError,
    did_you_mean,
)
from ..expr.evaluate import compile_template, evaluate_constants
from ..expr.functions import ANY, FUNCTIONS, MATCHERS, Signature, pattern_error
from ..expr.parse import Embedded, embedded_expressions, parse_expression, walk_located
from ..expr.syntax import Call, Expr, Index, Member, Name, StringLit, keywords, name_regex
from ..expr.values import check_size
from .ir import (
    Action,
    AfterBody,
    AuthStep,
    Binding,
    ClientStep,
    ConnectStep,
    EveryBody,
    Expression,
    Loaded,
    MessageHandler,
    Route,
    RouteTimer,
    Template,
    Test,
    template_strings,
)
from .limits import MAX_CLOSE_REASON_BYTES
from .schema import schema_errors
from .source import Span, locate
from .units import parse_duration, parse_size

__all__ = [
    "BLOCK_NAMES",
    "CONN_FIELDS",
    "ERROR_FIELDS",
    "MIN_TIMER_INTERVAL",
    "ROOTS_BY_CONTEXT",
    "TIMER_FIELDS",
    "check_duplicate_routes",
    "error_at",
    "route_key",
    "validate",
]

#: Properties of ``conn`` an expression may read.
CONN_FIELDS = ("id", "rooms", "ip", "path", "query", "headers", "params", "subprotocol")
#: Properties of ``error`` in ``on error``.
ERROR_FIELDS = ("message", "location")
#: Properties of ``timer`` in an ``every`` or ``after`` block.
TIMER_FIELDS = ("count",)
#: The shortest interval of a timer, delay of ``after`` or ``wait`` (seconds).
MIN_TIMER_INTERVAL = 0.010

_REQUEST = ("conn", "query", "headers", "params")
#: The names an expression may start from, by where it stands.
ROOTS_BY_CONTEXT: dict[str, tuple[str, ...]] = {
    "constant": (),
    "auth": (*_REQUEST, "state"),
    "connect": (*_REQUEST, "auth", "session", "state"),
    "message": (*_REQUEST, "auth", "msg", "raw", "session", "state"),
    "close": (*_REQUEST, "auth", "code", "reason", "session", "state"),
    "error": (*_REQUEST, "auth", "error", "msg", "raw", "session", "state"),
    "route-timer": ("state",),
    "test": (),
    "expect": (ANY,),
    "capture": ("msg",),
}
#: Names only some blocks define, whatever the handler: ``timer`` in every and after blocks.
BLOCK_NAMES = ("timer",)
#: What ``set`` and ``unset`` may write into.
_WRITABLE = ("session", "state")
#: Actions that act on the connection, which a route timer does not have.
_CONNECTION_ACTIONS = ("send", "close", "join", "leave", "ping", "pong", "drop")
_WHERE_AVAILABLE = {
    "msg": "'msg' is the message being handled: use it in 'on message' (or 'on error')",
    "raw": "'raw' is the message as received: use it in 'on message' (or 'on error')",
    "auth": "'auth' is what the auth block accepted: use it in handlers, after auth",
    "error": "'error' is only defined in 'on error'",
    "code": "'code' is only defined in 'on close'",
    "reason": "'reason' is only defined in 'on close'",
    "conn": "constants are evaluated once at load, before any connection",
    "query": "constants are evaluated once at load, before any connection",
    "headers": "constants are evaluated once at load, before any connection",
    "params": "constants are evaluated once at load, before any connection",
    "session": "'session' belongs to a connection: use it in the handlers of a route",
    "state": "'state' is read while the mock runs: use it in the routes' handlers",
    "timer": "'timer' is only defined in an every or after block (timer.count)",
    ANY: "'any' stands for any value in an expected message (a test's expect step)",
}
_ALL_ROOTS = frozenset(r for roots in ROOTS_BY_CONTEXT.values() for r in roots) | frozenset(
    BLOCK_NAMES
)
_CONTEXT_TEXT = {
    "constant": "a top-level let",
    "auth": "the auth block",
    "connect": "'on connect'",
    "message": "'on message'",
    "close": "'on close'",
    "error": "'on error'",
    "route-timer": "a route timer",
    "test": "a test",
    "expect": "an expected message",
    "capture": "a capture",
}

_PARAM = re.compile(r":([^/]*)")


def validate(loaded: Loaded) -> list[ScenarioError]:
    """Every error of one scenario file: the schema's, then the semantic checks'.

    The semantic checks need the IR's shape to be right. The `.mock` grammar guarantees the
    shape (only values can be out of range), so there both kinds are reported together; in YAML
    a schema error may be structural, and then only the schema's errors are reported. Either
    way the checker walks an IR of the shape ``loaded.ir``'s type (``Document``) says.
    """
    errors = schema_errors(loaded.ir, loaded.source, loaded.source_map)
    if errors and loaded.spelling != "mock":
        return errors
    checker = _Checker(loaded)
    checker.document()
    loaded.warnings = checker.warnings
    return errors + checker.errors


def route_key(prefix: str, path: str) -> str:
    """The form under which two route paths are the same route (parameter names ignored)."""
    return _PARAM.sub(":", (prefix + path).rstrip("/") or "/")


def check_duplicate_routes(files: Sequence[Loaded]) -> list[ScenarioError]:
    """Routes defined more than once, within a file or across the files served together."""
    seen: dict[str, tuple[Loaded, int]] = {}
    errors = []
    for loaded in files:
        prefix = loaded.ir.get("prefix", "")
        for i, route in enumerate(loaded.ir.get("routes", [])):
            key = route_key(prefix, route["path"])
            if key in seen:
                other, j = seen[key]
                where = _locate(other, f"/routes/{j}/path")
                place = (
                    f"line {where.line}" if other is loaded else f"{other.source.name}:{where.line}"
                )
                errors.append(
                    error_at(
                        loaded,
                        f"/routes/{i}/path",
                        f"route '{prefix + route['path']}' is already defined",
                        f"the first definition is at {place}",
                    )
                )
            else:
                seen[key] = (loaded, i)
    return errors


def _locate(loaded: Loaded, pointer: str) -> Span:
    return locate(loaded.source_map, pointer)


def error_at(
    loaded: Loaded,
    pointer: str,
    message: str,
    hint: str | None = None,
    offset: int | None = None,
    length: int | None = None,
    text: str | None = None,
) -> ScenarioError:
    """An error about the IR node at ``pointer``, placed where it came from in the file:
    at character ``offset`` (``length`` long) of ``text``, the node's string, when given."""
    span = _locate(loaded, pointer)
    if offset is not None and text is not None and span.origin is not None:
        line, col = span.at_offset(offset, text)
        end = col + length if length else None
        return loaded.source.error(line, col, message, hint, end)
    return loaded.source.error_at(span, message, hint)


@dataclass
class _Scope:
    """Where an expression or action is: the handler (``context``), the names defined so far,
    and whether it is inside an every or after block (``timer``)."""

    context: str
    names: set[str]
    timer: bool = False

    def child(self, timer: bool | None = None) -> _Scope:
        return _Scope(self.context, set(self.names), self.timer if timer is None else timer)


@dataclass
class _TimerNames:
    """The names a route's timers start under and the cancels of them, for the warning about
    a cancel that stops nothing."""

    started: set[str]
    cancels: list[tuple[str, str]]  # (name template as written, pointer)


class _Checker:
    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.ir = loaded.ir
        self.errors: list[ScenarioError] = []
        self.warnings: list[ScenarioError] = []
        self.constants: set[str] = set()
        self.timer_names = _TimerNames(set(), [])

    def error(
        self,
        pointer: str,
        message: str,
        hint: str | None = None,
        offset: int | None = None,
        length: int | None = None,
        text: str | None = None,
    ) -> None:
        self.errors.append(error_at(self.loaded, pointer, message, hint, offset, length, text))

    def warning(self, pointer: str, message: str, hint: str | None = None) -> None:
        found = error_at(self.loaded, pointer, message, hint)
        self.warnings.append(replace(found, severity="warning"))

    # ---- structure ------------------------------------------------------------------------
    def document(self) -> None:
        for name, value in self.ir.get("let", {}).items():
            pointer = f"/let/{name}"
            if name in _ALL_ROOTS or name in FUNCTIONS:
                self.error(
                    pointer + "#key",
                    f"'{name}' is a built-in name",
                    "choose another name for the constant",
                )
            self.template(value, pointer, _Scope("constant", set(self.constants)))
            self.constants.add(name)
        if not self.errors:
            # Constants are evaluated once, at load: a failure is an error of the file, found
            # by check rather than when serve starts.
            try:
                self.loaded.constants = evaluate_constants(self.ir.get("let", {}))
            except ConstantError as err:
                self.error(
                    f"/let/{err.name}",
                    f"constant '{err.name}' cannot be evaluated: {err}",
                    "constants are evaluated once, when the scenario is loaded",
                )
        if "state" in self.ir:
            self.state(self.ir["state"])
        if not self.ir.get("routes") and not self.ir.get("tests"):
            self.error(
                "/routes",
                "this scenario defines no routes",
                'add one, e.g. route /ws { on connect { send "hello" } }'
                if self.loaded.spelling == "mock"
                else "add one, e.g. routes: [{path: /ws, on: {connect: [{send: hello}]}}]",
            )
        for i, route in enumerate(self.ir.get("routes", [])):
            self.route(route, f"/routes/{i}")
        self.errors.extend(check_duplicate_routes([self.loaded]))
        names: dict[str, int] = {}
        for i, test in enumerate(self.ir.get("tests", [])):
            if test["name"] in names:
                line = _locate(self.loaded, f"/tests/{names[test['name']]}").line
                self.error(
                    f"/tests/{i}/name",
                    f"test '{test['name']}' is already defined",
                    f"the first is on line {line}; give each test its own name",
                )
            names.setdefault(test["name"], i)
            self.test(test, f"/tests/{i}")

    def state(self, initial: dict[str, Template]) -> None:
        """The initial state: a template of constants, evaluated once here, like them."""
        self.template(initial, "/state", _Scope("constant", set(self.constants)))
        if self.errors:
            return
        try:
            value = compile_template(initial)[0](dict(self.loaded.constants or {}))
            check_size(value)
        except EvaluationError as err:
            self.error(
                "/state",
                f"the initial state cannot be evaluated: {err}",
                "it is evaluated once, when the scenario is loaded",
            )
            return
        self.loaded.state = value

    def route(self, route: Route, pointer: str) -> None:
        self.path(route["path"], pointer + "/path")
        self.timer_names = _TimerNames(set(), [])
        if "heartbeat" in route:
            self.quantity(route["heartbeat"], pointer + "/heartbeat", parse_duration)
        if "maxMessage" in route:
            self.quantity(route["maxMessage"], pointer + "/maxMessage", parse_size)
        compression = route.get("compression", {})
        if "threshold" in compression:
            self.quantity(
                compression["threshold"],
                pointer + "/compression/threshold",
                parse_size,
                allow_zero=True,
            )
        if "maxSession" in route:
            self.quantity(route["maxSession"], pointer + "/maxSession", parse_size)
        if "latency" in route:
            self.latency(route["latency"], pointer + "/latency")
        base = self.constants
        if "auth" in route:
            self.auth(route["auth"], pointer + "/auth", _Scope("auth", set(base)))
        on = route.get("on", {})
        for event in on:  # in the order written, so that the findings come in file order
            where = f"{pointer}/on/{event}"
            if event == "message":
                self.message_handlers(on["message"], where, base)
            elif event == "connect":
                self.actions(on["connect"], where, _Scope(event, set(base)))
            elif event == "close":
                self.actions(on["close"], where, _Scope(event, set(base)))
            elif event == "error":
                self.actions(on["error"], where, _Scope(event, set(base)))
        for i, timer in enumerate(route.get("every", [])):
            self.route_timer(timer, f"{pointer}/every/{i}", base)
        for name, where in self.timer_names.cancels:
            dynamic = "${" in name
            if name not in self.timer_names.started and not (
                dynamic and any("${" in started for started in self.timer_names.started)
            ):
                self.warning(
                    where,
                    f"no timer of this route is started as {name!r}: this cancel stops nothing",
                    did_you_mean(name, self.timer_names.started)
                    or "start the timer with 'every ... as NAME' or 'after ... as NAME'",
                )

    def route_timer(self, timer: RouteTimer, pointer: str, base: set[str]) -> None:
        self.delay(timer["interval"], pointer + "/interval", _Scope("route-timer", set(base)))
        self.actions(timer["do"], pointer + "/do", _Scope("route-timer", set(base), timer=True))

    def latency(self, value: str, pointer: str) -> None:
        try:
            bounds = [parse_duration(part) for part in value.split("..")]
        except ValueError:
            return  # malformed: the schema's pattern reports it
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            self.error(
                pointer,
                f"latency {value!r} goes from more to less",
                "write the shorter delay first, e.g. 10ms..50ms",
            )

    def delay(self, value: str, pointer: str, scope: _Scope) -> None:
        """A timer's interval or a wait: a duration (at least 10 ms), or ``${EXPR}``."""
        if "${" in value:
            self.template(value, pointer, scope)
            return
        try:
            seconds = parse_duration(value)
        except ValueError:
            return  # malformed: the schema's pattern reports it
        if seconds < MIN_TIMER_INTERVAL:
            self.error(
                pointer,
                f"'{value}' is shorter than the 10ms a timer or wait takes at least",
                "write 10ms or more",
            )

    def path(self, path: str, pointer: str) -> None:
        names = _PARAM.findall(path)
        for name in names:
            if not name_regex().fullmatch(name):
                self.error(
                    pointer,
                    f"bad parameter ':{name}' in path",
                    "a parameter is ':' followed by a name, e.g. /ws/game/:gameId",
                )
        duplicates = {n for n in names if names.count(n) > 1}
        for name in sorted(duplicates):
            self.error(pointer, f"parameter ':{name}' appears twice in the path")
        if "//" in path:
            self.error(pointer, "empty segment '//' in path")

    def quantity(
        self, value: str, pointer: str, parse: Callable[[str], float], allow_zero: bool = False
    ) -> None:
        try:
            amount = parse(value)
        except ValueError:
            return  # malformed: the schema's pattern reports it
        if amount == 0 and not allow_zero:
            self.error(pointer, f"'{value}' must be more than zero")

    def auth(self, steps: list[AuthStep], pointer: str, scope: _Scope) -> None:
        final: int | None = None
        reported = False
        for i, step in enumerate(steps):
            where = f"{pointer}/{i}"
            if final is not None and not reported:
                self.error(
                    where,
                    "this auth step can never run",
                    f"the step on line {_locate(self.loaded, f'{pointer}/{final}').line} "
                    "always ends authentication",
                )
                reported = True  # one report is enough; the steps are still checked
            if "reject" in step:
                body = step["reject"]
                if "reason" in body:
                    self.template(body["reason"], where + "/reject/reason", scope)
                    if "code" in body:
                        self.reason_length(body["reason"], where + "/reject/reason")
                for key in ("if", "unless"):
                    if key in body:
                        self.expression(body[key], f"{where}/reject/{key}", scope)
                if "if" not in body and "unless" not in body and final is None:
                    final = i
            elif "accept" in step:
                self.template(step["accept"], where + "/accept", scope)
                final = i if final is None else final
            elif "wait" in step:
                self.delay(step["wait"], where + "/wait", scope)
            else:
                self.let(step["let"], where + "/let", scope)

    def message_handlers(
        self, handlers: list[MessageHandler], pointer: str, base: set[str]
    ) -> None:
        catch_all: int | None = None
        types: dict[str, int] = {}
        for i, handler in enumerate(handlers):
            where = f"{pointer}/{i}"
            if catch_all is not None:
                line = _locate(self.loaded, f"{pointer}/{catch_all}").line
                self.error(
                    where,
                    "this handler can never run",
                    f"the handler on line {line} matches every message before it; "
                    "put the catch-all last",
                )
            elif "type" in handler and "where" not in handler and handler["type"] in types:
                line = _locate(self.loaded, f"{pointer}/{types[handler['type']]}").line
                self.error(
                    where,
                    "this handler can never run",
                    f'the handler on line {line} already handles type "{handler["type"]}"',
                )
            if not ({"type", "where", "binary"} & handler.keys()):
                catch_all = i if catch_all is None else catch_all
            if "type" in handler and "where" not in handler:
                types.setdefault(handler["type"], i)
            scope = _Scope("message", set(base))
            if "where" in handler:
                self.expression(handler["where"], where + "/where", scope)
            self.actions(handler["do"], where + "/do", scope)

    def actions(self, actions: list[Action], pointer: str, scope: _Scope) -> None:
        for i, action in enumerate(actions):
            where = f"{pointer}/{i}"
            name = next(iter(action), "")
            if scope.context == "route-timer" and name in _CONNECTION_ACTIONS:
                self.error(
                    where,
                    f"'{name}' needs a connection, and a route timer has none",
                    "a route timer runs for the whole route: broadcast reaches its connections",
                )
            if name == "wait" and scope.context == "close":
                self.error(
                    where,
                    "'wait' cannot be used in 'on close': the connection is gone by then",
                    "do what must wait in 'on message' or 'on connect'",
                )
            elif name in ("every", "after") and scope.context == "close":
                self.error(
                    where,
                    "a timer started in 'on close' would never run: the connection is gone",
                    "start timers in 'on connect' or 'on message'",
                )
            if "if" in action:
                self.expression(action["if"], where + "/if", scope)
                self.actions(action["then"], where + "/then", scope.child())
                self.actions(action.get("else", []), where + "/else", scope.child())
            elif "send" in action:
                self.template(action["send"], where + "/send", scope)
            elif "join" in action:
                self.template(action["join"], where + "/join", scope)
            elif "leave" in action:
                self.template(action["leave"], where + "/leave", scope)
            elif "log" in action:
                self.template(action["log"], where + "/log", scope)
            elif "broadcast" in action:
                broadcast = action["broadcast"]
                self.template(broadcast["data"], where + "/broadcast/data", scope)
                for j, room in enumerate(broadcast.get("to", [])):
                    self.template(room, f"{where}/broadcast/to/{j}", scope)
            elif "close" in action:
                close = action["close"]
                if "reason" in close:
                    self.template(close["reason"], where + "/close/reason", scope)
                    self.reason_length(close["reason"], where + "/close/reason")
            elif "ping" in action:
                if "data" in action["ping"]:
                    self.template(action["ping"]["data"], where + "/ping/data", scope)
            elif "pong" in action:
                if "data" in action["pong"]:
                    self.template(action["pong"]["data"], where + "/pong/data", scope)
            elif "let" in action:
                self.let(action["let"], where + "/let", scope)
            elif "every" in action:
                every = action["every"]
                self.delay(every["interval"], where + "/every/interval", scope)
                self.timer_block(every, where + "/every", scope)
            elif "after" in action:
                after = action["after"]
                self.delay(after["delay"], where + "/after/delay", scope)
                self.timer_block(after, where + "/after", scope)
            elif "cancel" in action:
                self.template(action["cancel"], where + "/cancel", scope)
                if isinstance(action["cancel"], str):
                    self.timer_names.cancels.append((action["cancel"], where + "/cancel"))
            elif "wait" in action:
                self.delay(action["wait"], where + "/wait", scope)
            elif "set" in action:
                self.writable(action["set"]["path"], where + "/set/path", scope, "set")
                self.template(action["set"]["value"], where + "/set/value", scope)
            elif "unset" in action:
                self.writable(action["unset"], where + "/unset", scope, "unset")

    def timer_block(self, body: EveryBody | AfterBody, pointer: str, scope: _Scope) -> None:
        if scope.context == "route-timer":
            self.error(
                pointer,
                "a route timer cannot start timers",
                "start connection timers in a handler; a route timer repeats by itself",
            )
        if "as" in body:
            self.template(body["as"], pointer + "/as", scope)
            if isinstance(body["as"], str):
                self.timer_names.started.add(body["as"])
        # The block sees the names of where it is written, as they were when it started.
        self.actions(body["do"], pointer + "/do", scope.child(timer=True))

    def writable(self, text: Expression, pointer: str, scope: _Scope, verb: str) -> None:
        """The path of a set or unset: session or state, then .key and [expr] steps."""
        try:
            expr = parse_expression(text)
        except ExpressionSyntaxError as err:
            self.error(pointer, err.message, err.hint, err.start, err.end - err.start, text)
            return
        node: Expr = expr
        steps = 0
        while isinstance(node, Member | Index):
            node = node.target
            steps += 1
        example = f"{verb} session.name" + (" = msg.name" if verb == "set" else "")
        if not isinstance(node, Name) or node.name not in _WRITABLE or node.name in scope.names:
            self.error(
                pointer,
                f"'{verb}' writes into session or state, not {text.strip()!r}",
                f"start the path with session or state, e.g. {example}",
                node.start if isinstance(node, Name | Member | Index) else 0,
                node.end - node.start if isinstance(node, Name | Member | Index) else len(text),
                text,
            )
            return
        if verb == "unset" and steps == 0:
            self.error(
                pointer,
                f"'unset' removes a key of {node.name}, not {node.name} itself",
                f"name the key, e.g. unset {node.name}.name",
            )
        self.names(expr, 0, text, pointer, scope)

    def let(self, body: Binding, pointer: str, scope: _Scope) -> None:
        name = body["name"]
        self.template(body["value"], pointer + "/value", scope)
        if name in _ALL_ROOTS or name in FUNCTIONS:
            self.error(pointer + "/name", f"'{name}' is a built-in name", "choose another name")
        elif name in scope.names:
            self.error(
                pointer + "/name",
                f"'{name}' is already defined",
                "choose another name; a let cannot be redefined",
            )
        scope.names.add(name)

    def reason_length(self, reason: Template, pointer: str) -> None:
        if isinstance(reason, str) and "${" not in reason:
            size = len(reason.encode("utf-8"))
            if size > MAX_CLOSE_REASON_BYTES:
                self.error(
                    pointer,
                    f"close reason is {size} bytes long; the protocol allows "
                    f"{MAX_CLOSE_REASON_BYTES}",
                    "shorten the reason",
                )

    # ---- tests ------------------------------------------------------------------------------
    def test(self, test: Test, pointer: str) -> None:
        scope = _Scope("test", set(self.constants))
        # Client name → where it connected; a client is gone once it closed or was rejected.
        connected: dict[str, str] = {}
        for i, step in enumerate(test["steps"]):
            where = f"{pointer}/steps/{i}"
            if "connect" in step:
                self.connect_step(step, where, scope, connected)
            elif "client" in step:
                self.client_step(step, where, scope, connected)
            elif "let" in step:
                self.let(step["let"], where + "/let", scope)
            elif "wait" in step:
                if "${" in step["wait"]:
                    self.template(step["wait"], where + "/wait", scope)
                else:
                    self.quantity(step["wait"], where + "/wait", parse_duration)

    def connect_step(
        self, step: ConnectStep, pointer: str, scope: _Scope, connected: dict[str, str]
    ) -> None:
        name = step["connect"]
        if name in keywords():
            # In a .mock file a step starts with its client's name, and a keyword there would be
            # read as the keyword; YAML follows suit so that both spellings stay convertible.
            self.error(
                pointer + "/connect",
                f"'{name}' is a keyword of the language",
                "give the client a name such as 'alice' or 'player'",
            )
        if name in connected:
            line = _locate(self.loaded, connected[name]).line
            self.error(
                pointer + "/connect",
                f"client '{name}' is already connected",
                f"it connected on line {line}; close it first, or give this client another name",
            )
        for key in ("path", "query", "headers", "protocols"):
            if key in step:
                self.template(step[key], f"{pointer}/{key}", scope)
        if "within" in step:
            self.quantity(step["within"], pointer + "/within", parse_duration)
        if "expectReject" not in step:
            connected[name] = pointer

    def client_step(
        self, step: ClientStep, pointer: str, scope: _Scope, connected: dict[str, str]
    ) -> None:
        name = step["client"]
        if name not in connected:
            self.error(
                pointer + "/client",
                f"client '{name}' is not connected here",
                did_you_mean(name, connected) or f"connect it first: connect {name} to /path",
            )
        if "within" in step:
            self.quantity(step["within"], pointer + "/within", parse_duration)
        if "send" in step:
            self.template(step["send"], pointer + "/send", scope)
        elif "expect" in step:
            self.expectation(step["expect"], pointer + "/expect", scope)
            captured = step.get("capture", {})
            for key, value in captured.items():
                self.template(value, f"{pointer}/capture/{key}", _Scope("capture", scope.names))
            for key in captured:
                # Function names are allowed: `capture id = msg.id` reads naturally, and a
                # call `id()` is never mistaken for the name `id`.
                if key in _ALL_ROOTS:
                    self.error(
                        f"{pointer}/capture/{key}#key",
                        f"'{key}' is a built-in name",
                        "choose another name",
                    )
                elif key in scope.names:
                    self.error(
                        f"{pointer}/capture/{key}#key",
                        f"'{key}' is already defined",
                        "choose another name; a name cannot be redefined",
                    )
                scope.names.add(key)
        elif "expectNoMessage" in step:
            self.quantity(step["expectNoMessage"], pointer + "/expectNoMessage", parse_duration)
        else:
            key = "close" if "close" in step else "expectClose"
            body = step["close"] if "close" in step else step["expectClose"]
            if "reason" in body:
                self.template(body["reason"], f"{pointer}/{key}/reason", scope)
            if key == "close":
                if "code" in body and not (body["code"] == 1000 or 3000 <= body["code"] <= 4999):
                    self.error(
                        pointer + "/close/code",
                        f"a client cannot close with {body['code']}",
                        "use 1000 or 3000–4999",
                    )
                if "reason" in body:
                    self.reason_length(body["reason"], pointer + "/close/reason")
            connected.pop(name, None)

    def expectation(self, value: Template, pointer: str, scope: _Scope) -> None:
        """An expected message: a template in which 'any' and matches(…) stand for a whole
        value (a key's value or an array item), never for part of one."""
        self.template(value, pointer, _Scope("expect", scope.names), expected=True)

    def matchers(self, embedded: Embedded, text: str, pointer: str) -> None:
        top = embedded.expr
        for node, base in walk_located(top):
            is_any = isinstance(node, Name) and node.name == ANY
            is_call = isinstance(node, Call) and node.name in MATCHERS
            if not (is_any or is_call):
                continue
            if node is not top or not embedded.whole:
                what = "'any'" if is_any else "matches()"
                example = "any" if is_any else 'matches("^g-")'
                self.error(
                    pointer,
                    f"{what} must be a whole expected value",
                    f"write it as a key's value, e.g. {{ id: {example} }}",
                    embedded.offset + base + node.start,
                    node.end - node.start,
                    text,
                )
            elif isinstance(node, Call) and node.args and isinstance(node.args[0], StringLit):
                problem = pattern_error(node.args[0].raw)
                if problem is not None:
                    arg = node.args[0]
                    self.error(
                        pointer,
                        f"bad regular expression: {problem}",
                        None,
                        embedded.offset + base + arg.start,
                        arg.end - arg.start,
                        text,
                    )

    # ---- expressions ------------------------------------------------------------------------
    def expression(self, text: Expression, pointer: str, scope: _Scope) -> None:
        try:
            expr = parse_expression(text)
        except ExpressionSyntaxError as err:
            self.error(pointer, err.message, err.hint, err.start, err.end - err.start, text)
            return
        self.names(expr, 0, text, pointer, scope)

    def template(
        self, value: Template, pointer: str, scope: _Scope, expected: bool = False
    ) -> None:
        """``expected``: the template is an expected message, where matchers are allowed."""
        for where, text in template_strings(value, pointer):
            try:
                found = embedded_expressions(text)
            except ExpressionSyntaxError as err:
                self.error(where, err.message, err.hint, err.start, err.end - err.start, text)
                continue
            for embedded in found:
                self.names(embedded.expr, embedded.offset, text, where, scope)
                if expected:
                    self.matchers(embedded, text, where)

    def names(self, expr: Expr, offset: int, text: str, pointer: str, scope: _Scope) -> None:
        visible = set(ROOTS_BY_CONTEXT[scope.context]) | scope.names
        if scope.timer:
            visible.add("timer")
        functions: Mapping[str, Signature] = (
            {**FUNCTIONS, **MATCHERS} if scope.context == "expect" else FUNCTIONS
        )

        def report(at: int, start: int, end: int, message: str, hint: str | None) -> None:
            self.error(pointer, message, hint, at + start, end - start, text)

        # A string inside an expression may embed expressions of its own: walk_located yields
        # their nodes too, with where their text begins.
        for node, base in walk_located(expr):
            at = offset + base  # where the node's positions count from, in ``text``
            if isinstance(node, Name) and node.name not in visible:
                if node.name in _ALL_ROOTS:
                    hint = _WHERE_AVAILABLE.get(node.name)
                    if node.name == "msg" and scope.context in ("test", "expect"):
                        hint = (
                            "in a test, 'msg' is the message an expect step received: use "
                            "it in that step's capture, e.g. capture gameId = msg.gameId"
                        )
                    report(
                        at,
                        node.start,
                        node.end,
                        f"'{node.name}' is not available in {_CONTEXT_TEXT[scope.context]}",
                        hint,
                    )
                else:
                    report(
                        at,
                        node.start,
                        node.end,
                        f"unknown name '{node.name}'",
                        did_you_mean(node.name, sorted(visible)) or _defined_hint(visible),
                    )
            elif isinstance(node, Call):
                signature = functions.get(node.name)
                name_end = node.start + len(node.name)
                if signature is None:
                    hint = did_you_mean(node.name, functions) or "the functions are " + ", ".join(
                        sorted(functions)
                    )
                    if node.name in MATCHERS:
                        hint = f"{node.name}() is only for expected messages (expect steps)"
                    report(at, node.start, name_end, f"unknown function '{node.name}'", hint)
                elif not signature.min_args <= len(node.args) <= signature.max_args:
                    report(
                        at,
                        node.start,
                        node.end,
                        f"{node.name}() takes {signature.arity_text()}, not {len(node.args)}",
                        f"for example {signature.usage}",
                    )
            elif isinstance(node, Member) and isinstance(node.target, Name):
                fields = {"conn": CONN_FIELDS, "error": ERROR_FIELDS, "timer": TIMER_FIELDS}.get(
                    node.target.name
                )
                if fields and node.target.name not in scope.names and node.name not in fields:
                    report(
                        at,
                        node.name_start,
                        node.end,
                        f"'{node.target.name}' has no property '{node.name}'",
                        did_you_mean(node.name, fields)
                        or f"its properties are {', '.join(fields)}",
                    )


def _defined_hint(visible: Iterable[str]) -> str:
    names = sorted(visible)
    return "names defined here: " + ", ".join(names) if names else "no names are defined here"

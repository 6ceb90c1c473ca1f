"""IR → Program: every route's handlers compiled once into closures, ready for the engine.

Nothing here runs per message except the closures it builds. Message dispatch on ``type`` is a
dictionary lookup that yields the few handlers that can match, in the order they were written;
templates are prepared once (constant parts built at load, JSON of constant payloads encoded at
load); each action knows the file:line it came from, so a failure at run time can say where.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ActionError, ConstantError, EvaluationError, QuantityError, ScenarioErrors
from ..expr.evaluate import compile_expression, compile_template, evaluate_constants
from ..expr.parse import embedded_expressions, parse_expression, walk
from ..expr.syntax import Index, Member, Name, name_regex
from ..expr.values import (
    MAX_STRING,
    Context,
    Evaluator,
    encode,
    to_json,
    to_text,
    truthy,
    type_name,
)
from ..language.ir import (
    Action,
    AfterAction,
    AfterBody,
    Document,
    EveryAction,
    EveryBody,
    Loaded,
    PingPongBody,
    Template,
    template_strings,
)
from ..language.ir import AuthStep as AuthStepIR
from ..language.ir import Route as RouteIR
from ..language.loader import load_paths
from ..language.source import locate
from ..language.units import parse_duration, parse_size
from ..language.validate import MIN_TIMER_INTERVAL
from .program import (
    DEFAULT_MAX_ROOMS,
    DEFAULT_MAX_TIMERS,
    DEFAULT_THRESHOLD,
    AuthStep,
    Block,
    Compression,
    Delay,
    FileVersion,
    MessageHandler,
    Program,
    Route,
    Runtime,
    Step,
    TimerSpec,
)

__all__ = ["MAX_DELAY", "compile_program", "load_program", "run_block", "seconds_of"]

#: The longest delay an expression may give a timer or a wait (seconds).
MAX_DELAY = 30 * 86400

#: Names that add little to a frame: the close code, and the close reason (the protocol
#: allows 123 bytes).
_TINY_NAMES = frozenset({"code", "reason"})
#: Names whose values are measured when made or bounded by the handshake: one use adds at
#: most about MAX_STRING characters (``auth``, ``error``: measured; ``query``, ``headers``,
#: ``params`` and ``conn``'s fields but ``rooms``: the request line and headers websockets
#: reads). ``conn.rooms`` (and ``conn`` whole) grows with every room joined: unbounded.
_BOUNDED_NAMES = frozenset({"auth", "error", "query", "headers", "params", "conn"})
_TINY = 128
#: The message (within ``max message``) may appear this many times in a template that is
#: sent unmeasured: the frame is then bounded by the input, as an echo is.
_MESSAGE_USES = 4


def _size_is_bounded(
    template: Template, constants: Context, sizes: dict[str, int] | None = None
) -> bool:
    """Whether encoding the template's value needs no measuring walk (``check_size``): true
    when it reads the message at most ``_MESSAGE_USES`` times and everything else it reads
    adds up to at most MAX_STRING characters — constants by their (known) size, every use
    counted, also inside strings embedded in expressions. ``let`` values may share their
    parts (``let b = [a, a]``) and grow exponentially: a template that reads one is measured
    each time. ``sizes`` keeps the constants' encoded sizes between calls."""
    sizes = {} if sizes is None else sizes
    message_uses = 0
    budget = MAX_STRING
    for _, text in template_strings(template, ""):
        for embedded in embedded_expressions(text):
            bounded_conn: set[int] = set()  # ids of `conn` names read for one small field
            for node in walk(embedded.expr, into_strings=True):
                if (
                    isinstance(node, Member)
                    and isinstance(node.target, Name)
                    and node.target.name == "conn"
                    and node.name != "rooms"
                ):
                    bounded_conn.add(id(node.target))  # parents come before their children
                if not isinstance(node, Name):
                    continue
                name = node.name
                if name in ("msg", "raw"):
                    message_uses += 1
                elif name in constants:
                    if name not in sizes:
                        sizes[name] = len(to_json(constants[name], bounded=True))
                    budget -= sizes[name]
                elif name in _TINY_NAMES:
                    budget -= _TINY
                elif name in _BOUNDED_NAMES and (name != "conn" or id(node) in bounded_conn):
                    budget -= MAX_STRING
                else:
                    return False
                if budget < 0 or message_uses > _MESSAGE_USES:
                    return False
    return True


# ---- compilation -----------------------------------------------------------------------------


class _Compiler:
    def __init__(self, loaded: Loaded, constants: Context) -> None:
        self.loaded = loaded
        self.constants = constants
        self.constant_sizes: dict[str, int] = {}  # see _size_is_bounded
        #: The timers started by actions of the route being compiled, in compile order.
        self.action_timers: list[TimerSpec] = []

    def location(self, pointer: str) -> str:
        return _location(self.loaded, pointer)

    def route(self, index: int, ir: RouteIR, prefix: str, pointer: str) -> Route:
        path = (prefix + ir["path"]).rstrip("/") or "/"
        names = tuple(re.findall(f":({name_regex().pattern})", path))
        matcher = None
        if names or "*" in path:
            pattern = "".join(
                f"(?P<{seg[1:]}>[^/]+)"
                if seg.startswith(":")
                else ".*"
                if seg == "*"
                else re.escape(seg)
                for seg in re.split(r"(/)", path)
            )
            matcher = re.compile(pattern)
        route = Route(index, path, self.location(pointer), names, matcher)
        route.file = self.loaded.source.name
        self.action_timers = route.action_timers
        if "heartbeat" in ir:
            route.heartbeat = parse_duration(ir["heartbeat"])
        if "maxMessage" in ir:
            route.max_message = parse_size(ir["maxMessage"])
        route.max_connections = ir.get("maxConnections")
        route.max_rooms = ir.get("maxRooms", DEFAULT_MAX_ROOMS)
        route.max_timers = ir.get("maxTimers", DEFAULT_MAX_TIMERS)
        if "maxSession" in ir:
            route.max_session = parse_size(ir["maxSession"])
        if "origins" in ir:
            route.origins = frozenset(ir["origins"])
        if "subprotocols" in ir:
            route.subprotocols = tuple(ir["subprotocols"]["names"])
            route.subprotocol_required = ir["subprotocols"].get("required", False)
        if "latency" in ir:
            bounds = [parse_duration(part) for part in ir["latency"].split("..")]
            route.latency = (bounds[0], bounds[-1])
        compression = ir.get("compression", {})
        route.compression = Compression(
            enabled=compression.get("enabled", True),
            threshold=parse_size(compression["threshold"])
            if "threshold" in compression
            else DEFAULT_THRESHOLD,
        )
        if "auth" in ir:
            route.auth = [
                self.auth_step(step, f"{pointer}/auth/{i}") for i, step in enumerate(ir["auth"])
            ]
            route.auth_waits = any(step.kind == "wait" for step in route.auth)
        on = ir.get("on", {})
        route.on_connect = self.block(on.get("connect", []), pointer + "/on/connect")
        route.on_close = self.block(on.get("close", []), pointer + "/on/close")
        if "error" in on:
            route.on_error = self.block(on["error"], pointer + "/on/error")
        for i, timer in enumerate(ir.get("every", [])):
            where = f"{pointer}/every/{i}"
            route.timers.append(
                TimerSpec(
                    repeat=True,
                    block=self.block(timer["do"], where + "/do"),
                    location=self.location(where),
                    interval=self.delay(timer["interval"]),
                    times=timer.get("times"),
                )
            )
        for i, handler in enumerate(on.get("message", [])):
            where = f"{pointer}/on/message/{i}"
            block = self.block(handler["do"], where + "/do")
            route.handlers.append(
                MessageHandler(
                    type=handler.get("type"),
                    where=compile_expression(parse_expression(handler["where"]))
                    if "where" in handler
                    else None,
                    binary=handler.get("binary", False),
                    block=block,
                    location=self.location(where),
                    state=block.state
                    or ("where" in handler and _expression_uses_state(handler["where"])),
                )
            )
        self.dispatch(route)
        return route

    @staticmethod
    def dispatch(route: Route) -> None:
        text = [h for h in route.handlers if not h.binary]
        route.untyped = [h for h in text if h.type is None]
        for kind in {h.type for h in text if h.type is not None}:
            route.by_type[kind] = [h for h in text if h.type in (kind, None)]
        route.binary = [
            h for h in route.handlers if h.binary or (h.type is None and h.where is None)
        ]

    def auth_step(self, ir: AuthStepIR, pointer: str) -> AuthStep:
        location = self.location(pointer)
        if "accept" in ir:
            return AuthStep("accept", location, value=compile_template(ir["accept"])[0])
        if "let" in ir:
            return AuthStep(
                "let",
                location,
                name=ir["let"]["name"],
                value=compile_template(ir["let"]["value"])[0],
            )
        if "wait" in ir:
            return AuthStep("wait", location, delay=self.delay(ir["wait"]))
        body = ir["reject"]
        condition_text = body.get("if", body.get("unless"))
        return AuthStep(
            "reject",
            location,
            condition=compile_expression(parse_expression(condition_text))
            if condition_text is not None
            else None,
            negate="unless" in body,
            code=body.get("code"),
            status=body.get("status"),
            value=compile_template(body.get("reason", ""))[0],
        )

    def block(self, actions: Sequence[Action], pointer: str) -> Block:
        steps = [self.step(action, f"{pointer}/{i}") for i, action in enumerate(actions)]
        return Block(
            steps,
            waits=any(_contains(action, "wait") for action in actions),
            binds=any(_contains(action, "let") for action in actions),
            state=any(_uses_state(action) for action in actions),
        )

    def step(self, ir: Action, pointer: str) -> Step:
        location = self.location(pointer)
        run = self.action(ir, pointer)

        def step(runtime: Runtime, ctx: Context) -> Iterator[float] | None:
            try:
                return run(runtime, ctx)
            except EvaluationError as err:
                raise ActionError(str(err), location) from None

        return step

    @staticmethod
    def delay(text: str) -> Delay:
        """Seconds from a duration as written, or from an expression evaluated each time."""
        if "${" not in text:
            seconds = parse_duration(text)
            return lambda ctx: seconds
        value = compile_template(text)[0]
        return lambda ctx: seconds_of(value(ctx))

    def payload(self, template: Template) -> Callable[[Context], str | bytes]:
        """A closure giving the frame to send; a constant template is encoded once, here."""
        build, constant = compile_template(template)
        if constant:
            frame = encode(build({}))
            return lambda ctx: frame
        if _size_is_bounded(template, self.constants, self.constant_sizes):
            return lambda ctx: encode(build(ctx), bounded=True)
        return lambda ctx: encode(build(ctx))

    def frame_data(self, body: PingPongBody) -> Callable[[Context], str | bytes]:
        """The payload of a ping or pong frame: empty unless given."""
        return self.payload(body["data"]) if "data" in body else (lambda ctx: b"")

    def action(self, ir: Action, pointer: str) -> Step:
        if "if" in ir:
            test = compile_expression(parse_expression(ir["if"]))
            then = self.block(ir["then"], pointer + "/then")
            otherwise = self.block(ir.get("else", []), pointer + "/else")

            def branch(runtime: Runtime, ctx: Context) -> Iterator[float] | None:
                return run_block(then if truthy(test(ctx)) else otherwise, runtime, ctx)

            return branch
        if "send" in ir:
            frame = self.payload(ir["send"])
            return lambda runtime, ctx: runtime.send(frame(ctx))
        if "broadcast" in ir:
            broadcast = ir["broadcast"]
            frame = self.payload(broadcast["data"])
            rooms = [compile_template(room)[0] for room in broadcast.get("to", [])]
            include_self = bool(broadcast.get("includeSelf", False))
            if not rooms:
                return lambda runtime, ctx: runtime.broadcast(frame(ctx), None, include_self)
            return lambda runtime, ctx: runtime.broadcast(
                frame(ctx), [room(ctx) for room in rooms], include_self
            )
        if "join" in ir:
            room = compile_template(ir["join"])[0]
            return lambda runtime, ctx: runtime.join(room(ctx))
        if "leave" in ir:
            room = compile_template(ir["leave"])[0]
            return lambda runtime, ctx: runtime.leave(room(ctx))
        if "close" in ir:
            close = ir["close"]
            code = close.get("code", 1000)
            reason = compile_template(close.get("reason", ""))[0]
            return lambda runtime, ctx: runtime.close(code, reason(ctx))
        if "ping" in ir:
            ping = self.frame_data(ir["ping"])
            return lambda runtime, ctx: runtime.ping(ping(ctx))
        if "pong" in ir:
            pong = self.frame_data(ir["pong"])
            return lambda runtime, ctx: runtime.pong(pong(ctx))
        if "let" in ir:
            let_name = ir["let"]["name"]
            value = compile_template(ir["let"]["value"])[0]

            def bind(runtime: Runtime, ctx: Context) -> None:
                ctx[let_name] = value(ctx)

            return bind
        if "every" in ir or "after" in ir:
            return self.timer(ir, pointer)
        if "cancel" in ir:
            name = compile_template(ir["cancel"])[0]
            return lambda runtime, ctx: runtime.cancel_timer(to_text(name(ctx)))
        if "wait" in ir:
            seconds = self.delay(ir["wait"])
            return lambda runtime, ctx: runtime.wait(seconds(ctx))
        if "set" in ir:
            root, keys = _path(ir["set"]["path"])
            value = compile_template(ir["set"]["value"])[0]
            return lambda runtime, ctx: runtime.write(root, [k(ctx) for k in keys], value(ctx))
        if "unset" in ir:
            root, keys = _path(ir["unset"])
            return lambda runtime, ctx: runtime.remove(root, [k(ctx) for k in keys])
        if "drop" in ir:
            return lambda runtime, ctx: runtime.drop()
        assert "log" in ir, ir
        message = compile_template(ir["log"])[0]
        location = self.location(pointer)
        return lambda runtime, ctx: runtime.log(message(ctx), location)

    def timer(self, ir: EveryAction | AfterAction, pointer: str) -> Step:
        if "every" in ir:
            body: EveryBody | AfterBody = ir["every"]
            where = pointer + "/every"
            interval = ir["every"]["interval"]
            times = ir["every"].get("times")
        else:
            body = ir["after"]
            where = pointer + "/after"
            interval = ir["after"]["delay"]
            times = 1
        spec = TimerSpec(
            repeat="every" in ir,
            block=self.block(body["do"], where + "/do"),
            location=self.location(where),
            interval=self.delay(interval),
            times=times,
            name=compile_template(body["as"])[0] if "as" in body else None,
        )
        self.action_timers.append(spec)

        def start(runtime: Runtime, ctx: Context) -> None:
            name = None if spec.name is None else to_text(spec.name(ctx))
            runtime.start_timer(spec, name, spec.interval(ctx), ctx)

        return start


def run_block(block: Block, runtime: Runtime, ctx: Context) -> Iterator[float] | None:
    """Run a block's steps: to the end, or, when it waits, as far as its first wait; then the
    iterator that runs the rest, yielding each delay before the next part."""
    if not block.waits:
        for step in block.steps:
            step(runtime, ctx)
        return None
    return _suspending(block.steps, runtime, ctx)


def _suspending(steps: list[Step], runtime: Runtime, ctx: Context) -> Iterator[float]:
    for step in steps:
        delays = step(runtime, ctx)
        if delays is not None:
            yield from delays


def _contains(action: Action, kind: str) -> bool:
    """Whether running the action runs one of ``kind`` (a wait, a let): itself, or one in an
    if's branches (a timer's block is a run of its own)."""
    if kind in action:
        return True
    if "if" in action:
        return any(_contains(a, kind) for a in action["then"]) or any(
            _contains(a, kind) for a in action.get("else", [])
        )
    return False


def _uses_state(action: Action) -> bool:
    """Whether running the action reads or writes ``state``: itself, or an action in an if's
    branches. A timer's block is a run of its own (its interval and name are read here)."""
    if "if" in action:
        return _expression_uses_state(action["if"]) or any(
            _uses_state(a) for a in [*action["then"], *action.get("else", [])]
        )
    if "set" in action:
        body = action["set"]
        return _expression_uses_state(body["path"]) or _template_uses_state(body["value"])
    if "unset" in action:
        return _expression_uses_state(action["unset"])
    if "every" in action:
        every = action["every"]
        return _template_uses_state([every["interval"], every.get("as", "")])
    if "after" in action:
        after = action["after"]
        return _template_uses_state([after["delay"], after.get("as", "")])
    return _template_uses_state(action)


def _expression_uses_state(text: str) -> bool:
    return any(
        isinstance(node, Name) and node.name == "state"
        for node in walk(parse_expression(text), into_strings=True)
    )


def _template_uses_state(template: Template) -> bool:
    return any(
        isinstance(node, Name) and node.name == "state"
        for _, text in template_strings(template, "")
        for embedded in embedded_expressions(text)
        for node in walk(embedded.expr, into_strings=True)
    )


def seconds_of(value: Any, minimum: float = MIN_TIMER_INTERVAL) -> float:
    """The seconds a delay's expression gave: a number of milliseconds or a duration text,
    not under ``minimum`` (the 10 ms any timer or wait of a scenario takes at least)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) / 1000
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except QuantityError as err:
            raise EvaluationError(str(err)) from None
    else:
        raise EvaluationError(
            f"a delay is a number of milliseconds or a duration such as '500ms', "
            f"not {type_name(value)}"
        )
    if not minimum <= seconds <= MAX_DELAY:
        low = f"{minimum * 1000:g}ms"
        raise EvaluationError(
            f"a delay of {to_text(value)} is out of range: from {low} to {MAX_DELAY // 86400} days"
        )
    return seconds


def _path(text: str) -> tuple[str, list[Evaluator]]:
    """A set or unset path (checked: session or state, then .key and [expr] steps): its root
    and an evaluator per key."""
    node = parse_expression(text)
    keys: list[Evaluator] = []
    while isinstance(node, Member | Index):
        if isinstance(node, Member):
            keys.append(_constant(node.name))
        else:
            keys.append(compile_expression(node.index))
        node = node.target
    assert isinstance(node, Name), text
    keys.reverse()
    return node.name, keys


def _constant(value: str) -> Evaluator:
    return lambda ctx: value


def _location(loaded: Loaded, pointer: str) -> str:
    """``file:line:col`` of the IR node at ``pointer`` (or of its nearest mapped ancestor)."""
    span = locate(loaded.source_map, pointer)
    return f"{loaded.source.name}:{span.line}:{span.col}"


def _constants(loaded: Loaded) -> Context:
    """The file's top-level constants: validation's values, or, for an IR that was never
    validated, evaluated here (raising ActionError where one fails)."""
    if loaded.constants is not None:
        return loaded.constants
    try:
        return evaluate_constants(loaded.ir.get("let", {}))
    except ConstantError as err:
        raise ActionError(str(err), _location(loaded, f"/let/{err.name}")) from None


def compile_program(files: Sequence[Loaded], previous: Program | None = None) -> Program:
    """Compile scenario files, served together, into one Program.

    Files that went through ``validate`` (every file ``loader`` returns) cannot fail here.
    An IR that was never validated has its constants evaluated here: ActionError when one
    cannot be.

    ``previous``: the Program this one replaces (a reload). A file whose lets are unchanged
    keeps their values from it: a constant made with ``now()``, ``uuid()`` or ``random()``
    does not take another value at each reload, so the routes a reload keeps read the same
    constants as before.
    """
    routes: list[Route] = []
    constants: Context = {}
    states: dict[str, dict[str, Any]] = {}
    versions: dict[str, FileVersion] = {}
    for loaded in files:
        name = loaded.source.name
        lets = _canonical(loaded.ir.get("let", {}))
        earlier = None if previous is None else previous.files.get(name)
        if earlier is not None and earlier.lets != lets:
            earlier = None
        file_constants = _constants(loaded) if earlier is None else earlier.constants
        if "state" in loaded.ir:
            if loaded.state is not None and earlier is None:
                states[name] = loaded.state
            else:  # never validated, or its constants carried over: computed from them
                states[name] = compile_template(loaded.ir["state"])[0](dict(file_constants))
        versions[name] = FileVersion(lets, file_constants, _state_definition(loaded.ir, lets))
        compiler = _Compiler(loaded, file_constants)
        prefix = loaded.ir.get("prefix", "")
        for i, route_ir in enumerate(loaded.ir.get("routes", [])):
            route = compiler.route(len(routes), route_ir, prefix, f"/routes/{i}")
            route.constants = file_constants
            route.definition = _route_definition(loaded, route.path, route_ir)
            routes.append(route)
        constants.update(file_constants)
    warnings = [warning for loaded in files for warning in loaded.warnings]
    return Program(routes, constants, states, warnings, versions)


def load_program(
    paths: Sequence[str | Path],
    previous: Program | None = None,
    reuse: MutableMapping[str, Loaded] | None = None,
) -> Program:
    """Load, validate and compile the scenarios named by ``paths`` into one Program
    (``previous``: the one it replaces, as for ``compile_program``; ``reuse``: files loaded
    before, as for ``load_paths``).

    Raises ScenarioErrors (every error of every file) or UsageError (a path that is not a
    scenario). Validation has evaluated the files' constants, so compiling cannot fail.
    """
    loaded, errors, _ = load_paths(paths, reuse)
    if errors:
        raise ScenarioErrors(errors)
    return compile_program(loaded, previous)


# ---- what a reload compares ------------------------------------------------------------------


def _canonical(value: object) -> str:
    """IR as JSON text, keys in their written order: a payload's key order is part of what
    it sends, and ``1`` and ``true`` differ (they are equal in Python)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _route_definition(loaded: Loaded, path: str, route_ir: RouteIR) -> bytes:
    """A digest of what a route is compiled from: its IR, its path (prefix included), its
    file, that file's lets and state block. Positions are not part of it: they live in the
    source map, so a comment or a blank line added above a route leaves it unchanged."""
    ir = loaded.ir
    parts = [loaded.source.name, path, route_ir, ir.get("let", {}), ir.get("state")]
    return hashlib.blake2b(_canonical(parts).encode(), digest_size=16).digest()


def _state_definition(ir: Document, lets: str) -> str:
    """What a file's initial state is made from ("" without a state block): the block, and
    the lets too when the block computes from them."""
    if "state" not in ir:
        return ""
    block = ir["state"]
    return _canonical(block) + (lets if any(template_strings(block, "")) else "")

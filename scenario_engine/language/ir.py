"""The intermediate representation (IR) both spellings compile to, and a loaded file.

docs/ir.md describes the IR; the JSON Schema (``scenario.schema.json``) is its contract. The
TypedDicts below spell that contract for mypy: they describe a *valid* IR, the shape the
schema guarantees (the `.mock` front end builds it; a YAML document has it once the schema
accepted it). Code that must cope with a malformed IR (``emit``, the YAML front end, the
schema check itself) takes plain ``object``/``Any`` values instead.

Each action, auth step and test step kind is a ``@final`` TypedDict of its own, and ``Action``,
``AuthStep`` and ``TestStep`` are their unions: ``"send" in action`` narrows an ``Action`` to a
``SendAction`` (mypy narrows a union with ``in`` only to the members that declare the key, and
can rule a member out only if it is final, i.e. cannot carry further keys).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NotRequired, Required, TypeAlias, TypedDict, final

from ..errors import ScenarioError
from .source import Source, SourceMap, escape_pointer

__all__ = [
    "AcceptStep",
    "Action",
    "AfterAction",
    "AfterBody",
    "AuthStep",
    "Binding",
    "BroadcastAction",
    "BroadcastBody",
    "CancelAction",
    "ClientStep",
    "CloseAction",
    "CloseBody",
    "CloseStep",
    "Compression",
    "ConnectStep",
    "Delay",
    "Document",
    "DropAction",
    "DropBody",
    "Duration",
    "EveryAction",
    "EveryBody",
    "ExpectCloseStep",
    "ExpectNoMessageStep",
    "ExpectStep",
    "Expression",
    "Handlers",
    "IfAction",
    "JoinAction",
    "Latency",
    "LeaveAction",
    "Let",
    "Loaded",
    "LogAction",
    "MessageHandler",
    "PingAction",
    "PingPongBody",
    "PongAction",
    "RejectBody",
    "RejectStep",
    "Route",
    "RouteTimer",
    "SendAction",
    "SendStep",
    "SetAction",
    "SetBody",
    "Size",
    "Subprotocols",
    "Template",
    "Test",
    "TestStep",
    "UnsetAction",
    "Wait",
    "template_strings",
]

# ---- scalars ----------------------------------------------------------------------------------

#: Any JSON value; its strings may embed ``${EXPR}`` (objects and arrays are templates of
#: templates). Arbitrary JSON, so ``Any``: whoever reads one checks its value.
Template: TypeAlias = Any
#: Source text of an expression in the scenario language (``msg.count > 3``).
Expression: TypeAlias = str
#: A number and a unit ms, s, m or h (``"30s"``).
Duration: TypeAlias = str
#: A number and a unit B, KB, MB or GB (``"64KB"``).
Size: TypeAlias = str
#: How long a timer or a wait waits: a Duration, or a template evaluated when it starts
#: (``"${pingInterval}"``) giving a duration text or a number of milliseconds.
Delay: TypeAlias = str
#: A route's latency: a Duration, or a range of them (``"10ms..50ms"``).
Latency: TypeAlias = str


# ---- actions ----------------------------------------------------------------------------------


@final
class SendAction(TypedDict):
    """``{"send": TEMPLATE}``: send to this connection."""

    send: Template


class BroadcastBody(TypedDict, total=False):
    """A broadcast's message (``data``), rooms (``to``; none: the route) and ``includeSelf``."""

    data: Required[Template]
    to: list[Template]
    includeSelf: bool


@final
class BroadcastAction(TypedDict):
    """``{"broadcast": {...}}``: send to the route's (or the rooms') other connections."""

    broadcast: BroadcastBody


@final
class JoinAction(TypedDict):
    """``{"join": TEMPLATE}``: join a room."""

    join: Template


@final
class LeaveAction(TypedDict):
    """``{"leave": TEMPLATE}``: leave a room."""

    leave: Template


class CloseBody(TypedDict, total=False):
    """A close code and reason, both optional: of a close action, close or expectClose step."""

    code: int
    reason: Template


@final
class CloseAction(TypedDict):
    """``{"close": {"code": ..., "reason": ...}}``: close the connection."""

    close: CloseBody


class PingPongBody(TypedDict, total=False):
    """The optional payload of a ping or pong frame."""

    data: Template


@final
class PingAction(TypedDict):
    """``{"ping": {"data": ...}}``: send a ping frame."""

    ping: PingPongBody


@final
class PongAction(TypedDict):
    """``{"pong": {"data": ...}}``: send a pong frame."""

    pong: PingPongBody


class Binding(TypedDict):
    """The body of a let: a name bound to a template's value."""

    name: str
    value: Template


@final
class Let(TypedDict):
    """``{"let": {"name": ..., "value": ...}}``: an action, an auth step or a test step."""

    let: Binding


@final
class LogAction(TypedDict):
    """``{"log": TEMPLATE}``: write to the server log."""

    log: Template


@final
class Wait(TypedDict):
    """``{"wait": DELAY}``: an action (the rest of the handler runs later), an auth step (the
    handshake's answer waits), or a test step (a pause)."""

    wait: Delay


#: The body of ``every``: run ``do`` every ``interval``, ``times`` times at most, under a name
#: (``as``, a template) that ``cancel`` stops and a new start replaces.
EveryBody = TypedDict(
    "EveryBody",
    {
        "interval": Delay,
        "times": NotRequired[int],
        "as": NotRequired[Template],
        "do": "list[Action]",
    },
)


@final
class EveryAction(TypedDict):
    """``{"every": {...}}``: a timer of this connection that repeats."""

    every: EveryBody


#: The body of ``after``: run ``do`` once, ``delay`` from now, under a name (``as``).
AfterBody = TypedDict(
    "AfterBody", {"delay": Delay, "as": NotRequired[Template], "do": "list[Action]"}
)


@final
class AfterAction(TypedDict):
    """``{"after": {...}}``: a timer of this connection that runs once."""

    after: AfterBody


@final
class CancelAction(TypedDict):
    """``{"cancel": TEMPLATE}``: stop this connection's timer of that name, if running."""

    cancel: Template


class SetBody(TypedDict):
    """Where to write (a path into ``session`` or ``state``) and the value to write."""

    path: Expression
    value: Template


@final
class SetAction(TypedDict):
    """``{"set": {"path": EXPR, "value": TEMPLATE}}``: write into session or state."""

    set: SetBody


@final
class UnsetAction(TypedDict):
    """``{"unset": EXPR}``: remove a key of session or state."""

    unset: Expression


class DropBody(TypedDict):
    """``drop`` takes nothing."""


@final
class DropAction(TypedDict):
    """``{"drop": {}}``: cut the TCP connection without a close frame."""

    drop: DropBody


# The keys of an if action are Python keywords: the functional syntax spells them, and a final
# class (so that ``"if" in action`` narrows) derives from it.
_IfKeys = TypedDict(
    "_IfKeys", {"if": Expression, "then": "list[Action]", "else": NotRequired["list[Action]"]}
)


@final
class IfAction(_IfKeys):
    """``{"if": EXPR, "then": [...], "else": [...]}``: ``else`` optional."""


Action: TypeAlias = (
    SendAction
    | BroadcastAction
    | JoinAction
    | LeaveAction
    | CloseAction
    | PingAction
    | PongAction
    | Let
    | LogAction
    | IfAction
    | EveryAction
    | AfterAction
    | CancelAction
    | Wait
    | SetAction
    | UnsetAction
    | DropAction
)


# ---- auth steps -------------------------------------------------------------------------------

#: The body of a reject: ``code`` (a close) or ``status`` (HTTP), a reason, ``if`` or ``unless``.
RejectBody = TypedDict(
    "RejectBody",
    {"code": int, "status": int, "reason": Template, "if": Expression, "unless": Expression},
    total=False,
)


@final
class RejectStep(TypedDict):
    """``{"reject": {...}}``: refuse the connection (if/unless a condition holds)."""

    reject: RejectBody


@final
class AcceptStep(TypedDict):
    """``{"accept": TEMPLATE}``: accept; the value becomes ``auth``."""

    accept: Template


AuthStep: TypeAlias = RejectStep | AcceptStep | Let | Wait


# ---- routes -----------------------------------------------------------------------------------


class MessageHandler(TypedDict, total=False):
    """Runs ``do`` for a message matching type, where and binary (none of them: every one)."""

    type: str
    where: Expression
    binary: bool
    do: Required[list[Action]]


class Handlers(TypedDict, total=False):
    """A route's ``on``: actions per event, message handlers tried in order."""

    connect: list[Action]
    message: list[MessageHandler]
    close: list[Action]
    error: list[Action]


class Compression(TypedDict, total=False):
    """permessage-deflate settings: enabled (default true), threshold (default 1KB)."""

    enabled: bool
    threshold: Size


class Subprotocols(TypedDict, total=False):
    """The subprotocols a route speaks, and whether a client must offer one of them."""

    names: Required[list[str]]
    required: bool


class RouteTimer(TypedDict, total=False):
    """A route's own timer: runs ``do`` every ``interval`` from start-up (``times`` at most)."""

    interval: Required[Delay]
    times: int
    do: Required[list[Action]]


class Route(TypedDict, total=False):
    """One WebSocket endpoint: its path, settings, auth steps, handlers and timers."""

    path: Required[str]
    heartbeat: Duration
    compression: Compression
    maxMessage: Size
    maxConnections: int
    maxRooms: int
    maxTimers: int
    maxSession: Size
    origins: list[str]
    subprotocols: Subprotocols
    latency: Latency
    auth: list[AuthStep]
    on: Handlers
    every: list[RouteTimer]


# ---- tests ------------------------------------------------------------------------------------


@final
class ConnectStep(TypedDict, total=False):
    """Open a connection for a new client (``expectReject``: the handshake must fail)."""

    connect: Required[str]
    path: Required[Template]
    query: Template
    headers: Template
    protocols: Template
    within: Duration
    expectReject: int


@final
class SendStep(TypedDict):
    """A client sends a message (as a binary frame if ``binary``)."""

    client: str
    send: Template
    binary: NotRequired[bool]


@final
class ExpectStep(TypedDict):
    """A client must receive a matching message (within), binding names from it (capture)."""

    client: str
    expect: Template
    within: NotRequired[Duration]
    capture: NotRequired[dict[str, Template]]


@final
class ExpectNoMessageStep(TypedDict):
    """A client must receive no message for that long."""

    client: str
    expectNoMessage: Duration


@final
class ExpectCloseStep(TypedDict):
    """A client's connection must close (with this code and reason, if given)."""

    client: str
    expectClose: CloseBody
    within: NotRequired[Duration]


@final
class CloseStep(TypedDict):
    """A client closes its connection."""

    client: str
    close: CloseBody


ClientStep: TypeAlias = SendStep | ExpectStep | ExpectNoMessageStep | ExpectCloseStep | CloseStep
# Spelled out rather than ``ConnectStep | ClientStep | ...``: mypy does not narrow with ``in``
# through a union alias nested in a union.
TestStep: TypeAlias = (
    ConnectStep
    | SendStep
    | ExpectStep
    | ExpectNoMessageStep
    | ExpectCloseStep
    | CloseStep
    | Wait
    | Let
)


class Test(TypedDict, total=False):
    """A conversation test: its name, whether it is strict, its steps."""

    name: Required[str]
    strict: bool
    steps: Required[list[TestStep]]


# ---- the document -----------------------------------------------------------------------------


class Document(TypedDict, total=False):
    """A scenario file: prefix, constants (name → template), initial state, routes, tests."""

    prefix: str
    let: dict[str, Template]
    state: dict[str, Template]
    routes: list[Route]
    tests: list[Test]


# ---- a loaded file ----------------------------------------------------------------------------


@dataclass
class Loaded:
    """A scenario file after its front end: the IR and the map back to the file."""

    source: Source
    #: The IR, typed as valid: ``validate`` runs the schema before walking it, and ``loader``
    #: hands out a Loaded only once validation passed.
    ir: Document
    source_map: SourceMap = field(default_factory=dict)
    #: The top-level lets' values, once validation has evaluated them.
    constants: dict[str, Any] | None = None
    #: The initial ``state``, once validation has evaluated it.
    state: dict[str, Any] | None = None
    #: What validation found worth saying that is not an error (a ``cancel`` of a timer name
    #: nothing starts): shown by ``check`` and ``serve``, never a reason to refuse the file.
    warnings: list[ScenarioError] = field(default_factory=list)

    @property
    def spelling(self) -> str:
        """ "mock" or "yaml": which front end produced the IR."""
        return "mock" if self.source.name.endswith(".mock") else "yaml"


def template_strings(value: Template, pointer: str) -> Iterator[tuple[str, str]]:
    """(pointer, string) for every string inside a template value that embeds an expression."""
    stack: list[tuple[object, str]] = [(value, pointer)]
    while stack:
        item, ptr = stack.pop()
        if isinstance(item, str):
            if "${" in item:
                yield ptr, item
        elif isinstance(item, dict):
            stack.extend((v, f"{ptr}/{escape_pointer(k)}") for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{ptr}/{i}") for i, v in reversed(list(enumerate(item))))

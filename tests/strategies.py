"""Hypothesis strategies for valid scenario IR documents (docs/ir.md).

``ir_documents()`` draws IRs that the `.mock` language can spell exactly, so that
``parse_mock(emit_mock(ir)) == ir`` must hold. That rules out, on purpose, what the front end
can never produce: negative numbers (``-5`` reads back as ``"${-5}"``), ``binary: false``,
``includeSelf: false``, a close reason without a code, empty ``on``/``message``/``let``, and
``compression`` objects other than ``{"enabled": bool}`` or ``{"threshold": SIZE}``.

Expressions come from fixed pools in canonical spelling (single spaces around binary
operators), because the front end copies expression text verbatim into the IR.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from scenario_engine.expr.strings import Piece, join_template
from scenario_engine.language.source import escape_pointer

__all__ = [
    "BARE_ONLY_EXPRESSIONS",
    "EMBEDDABLE_EXPRESSIONS",
    "if_else_actions",
    "ir_documents",
    "literal_texts",
    "open_parts",
    "templates",
]

#: Expressions that fit anywhere: bare, in an EXPR slot, and inside a string's ``${…}``.
EMBEDDABLE_EXPRESSIONS = (
    "msg.a",
    "conn.id",
    "msg.type",
    "len(msg.items) + 1",
    'msg.type == "x"',
    "msg.name == 'bob'",
    "query.token in users",
    "users[query.token]",
    "auth.user.name",
    "msg.items[0]",
    "msg.count * 2 - 1",
    "!msg.flag",
    "-msg.n",
    'msg.a ?? "none"',
    "msg.a > 1 && msg.b <= 2",
    "msg.x || msg.y",
    "msg.a ? 1 : 2",
    "msg.k not in [1, 2]",
    "upper(msg.name)",
    'id("game")',
    "now()",
    "(msg.a)",
    "{ a: 1 }.a",
    # Braces, '#' and backslashes inside the expression's own strings.
    'msg.tag == "}"',
    'msg.tag == "#x"',
    'msg.tag == "\\\\"',
    "msg.tag == '{'",
    'msg.s == "é ✓"',
    # Literal expressions: written bare they would read back as JSON values, not ${…}.
    "1",
    "2.5",
    '"x"',
    "'y'",
    "[1, msg.a]",
    "{ a: msg.a }",
    "true",
    "null",
    "(5)",
    # Names that are keywords of the statement grammar.
    "send",
    "close",
    "unless",
    "to",
    "include",
    "type",
    "error",
    "if_",
    "send.x",
)

#: Expressions no `.mock` string literal can hold (a line break, or both quote characters):
#: fine bare and in EXPR slots, never inside a string with other text.
BARE_ONLY_EXPRESSIONS = (
    'msg.a == "it\'s"',
    "msg.a &&\n      msg.b",
)

ALL_EXPRESSIONS = EMBEDDABLE_EXPRESSIONS + BARE_ONLY_EXPRESSIONS

_SNIPPETS = (
    "$",
    "{",
    "}",
    '"',
    "'",
    "\\",
    "${",
    "$${",
    "$$",
    "}$",
    "\n",
    "\t",
    "#",
    " ",
    "\x00",
    "\x7f",
    "\u2028",
    "é",
    "ключ",
    "😀",
    "${x}",
    "\\n",
    "'s",
)

expressions = st.sampled_from(ALL_EXPRESSIONS)

# Random text with the characters that need care, no lone surrogates (not text in any file).
_chars = st.characters(exclude_categories=["Cs"])
literal_texts = st.lists(
    st.one_of(st.text(_chars, max_size=6), st.sampled_from(_SNIPPETS)), max_size=4
).map("".join)

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
# Built from plain text strategies: st.from_regex is several times slower to draw from.
_IDENTIFIERS = st.builds(
    lambda head, tail: head + tail, st.sampled_from(_ALNUM[:52] + "_"), st.text(_ALNUM, max_size=7)
)
_KEYWORD_NAMES = st.sampled_from(
    (
        "if",
        "on",
        "type",
        "send",
        "true",
        "null",
        "in",
        "not",
        "to",
        "message",
        "close",
        "route",
        "let",
        "off",
    )
)
keys = st.one_of(
    _IDENTIFIERS,
    _KEYWORD_NAMES,
    st.sampled_from(
        (
            "alice-token",
            "ключ",
            "a b",
            "1x",
            "",
            '"q"',
            "a\\b",
            "${x}",
            "on",
            "<<",
            "=",
            "~",
            "1e3",
            "y",
            "no",
            "null",
        )
    ),
    st.text(_chars, max_size=6),
)


def _ir_literal(text: str) -> str:
    """The IR string meaning exactly ``text`` ($${ escapes a literal ${)."""
    return join_template([text])


@st.composite
def _interpolations(draw: st.DrawFn) -> str:
    # Pieces are copied raw into one literal, so they must agree on its quote: an expression
    # holding a " next to one holding a ' has no .mock spelling (the emitter falls back to +).
    quote = draw(st.sampled_from(("'", '"')))
    pool = st.sampled_from([e for e in EMBEDDABLE_EXPRESSIONS if quote not in e])
    # Text ending in "$" before a piece is written ${"$"} in the IR (see join_template): that
    # adds a '"', so such text only goes into a '…' literal.
    texts = literal_texts if quote == "'" else literal_texts.filter(lambda t: not t.endswith("$"))
    parts: list[str | Piece] = [draw(texts)]
    for _ in range(draw(st.integers(1, 3))):
        parts.append(Piece(draw(pool), 0))
        parts.append(draw(texts))
    return join_template(parts)


template_strings = st.one_of(
    literal_texts.map(_ir_literal),
    expressions.map(lambda e: "${" + e + "}"),
    _interpolations(),
    st.sampled_from(
        (
            "",
            "${ msg.a }",
            "${a # c}",
            "hi ${msg.name}!",
            "US$ ${msg.amount}",
            "on",
            "off",
            "yes",
            "1e3",
            "0o17",
            "2024-01-01",
            "1:30",
            "*x",
            "&a",
            "!tag",
            "%p",
            "@u",
            "`b`",
            "[x",
            "{x",
            "- x",
            "? x",
            "a: b",
            "a #b",
            " lead",
            "trail ",
            "multi\nline\n",
            "\n",
            "x\n\n",
            " \n x",
        )
    ),
)

_numbers = st.one_of(
    st.integers(0, 2**64),
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=False).filter(
        lambda x: math.copysign(1.0, x) > 0
    ),
)
_scalars = st.one_of(st.none(), st.booleans(), _numbers, template_strings)

templates = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=5,
)

_plain_segment = st.text(_ALNUM + ".~-", min_size=1, max_size=8)
_segment = st.one_of(
    _plain_segment,
    _plain_segment,
    _IDENTIFIERS.map(lambda name: ":" + name),
    # Rarer: segments a bare PATH token cannot hold (written as "…").
    st.sampled_from(("*", "a b", "é", "#x", 'q"', "%20")),
)
paths = st.lists(_segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
durations = st.builds(
    lambda n, frac, unit: f"{n}{frac}{unit}",
    st.integers(0, 10**6),
    st.sampled_from(("", ".5", ".25")),
    st.sampled_from(("ms", "s", "m", "h")),
)
sizes = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(0, 4096), st.sampled_from(("B", "KB", "MB", "GB"))
)
names = st.one_of(_IDENTIFIERS, st.sampled_from(("send", "on", "type", "users")))
#: A timer's interval or a wait: a duration, or an expression giving one.
delays = st.one_of(durations, expressions.map(lambda e: "${" + e + "}"))
#: A timer's name: a word, or a template (one timer per subscription id).
timer_names = st.one_of(
    _IDENTIFIERS, st.sampled_from(("every", "sub-${msg.id}", "a b", "${conn.id}"))
)
#: Where set and unset write.
_writable = st.sampled_from(
    ("session.a", "state.highest", "state.users[msg.id]", "session.subs[msg.id].n", "session")
)


def _let(value: st.SearchStrategy[Any] = templates) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"name": names, "value": value}).map(lambda b: {"let": b})


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


_simple_actions = st.one_of(
    templates.map(lambda t: {"send": t}),
    templates.map(lambda t: {"join": t}),
    templates.map(lambda t: {"leave": t}),
    templates.map(lambda t: {"log": t}),
    st.fixed_dictionaries(
        {"data": templates},
        optional={
            "to": st.lists(templates, max_size=3),
            "includeSelf": st.just(True),
        },
    ).map(lambda b: {"broadcast": b}),
    st.one_of(
        st.just({}),
        st.fixed_dictionaries(
            {"code": st.sampled_from((1000, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999))},
            optional={"reason": templates},
        ),
    ).map(lambda b: {"close": b}),
    timer_names.map(lambda n: {"cancel": n}),
    delays.map(lambda d: {"wait": d}),
    st.fixed_dictionaries({"path": _writable, "value": templates}).map(lambda b: {"set": b}),
    _writable.map(lambda w: {"unset": w}),
    st.just({"drop": {}}),
    st.fixed_dictionaries({}, optional={"data": templates}).map(lambda b: {"ping": b}),
    st.fixed_dictionaries({}, optional={"data": templates}).map(lambda b: {"pong": b}),
    _let(),
)


@st.composite
def actions(draw: st.DrawFn, depth: int = 3) -> dict[str, Any]:
    """An action; ``if`` actions nest up to ``depth`` levels (a composite rather than nested
    strategies, whose repr would grow with every level)."""
    kind = 0 if depth == 0 else draw(st.integers(0, 7))
    if kind > 2:
        action: dict[str, Any] = draw(_simple_actions)
        return action
    nested = st.lists(actions(depth - 1), max_size=2)
    if kind == 1:  # a timer: its keys in the order the front end writes them, do last
        every: dict[str, Any] = {"interval": draw(delays)}
        if draw(st.booleans()):
            every["times"] = draw(st.integers(1, 5))
        if draw(st.booleans()):
            every["as"] = draw(timer_names)
        every["do"] = draw(nested)
        return {"every": every}
    if kind == 2:
        after: dict[str, Any] = {"delay": draw(delays)}
        if draw(st.booleans()):
            after["as"] = draw(timer_names)
        after["do"] = draw(nested)
        return {"after": after}
    action = {"if": draw(expressions), "then": draw(nested)}
    if draw(st.booleans()):
        action["else"] = draw(nested)
    return action


_blocks = st.lists(actions(), max_size=2)


@st.composite
def if_else_actions(draw: st.DrawFn) -> dict[str, Any]:
    """An ``if`` with an ``else`` block, or with an ``else if`` (an else of one ``if``)."""
    nested = st.lists(actions(1), max_size=2)
    action: dict[str, Any] = {"if": draw(expressions), "then": draw(nested)}
    if draw(st.booleans()):
        action["else"] = draw(nested)
    else:
        action["else"] = [{"if": draw(expressions), "then": draw(nested), "else": draw(nested)}]
    return action


_auth_steps = st.one_of(
    st.builds(
        lambda code, reason, cond: {
            "reject": _without_none({**code, "reason": reason, **(cond or {})})
        },
        st.one_of(
            st.integers(4000, 4999).map(lambda c: {"code": c}),
            st.integers(400, 599).map(lambda s: {"status": s}),
        ),
        _optional(templates),
        _optional(
            st.one_of(
                expressions.map(lambda e: {"if": e}), expressions.map(lambda e: {"unless": e})
            )
        ),
    ),
    templates.map(lambda t: {"accept": t}),
    delays.map(lambda d: {"wait": d}),
    _let(),
)

_message_handlers = st.fixed_dictionaries(
    {"do": _blocks},
    optional={
        "type": literal_texts,
        "where": expressions,
        "binary": st.just(True),
    },
)

_handlers = st.fixed_dictionaries(
    {},
    optional={
        "connect": _blocks,
        "message": st.lists(_message_handlers, min_size=1, max_size=2),
        "close": _blocks,
        "error": _blocks,
    },
).filter(bool)

_compression = st.one_of(
    st.booleans().map(lambda b: {"enabled": b}), sizes.map(lambda s: {"threshold": s})
)

_subprotocol_names = st.sampled_from(("graphql-transport-ws", "chat", "v1.stomp", "mqtt"))
_route_timers = st.fixed_dictionaries(
    {"interval": delays, "do": _blocks}, optional={"times": st.integers(1, 5)}
).map(lambda t: {k: t[k] for k in ("interval", "times", "do") if k in t})

routes = st.fixed_dictionaries(
    {"path": paths},
    optional={
        "heartbeat": durations,
        "compression": _compression,
        "maxMessage": sizes,
        "maxConnections": st.integers(1, 1000),
        "maxRooms": st.integers(1, 10_000),
        "maxTimers": st.integers(1, 100),
        "maxSession": sizes,
        "subprotocols": st.fixed_dictionaries(
            {"names": st.lists(_subprotocol_names, min_size=1, max_size=2)},
            optional={"required": st.just(True)},
        ),
        "latency": st.one_of(durations, st.tuples(durations, durations).map("..".join)),
        "auth": st.lists(_auth_steps, max_size=2),
        "on": _handlers,
        "every": st.lists(_route_timers, min_size=1, max_size=2),
    },
)


# Client names are never keywords (validation refuses them).
_clients = st.sampled_from(("alice", "bob", "c1", "player"))
_close_bodies = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {"code": st.integers(1000, 4999)}, optional={"reason": literal_texts.map(_ir_literal)}
    ),
)
_test_steps = st.one_of(
    st.fixed_dictionaries(
        {
            "connect": _clients,
            "path": st.one_of(paths, st.sampled_from(("/g/${gameId}", "/q?x=${msg.a}&y=1"))),
        },
        optional={
            "query": templates,
            "headers": templates,
            "protocols": templates,
            "within": durations,
            "expectReject": st.integers(400, 599),
        },
    ),
    st.fixed_dictionaries(
        {"client": _clients, "send": templates}, optional={"binary": st.just(True)}
    ),
    st.fixed_dictionaries(
        {"client": _clients, "expect": templates},
        optional={
            "within": durations,
            "capture": st.dictionaries(names, templates, min_size=1, max_size=2),
        },
    ),
    st.fixed_dictionaries({"client": _clients, "expectNoMessage": durations}),
    st.fixed_dictionaries(
        {"client": _clients, "expectClose": _close_bodies}, optional={"within": durations}
    ),
    st.fixed_dictionaries({"client": _clients, "close": _close_bodies}),
    delays.map(lambda d: {"wait": d}),
    _let(),
)
tests = st.fixed_dictionaries(
    {"name": literal_texts, "steps": st.lists(_test_steps, max_size=4)},
    optional={"strict": st.just(True)},
)


@st.composite
def ir_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid IR document with a `.mock` spelling."""
    ir: dict[str, Any] = {}
    if draw(st.booleans()):
        ir["prefix"] = draw(paths)
    constants = draw(st.dictionaries(names, templates, max_size=3))
    if constants:
        ir["let"] = constants
    if draw(st.booleans()):
        ir["state"] = draw(st.dictionaries(names, templates, max_size=3))
    ir["routes"] = draw(st.lists(routes, max_size=2))
    if draw(st.booleans()):
        ir["tests"] = draw(st.lists(tests, min_size=1, max_size=2))
    return ir


def _containers(value: Any, pointer: str = "") -> list[str]:
    """The JSON pointers of the objects and arrays in ``value``, itself included."""
    if isinstance(value, dict):
        found = [pointer]
        for key, item in value.items():
            found += _containers(item, f"{pointer}/{escape_pointer(key)}")
        return found
    if isinstance(value, list):
        found = [pointer]
        for i, item in enumerate(value):
            found += _containers(item, f"{pointer}/{i}")
        return found
    return []


def open_parts(ir: dict[str, Any], forms: bool = True) -> st.SearchStrategy[frozenset[str]]:
    """Sets of pointers of ``ir`` for ``emit_mock``'s ``expand``: values and blocks written
    open. ``forms``: also an ``else`` kept as a block around its one ``if`` and a ``to`` list
    of one room kept in brackets, which change the text's tokens, not only its lines."""
    pointers = [p for p in _containers(ir) if forms or not p.endswith(("/else", "/broadcast/to"))]
    return st.frozensets(st.sampled_from(pointers)) if pointers else st.just(frozenset())

"""From the occurrences of one reply to the template that makes it, and to what a test expects.

Every occurrence of a reply comes with its context: the message that caused it (``msg``),
the client, which run of a timer it was. ``generalize`` finds, leaf by leaf, what explains the
values in *every* occurrence, in this order:

1. a value of the request (``msg.seq``, also nested or under another name; ``raw`` for text),
   equal in every occurrence: a constant of the request is taken from it only when the reply
   names it alike (``symbol: msg.symbol``), since a coincidence is likely otherwise;
2. the client's own id (``conn.id``), text the client sent in an earlier message (a name
   it gave: kept in ``session`` by that message's handler), a timer's run
   (``timer.count``), a count of the client's messages of that kind (a ``session`` counter);
3. the recording's wall clock: ``now()`` (milliseconds) or ``now() / 1000`` (seconds); an
   ISO date stays as recorded (no function makes one) and a test matches its shape;
4. a constant: equal in every occurrence;
5. fresh ids (``uuid()``, ``id("game")``, ``id()``) when they differ, or when a value seen once
   is sent back by a client later (so it is an id the server made);
6. text around a request's value (``"Hello ${msg.name}"``);
7. a value that is the same for each value of a query parameter or a request's text field,
   and differs between them: a table (a top-level ``let``) looked up by it
   (``names[query.token]``);
8. numbers that vary: ``random(lo, hi)``; anything else that varies: the first value, and
   ``any`` in tests.

The result is a ``Spec``: ``template()`` is the IR template for the mock, ``expectation(v)``
what a test expects where ``v`` was recorded: the value itself where the mock and the target
both reproduce it, ``any`` or ``matches(…)`` where they cannot.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..expr.values import equal
from .shapes import ISO_TIME, id_shape, is_id_like, is_iso_time, time_unit

__all__ = [
    "ANY",
    "Context",
    "Spec",
    "as_template",
    "generalize",
    "matches",
    "request_paths",
    "string_literal",
    "text_pattern",
]

ANY = "${any}"

#: Names a template uses for what a test sees (captured ids) — given to ``expectation``.
Names = Mapping[str, str]


def matches(pattern: str) -> str:
    """The expected-message template matching strings where ``pattern`` finds a match."""
    return "${matches(" + string_literal(pattern) + ")}"


def string_literal(text: str) -> str:
    """``text`` as a string literal of the expression language (``"a \\"b\\""``)."""
    out = ['"']
    for i, c in enumerate(text):
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c == "$" and text.startswith("{", i + 1):
            out.append("\\$")
        elif not c.isprintable() and c <= "\uffff":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass
class Context:
    """Where one occurrence of a reply happened."""

    #: The message that caused it (``msg``), if any, and its text (``raw``).
    msg: Any = None
    raw: str | None = None
    has_msg: bool = False
    #: The client whose handler sent it (``conn``) and that client's id as replies show it.
    identity: str | None = None
    #: Which run of its timer (1 for the first), for pushes on a timer.
    timer_count: int | None = None
    #: How many messages of this kind the client had sent, this one included.
    counter: int | None = None
    #: The query of the client's handshake.
    query: dict[str, str] = field(default_factory=dict)
    #: What the client said before, in its latest message of each kind: (kind, path of
    #: ``msg``) → the text there.
    said: dict[tuple[Hashable, str], str] = field(default_factory=dict)


@dataclass
class Recorded:
    """What the whole recording tells every generalization: its time span, and the values
    clients sent back after receiving them (ids the server made)."""

    start: float
    end: float
    echoed: set[str] = field(default_factory=set)
    #: The paths of ``msg`` never to take a reply's value from (the message's kind).
    excluded: tuple[str, ...] = ()
    #: The tables values are looked up in (top-level ``let``s), shared by every rule.
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the handlers remember in ``session``: (kind, path of ``msg``) → the name in
    #: ``session`` that a message of that kind sets, shared by every rule.
    memory: dict[tuple[Hashable, str], str] = field(default_factory=dict)


class Spec:
    """How one value of a reply is made."""

    #: Whether the mock and the target give the recorded value again on a replay.
    stable = True

    def template(self) -> Any:
        raise NotImplementedError

    def expectation(self, recorded: Any, names: Names) -> Any:
        if isinstance(recorded, str) and recorded in names:
            return "${" + names[recorded] + "}"
        return as_template(recorded)

    def uses(self) -> set[str]:
        """The session counters it reads (their ``set`` goes before the send)."""
        return set()


@dataclass
class Const(Spec):
    value: Any
    #: In how many occurrences it was seen: once, an id in it may be fresh on a replay.
    seen: int = 2

    def template(self) -> Any:
        return as_template(self.value)

    def expectation(self, recorded: Any, names: Names) -> Any:
        if self.seen == 1 and isinstance(recorded, str) and recorded not in names:
            pattern = text_pattern([recorded])
            if pattern is not None:
                # The mock sends what was recorded; the server may make a new id there.
                return matches(pattern)
        return super().expectation(recorded, names)


@dataclass
class FromRequest(Spec):
    expression: str

    def template(self) -> Any:
        return "${" + self.expression + "}"


@dataclass
class Interpolated(Spec):
    """Text with a request's value inside: ``"Hello ${msg.name}"``."""

    before: str
    expression: str
    after: str

    def template(self) -> Any:
        return as_template(self.before) + "${" + self.expression + "}" + as_template(self.after)


@dataclass
class Counted(Spec):
    """``timer.count``, or a counter in ``session``: replayed alike by both servers."""

    expression: str
    counter: str | None = None

    def template(self) -> Any:
        return "${" + self.expression + "}"

    def uses(self) -> set[str]:
        return {self.counter} if self.counter else set()


@dataclass
class Lookup(Spec):
    """A value found in a table by a request's value: ``names[query.token]``."""

    expression: str

    def template(self) -> Any:
        return "${" + self.expression + "}"


@dataclass
class Varying(Spec):
    """A value that differs on a replay: made by ``expression`` in the mock (None: the first
    value recorded), expected as ``pattern`` (None: ``any``)."""

    expression: str | None
    first: Any
    pattern: str | None = None
    #: Captured by a test when a client sends it back (an id the server made).
    capturable: bool = False
    stable = False

    def template(self) -> Any:
        return as_template(self.first) if self.expression is None else "${" + self.expression + "}"

    def expectation(self, recorded: Any, names: Names) -> Any:
        if self.capturable and isinstance(recorded, str) and recorded in names:
            return "${" + names[recorded] + "}"  # an id a test captured earlier
        return ANY if self.pattern is None else matches(self.pattern)


@dataclass
class Identity(Varying):
    """The client's own id: ``conn.id`` in the mock."""


@dataclass
class ObjectSpec(Spec):
    members: dict[str, Spec]

    def template(self) -> Any:
        return {k: v.template() for k, v in self.members.items()}

    def expectation(self, recorded: Any, names: Names) -> Any:
        if not isinstance(recorded, dict):
            return ANY
        return {
            k: spec.expectation(recorded[k], names)
            for k, spec in self.members.items()
            if k in recorded
        }

    def uses(self) -> set[str]:
        return set().union(*(m.uses() for m in self.members.values()))


@dataclass
class ArraySpec(Spec):
    items: list[Spec]

    def template(self) -> Any:
        return [item.template() for item in self.items]

    def expectation(self, recorded: Any, names: Names) -> Any:
        if not isinstance(recorded, list) or len(recorded) != len(self.items):
            return ANY
        return [spec.expectation(v, names) for spec, v in zip(self.items, recorded, strict=True)]

    def uses(self) -> set[str]:
        return set().union(*(i.uses() for i in self.items))


def generalize(
    values: Sequence[Any],
    contexts: Sequence[Context],
    recorded: Recorded,
    key: str | None = None,
) -> Spec:
    """The spec that explains ``values``, one per occurrence, each in its context."""
    assert values and len(values) == len(contexts)
    first = values[0]
    if _is_container(first) and first:
        found = _from_request(values, contexts, recorded, key)
        if found is not None:
            return found
    if all(isinstance(v, dict) for v in values):
        keys = [k for k in first if all(k in v for v in values[1:])]
        return ObjectSpec(
            {k: generalize([v[k] for v in values], contexts, recorded, k) for k in keys}
        )
    if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return ArraySpec(
            [generalize([v[i] for v in values], contexts, recorded, key) for i in range(len(first))]
        )
    for rule in _RULES:
        spec = rule(values, contexts, recorded, key)
        if spec is not None:
            return spec
    pattern = text_pattern(values) if all(isinstance(v, str) for v in values) else None
    return Varying(None, first, pattern)


# ---- the rules, in order ----------------------------------------------------------------------


def _from_request(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    if not all(c.has_msg for c in contexts):
        return None
    first = values[0]
    if isinstance(first, bool) or first is None:
        return None
    if all(
        c.raw is not None and isinstance(v, str) and v == c.raw
        for v, c in zip(values, contexts, strict=False)
    ) and not all(isinstance(c.msg, dict | list) for c in contexts):
        return FromRequest("raw")
    common: list[str] | None = None
    for value, context in zip(values, contexts, strict=True):
        # A message of a kind named by a key is answered field by field (the kind's value
        # is the handler's), not as the whole message.
        paths = [
            p
            for p in request_paths(context.msg, value)
            if p not in recorded.excluded and not (p == "msg" and recorded.excluded)
        ]
        common = paths if common is None else [p for p in common if p in paths]
        if not common:
            return None
    assert common
    constant = all(equal(v, first) and type(v) is type(first) for v in values)
    same_name = [p for p in common if _last_name(p) == key]
    if constant and not same_name:
        # The same value every time: a constant, unless the reply names the field alike.
        trivial = isinstance(first, int | float) and first in (0, 1)
        if len(values) > 1 or trivial or not _distinctive(first):
            return None
    best = min(same_name or common, key=lambda p: (p.count(".") + p.count("["), len(p)))
    return FromRequest(best)


def _identity(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    if all(isinstance(v, str) and c.identity == v for v, c in zip(values, contexts, strict=False)):
        shape = id_shape([str(v) for v in values])
        # conn.id is 12 hex digits: a test accepts what both servers send.
        pattern = "^[0-9a-fA-F]+$" if shape and shape.pattern == "^[0-9a-fA-F]+$" else None
        return Identity("conn.id", values[0], pattern, capturable=True)
    return None


def _remembered(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    """Text the client itself sent in an earlier message of some kind (a name it gave),
    differing between clients: kept in ``session`` by that kind's handler."""
    if not all(isinstance(v, str) for v in values) or len(set(values)) < 2:
        return None
    common: list[tuple[Hashable, str]] | None = None
    for value, context in zip(values, contexts, strict=True):
        found = [where for where, said in context.said.items() if said == value]
        common = found if common is None else [w for w in common if w in found]
        if not common:
            return None
    assert common
    where = common[0]
    name = recorded.memory.get(where)
    if name is None:
        base = _identifier(where[1].rsplit(".", 1)[-1])
        name, n = base, 2
        while name in recorded.memory.values():
            name, n = f"{base}{n}", n + 1
        recorded.memory[where] = name
    return Counted(f"session.{name}")


def _counted(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    if not all(_is_int(v) for v in values) or len(set(values)) < 2:
        return None
    counts = [c.timer_count for c in contexts]
    if all(n is not None for n in counts):
        offsets = {v - n for v, n in zip(values, counts, strict=True) if n is not None}
        if len(offsets) == 1:
            (offset,) = offsets
            shift = f" + {offset}" if offset > 0 else f" - {-offset}" if offset < 0 else ""
            return Counted("timer.count" + shift)
    if all(c.counter == v for v, c in zip(values, contexts, strict=False)):
        name = _identifier(key or "count")
        return Counted(f"session.{name}", name)
    return None


def _clock(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    if all(_is_number(v) for v in values):
        unit = time_unit([float(v) for v in values], recorded.start, recorded.end)
        if unit == "ms":
            return Varying("now()", values[0])
        if unit == "s":
            return Varying("now() / 1000", values[0])
    if all(isinstance(v, str) and is_iso_time(v) for v in values):
        return Varying(None, values[0], ISO_TIME)
    return None


def _constant(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    first = values[0]
    if all(equal(v, first) and type(v) is type(first) for v in values[1:]):
        if isinstance(first, str) and first in recorded.echoed and is_id_like(first):
            return _fresh(values)
        return Const(first, len(values))
    return None


def _fresh_ids(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    if all(isinstance(v, str) for v in values):
        return _fresh(values)
    return None


def _fresh(values: Sequence[Any]) -> Spec | None:
    shape = id_shape([str(v) for v in values])
    if shape is None:
        return None
    capturable = any(v in values[:i] for i, v in enumerate(values)) is False
    return Varying(shape.expression, values[0], shape.pattern, capturable=capturable)


def _interpolated(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    if not all(isinstance(v, str) for v in values) or not all(c.has_msg for c in contexts):
        return None
    candidates: list[tuple[str, str]] | None = None  # (path, the text around it)
    for value, context in zip(values, contexts, strict=True):
        found = []
        for path, piece in _text_leaves(context.msg, context.raw):
            if path in recorded.excluded or len(piece) < 2 or piece not in value:
                continue
            before, _, after = value.partition(piece)
            found.append((path, before + "\0" + after))
        candidates = found if candidates is None else [c for c in candidates if c in found]
        if not candidates:
            return None
    assert candidates
    path, around = candidates[0]
    before, after = around.split("\0")
    return Interpolated(before, path, after)


def _lookup(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    """A value that is always the same for the same value of a query parameter or of a
    request's field, and differs between them: a table, looked up by it."""
    if len({json.dumps(v, sort_keys=True) for v in values}) < 2:
        return None
    for source in _sources(contexts, recorded):
        table: dict[str, Any] = {}
        for value, context in zip(values, contexts, strict=True):
            found = _source_value(source, context)
            if not isinstance(found, str):
                break
            if found in table and not (
                equal(table[found], value) and type(value) is type(table[found])
            ):
                break
            table[found] = value
        else:
            if len(table) < 2:
                continue
            name = _table_name(key, table, recorded.tables)
            recorded.tables[name] = {k: as_template(v) for k, v in table.items()}
            return Lookup(f"{name}[{source}]")
    return None


def _sources(contexts: Sequence[Context], recorded: Recorded) -> list[str]:
    """Where a table's key may come from: the request's text fields, the query's values."""
    sources: list[str] | None = None
    for context in contexts:
        found = [
            f"query.{k}" if _NAME.fullmatch(k) else f"query[{string_literal(k)}]"
            for k in context.query
        ]
        if context.has_msg:
            found += [p for p, v in _text_leaves(context.msg, None) if p not in recorded.excluded]
        sources = found if sources is None else [s for s in sources if s in found]
    return sources or []


def _source_value(source: str, context: Context) -> Any:
    if source.startswith("query"):
        for key, value in context.query.items():
            if source in (f"query.{key}", f"query[{string_literal(key)}]"):
                return value
        return None
    for path, value in _text_leaves(context.msg, None):
        if path == source:
            return value
    return None


def _table_name(key: str | None, table: dict[str, Any], tables: dict[str, dict[str, Any]]) -> str:
    base = _identifier(key or "value")
    base = base if base.endswith("s") else base + "s"
    name, n = base, 2
    while name in tables and tables[name] != {k: as_template(v) for k, v in table.items()}:
        name, n = f"{base}{n}", n + 1
    return name


def _random(
    values: Sequence[Any], contexts: Sequence[Context], recorded: Recorded, key: str | None
) -> Spec | None:
    if all(_is_number(v) for v in values):
        low, high = math.floor(min(values)), math.ceil(max(values))
        return Varying(f"random({low}, {high})", values[0])
    return None


_Rule = Callable[[Sequence[Any], Sequence[Context], Recorded, "str | None"], "Spec | None"]
_RULES: tuple[_Rule, ...] = (
    _from_request,
    _identity,
    _remembered,
    _counted,
    _clock,
    _constant,
    _fresh_ids,
    _interpolated,
    _lookup,
    _random,
)


# ---- helpers ----------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_WORD = re.compile(r"[A-Za-z0-9_-]+")
#: What stands for an id in a text pattern: what id() and uuid() make, and the server's ids.
_ID_PATTERN = "[0-9A-Za-z_-]+"


def text_pattern(values: Sequence[str]) -> str | None:
    """A regular expression for texts that differ only in ids (``40{"sid":"611a3a32"}``),
    the ids (id-like words of six characters or more) left open; None if the texts hold no
    id or differ elsewhere."""
    skeletons = set()
    for value in values:
        parts = []
        last = 0
        for word in _WORD.finditer(value):
            if len(word.group()) >= 6 and is_id_like(word.group()):
                parts.append(value[last : word.start()])
                last = word.end()
        parts.append(value[last:])
        if len(parts) == 1:
            return None
        skeletons.add(tuple(parts))
    if len(skeletons) != 1:
        return None
    (skeleton,) = skeletons
    return "^" + _ID_PATTERN.join(re.escape(part) for part in skeleton) + "$"


def request_paths(value: Any, target: Any, base: str = "msg") -> list[str]:
    """Every path in ``value`` (``msg``, ``msg.a.b``, ``msg.items[0]``) holding ``target``:
    deep-equal and of the same JSON type."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(value, base)]
    while stack:
        item, path = stack.pop()
        if type(item) is type(target) and equal(item, target):
            found.append(path)
        if isinstance(item, dict):
            stack.extend((v, _member(path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return found


def _text_leaves(msg: Any, raw: str | None) -> list[tuple[str, str]]:
    leaves = []
    if raw is not None and not isinstance(msg, dict | list):
        leaves.append(("raw", raw))
    stack: list[tuple[Any, str]] = [(msg, "msg")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str) and isinstance(msg, dict | list):
            leaves.append((path, item))
        elif isinstance(item, dict):
            stack.extend((v, _member(path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return leaves


def _member(path: str, key: str) -> str:
    return f"{path}.{key}" if _NAME.fullmatch(key) else f"{path}[{json.dumps(key)}]"


def _last_name(path: str) -> str | None:
    match = re.search(r"\.([A-Za-z_][A-Za-z0-9_]*)$", path)
    return match.group(1) if match else None


def _distinctive(value: Any) -> bool:
    """A value unlikely to be equal to a request's by chance."""
    if isinstance(value, str):
        return len(value) >= 2
    if isinstance(value, int | float):
        return abs(value) >= 2
    return bool(value)


def _identifier(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", key)
    return name if _NAME.fullmatch(name) else "count"


def _is_container(value: Any) -> bool:
    return isinstance(value, dict | list)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_template(value: Any) -> Any:
    """A recorded value as a template that makes it: its strings with ``${`` escaped."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: as_template(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_template(v) for v in value]
    return value

"""Expected messages of conversation tests: compiled from templates, matched partially.

An expect step's template is compiled like any other, except for two forms that stand for a
whole value: ``any`` (any value, null included, as long as it is there) and ``matches(RE)``
(a string in which the regular expression finds a match, as JavaScript's ``RegExp.test``).

Matching is partial, as Jest's ``toMatchObject``: an expected object's keys must be present in
the received object with matching values, other keys are ignored; arrays match item by item and
must have the same length; anything else is compared with the language's ``==``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import EvaluationError
from ..expr.evaluate import compile_expression, compile_template
from ..expr.functions import ANY, MATCHERS
from ..expr.parse import parse_expression
from ..expr.strings import Piece, split_template
from ..expr.syntax import Call, Name
from ..expr.values import Context, equal

__all__ = [
    "AnyValue",
    "Pattern",
    "compile_expectation",
    "mismatches",
    "show",
]

#: Differences reported per received message: the first few say what is wrong.
MAX_MISMATCHES = 5
_SHOWN_CHARS = 300


class AnyValue:
    """Matches any value."""

    def __repr__(self) -> str:
        return ANY


@dataclass(frozen=True, slots=True)
class Pattern:
    """Matches a string in which ``regex`` finds a match."""

    regex: re.Pattern[str]

    def __repr__(self) -> str:
        return f"matches({json.dumps(self.regex.pattern)})"


ANY_VALUE = AnyValue()
Expected = Callable[[Context], Any]


def compile_expectation(template: Any) -> Expected:
    """A closure building the expected value, with matchers where ``any``/``matches`` are."""
    if isinstance(template, str) and "${" in template:
        parts = split_template(template)
        if len(parts) == 1 and isinstance(parts[0], Piece):
            expr = parse_expression(parts[0].text)
            if isinstance(expr, Name) and expr.name == ANY:
                return lambda ctx: ANY_VALUE
            if isinstance(expr, Call) and expr.name in MATCHERS:
                source = compile_expression(expr.args[0])
                return lambda ctx: _pattern(source(ctx))
        return compile_template(template)[0]
    if isinstance(template, dict):
        pairs = [(key, compile_expectation(value)) for key, value in template.items()]
        return lambda ctx: {key: fn(ctx) for key, fn in pairs}
    if isinstance(template, list):
        items = [compile_expectation(item) for item in template]
        return lambda ctx: [fn(ctx) for fn in items]
    return lambda ctx: template


def _pattern(source: Any) -> Pattern:
    if not isinstance(source, str):
        raise EvaluationError(f"matches() takes a string, not {type(source).__name__}")
    try:
        return Pattern(re.compile(source))
    except re.error as err:
        raise EvaluationError(f"bad regular expression {source!r}: {err}") from None


def mismatches(expected: Any, received: Any, path: str = "msg") -> list[str]:
    """How ``received`` differs from ``expected``: at most MAX_MISMATCHES lines, [] if it
    matches."""
    found: list[str] = []
    _compare(expected, received, path, found)
    return found[:MAX_MISMATCHES]


def _compare(expected: Any, received: Any, path: str, found: list[str]) -> None:
    if len(found) >= MAX_MISMATCHES or isinstance(expected, AnyValue):
        return
    if isinstance(expected, Pattern):
        if not isinstance(received, str):
            found.append(
                f"at {path}: expected a string matching "
                f"{expected.regex.pattern!r}, received {show(received)}"
            )
        elif expected.regex.search(received) is None:
            found.append(f"at {path}: {show(received)} does not match {expected.regex.pattern!r}")
        return
    if isinstance(expected, dict):
        if not isinstance(received, dict):
            found.append(f"at {path}: expected an object, received {show(received)}")
            return
        for key, value in expected.items():
            child = (
                f"{path}.{key}"
                if re.fullmatch(r"[A-Za-z_]\w*", key)
                else f"{path}[{json.dumps(key)}]"
            )
            if key not in received:
                found.append(f"at {child}: missing (expected {show(value)})")
            else:
                _compare(value, received[key], child, found)
        return
    if isinstance(expected, list):
        if not isinstance(received, list):
            found.append(f"at {path}: expected an array, received {show(received)}")
            return
        if len(expected) != len(received):
            found.append(f"at {path}: expected {len(expected)} items, received {len(received)}")
            return
        for i, (value, item) in enumerate(zip(expected, received, strict=True)):
            _compare(value, item, f"{path}[{i}]", found)
        return
    if isinstance(expected, str) and isinstance(received, bytes):
        received = received.decode("utf-8", "replace")  # a binary frame, compared as text
    if not equal(expected, received):
        found.append(f"at {path}: expected {show(expected)}, received {show(received)}")


def show(value: Any) -> str:
    """A value as compact JSON for a report (matchers as written, long values cut)."""
    try:
        text = _shown(value)
    except RecursionError:  # a message nested deeper than a report can walk
        return "<nested too deep to show>"
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"{json.dumps(k, ensure_ascii=False)}: {_shown(v)}" for k, v in value.items()
            )
            + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, AnyValue | Pattern):
        return repr(value)
    if isinstance(value, bytes):
        return f"<binary, {len(value)} bytes>"
    return json.dumps(value, ensure_ascii=False)

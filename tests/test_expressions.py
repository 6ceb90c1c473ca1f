"""The expression evaluator: values, operators, functions, limits, and what it cannot reach."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import UNIT

from scenario_engine.errors import EvaluationError, ExpressionSyntaxError
from scenario_engine.expr.evaluate import compile_expression, compile_template
from scenario_engine.expr.parse import parse_expression
from scenario_engine.expr.values import MAX_STRING, to_json, to_text

CTX: dict[str, Any] = {
    "msg": {"type": "chat", "n": 3, "items": [1, 2, 3], "name": "Al", "user": None},
    "users": {"alice-token": {"name": "Alice"}},
    "query": {"token": "alice-token"},
}


def ev(text: str, ctx: dict[str, Any] | None = None) -> Any:
    return compile_expression(parse_expression(text))(CTX if ctx is None else ctx)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("8 / 2", 4),
        ("7 % 3", 1),
        ("-msg.n", -3),
        ('"a" + 1', "a1"),
        ('"n=" + msg.n', "n=3"),
        ("[1] + [2]", [1, 2]),
        ("msg.n == 3.0", True),
        ('msg.n == "3"', False),
        ("true == 1", False),
        ("msg.items == [1, 2, 3]", True),
        ("{a: 1} == {a: 1}", True),
        ('"b" > "a"', True),
        ("msg.n >= 3 && msg.n < 4", True),
        ("msg.missing", None),
        ("msg.missing > 1", False),
        ("msg.missing <= 1", False),
        ('msg.missing ?? "anon"', "anon"),
        ('msg.name || "anon"', "Al"),
        ('"" || "anon"', "anon"),
        ("0 && 1", 0),
        ("!msg.user", True),
        ("!![]", True),
        ("query.token in users", True),
        ('"bob" in users', False),
        ("2 in msg.items", True),
        ('"l" in msg.name', True),
        ('"x" not in msg.name', True),
        ("users[query.token].name", "Alice"),
        ("msg.items[0]", 1),
        ("msg.items[9]", None),
        ('msg["type"]', "chat"),
        ('msg.n > 2 ? "big" : "small"', "big"),
        ('"Hello ${msg.name}, you have ${msg.n} items"', "Hello Al, you have 3 items"),
        ("len(msg.items)", 3),
        ('len("héllo")', 5),
        ("len(users)", 1),
        ('upper("a") + lower("B")', "Ab"),
        ('number("42") + 1', 43),
        ("str(msg.items)", "[1,2,3]"),
        ("json(msg.name)", '"Al"'),
        ("keys(users)", ["alice-token"]),
    ],
)
def test_expression_values(text: str, expected: Any) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


def test_functions_that_make_fresh_values() -> None:
    assert re.fullmatch(r"game-[0-9a-f]{8}", ev('id("game")'))
    assert ev('id("game")') != ev('id("game")')
    assert re.fullmatch(r"[0-9a-f-]{36}", ev("uuid()"))
    import time

    assert abs(ev("now()") - time.time() * 1000) < 5000 * UNIT
    assert all(1 <= ev("random(1, 6)") <= 6 for _ in range(200))
    assert 0 <= ev("random()") < 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("msg.user.name", "cannot read 'name' of null"),
        ("msg.n.x", "cannot read 'x' of a number"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ('"a" - 1', "'-' needs numbers, not a string and a number"),
        ("{} + 1", "cannot add an object and a number"),
        ('1 < "2"', "cannot compare a number and a string with '<'"),
        ("1 in 2", "'in' needs an object, array or string on its right, not a number"),
        ('msg.items["x"]', "an index into an array must be a whole number, not a string"),
        ("len(3)", "len() needs a string, array or object, not a number"),
        ('number("x")', "not a number: 'x'"),
        ("-msg.name", "cannot negate a string"),
    ],
)
def test_runtime_errors(text: str, message: str) -> None:
    with pytest.raises(EvaluationError, match=re.escape(message)):
        ev(text)


def test_python_internals_are_unreachable() -> None:
    # Member access is a key lookup in JSON data; there is no attribute access at all.
    for text in (
        "msg.__class__",
        "msg.__dict__",
        "msg._private",
        "users.__class__.__bases__",
        "msg.items.__len__",
        'msg["__class__"]',
    ):
        # Reading a key of an array is an error, never an attribute.
        with contextlib.suppress(EvaluationError):
            assert ev(text) is None, text
    with pytest.raises(ExpressionSyntaxError):
        parse_expression("__import__('os').system('true')")


def test_operators_cannot_build_huge_values() -> None:
    ctx = {"s": "x" * (MAX_STRING // 2 + 1)}
    with pytest.raises(EvaluationError, match="string too long"):
        ev("s + s", ctx)
    with pytest.raises(EvaluationError, match="string too long"):
        ev('"${s}${s}"', ctx)


def test_templates_keep_types_and_prebuild_constants() -> None:
    build, constant = compile_template(
        {"type": "x", "n": "${msg.n}", "t": "n=${msg.n}", "lit": "$${not} an expression"}
    )
    assert not constant
    assert build(CTX) == {"type": "x", "n": 3, "t": "n=3", "lit": "${not} an expression"}
    value = {"type": "welcome", "items": [1, {"a": None}]}
    build, constant = compile_template(value)
    assert constant and build({}) is value


def test_text_of_values() -> None:
    assert [to_text(v) for v in (None, True, 1.0, 1.5, "s", [1, "a"], {"a": 1})] == [
        "null",
        "true",
        "1",
        "1.5",
        "s",
        '[1,"a"]',
        '{"a":1}',
    ]


TEXT = '420["chat",{"text":"hi"}]'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('startsWith(raw, "42")', True),
        ('endsWith(raw, "}]")', True),
        ('startsWith(raw, "43")', False),
        ("slice(raw, 0, 2)", "42"),
        ('slice(raw, 2, indexOf(raw, "["))', "0"),
        ("slice(raw, -2)", "}]"),
        ("slice([1, 2, 3], 1)", [2, 3]),
        ('indexOf(raw, "[")', 3),
        ('indexOf(raw, "nope")', -1),
        ("indexOf([1, 2, 3], 2)", 1),
        ('parse(slice(raw, indexOf(raw, "[")))', ["chat", {"text": "hi"}]),
        ('split("a,b,,c", ",")', ["a", "b", "", "c"]),
        ('split("abc", "")', ["a", "b", "c"]),
        ('join(["a", 1, null, true], "-")', "a-1--true"),
        ("join([1, 2])", "1,2"),
        ('replace("a-b-c", "-", "+")', "a+b+c"),
        ('trim("  padded  ")', "padded"),
        ("chance(1)", True),
        ("chance(0)", False),
        (
            'typeOf("x") + typeOf(1) + typeOf(null) + typeOf([]) + typeOf({}) + typeOf(true)',
            "stringnumbernullarrayobjectboolean",
        ),
    ],
)
def test_string_functions_for_text_protocols(text: str, expected: Any) -> None:
    assert ev(text, {"raw": TEXT}) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('parse("{")', "parse(): not JSON"),
        ('parse("NaN")', "NaN is not JSON"),
        ("parse(3)", "parse() needs JSON text (a string), not a number"),
        ("slice(3, 1)", "slice() needs a string or an array, not a number"),
        ('slice("abc", 1.5)', "slice() needs a whole number"),
        ('replace("abc", "", "x")', "replace() needs a non-empty string to replace"),
        ("chance(2)", "chance() needs a probability from 0 to 1"),
        ('join("abc", ",")', "join() needs an array, not a string"),
        ('split(1, ",")', "split() needs a string, not a number"),
    ],
)
def test_string_functions_say_what_they_need(text: str, message: str) -> None:
    with pytest.raises(EvaluationError, match=re.escape(message)):
        ev(text, {})


def test_replace_and_split_stay_within_the_caps() -> None:
    big = "x" * (MAX_STRING // 2 + 1)
    with pytest.raises(EvaluationError, match="string too long"):
        ev('replace(big, "x", "xx")', {"big": big})
    with pytest.raises(EvaluationError, match="too many items"):
        ev('split(big, "")', {"big": big})


# ---- JSON text -------------------------------------------------------------------------------

_json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_json_values)
def test_to_json_writes_what_json_dumps_writes(value: Any) -> None:
    """Messages are encoded with json's C encoder built once; the text must be json's own."""
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert to_json(value) == expected


def test_to_json_of_containers_json_has_no_type_for() -> None:
    assert to_json({"s": {3, 1, 2}, "b": b"\xffok", "t": (1, "x")}) == (
        '{"s":[1,2,3],"b":"\ufffdok","t":[1,"x"]}'
    )
    assert to_json(float("1e16")) == "1e+16" and to_json(1e-7) == "1e-07"
    for bad in (float("nan"), float("inf"), [float("-inf")]):
        with pytest.raises(EvaluationError, match="NaN and Infinity"):
            to_json(bad)
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(EvaluationError, match=r"nested too deeply|too large"):
        to_json(looped)

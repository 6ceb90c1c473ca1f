"""Expected messages: partial matching, `any`, `matches()`, and the differences reported."""

from __future__ import annotations

from typing import Any

import pytest

from scenario_engine.errors import EvaluationError
from scenario_engine.testing.expectations import compile_expectation, mismatches, show


def expected(template: Any, **names: Any) -> Any:
    return compile_expectation(template)(names)


@pytest.mark.parametrize(
    ("template", "received"),
    [
        ({"type": "a"}, {"type": "a", "extra": [1, 2]}),  # other keys are ignored
        ({"user": {"name": "A"}}, {"user": {"name": "A", "id": 7}}),  # at every depth
        ({"n": 1}, {"n": 1.0}),  # numbers compare as numbers
        ({"id": "${any}"}, {"id": None}),  # any: null too
        ({"id": "${any}"}, {"id": {"deep": [1]}}),
        ({"g": '${matches("^game-[0-9a-f]+$")}'}, {"g": "game-7f3a"}),
        ({"g": "${matches('ame')}"}, {"g": "game"}),  # search, as RegExp.test
        ([1, {"a": "${any}"}], [1, {"a": 2, "b": 3}]),  # arrays item by item
        ("plain text", "plain text"),
        ("bytes", b"bytes"),  # a binary frame, as text
        ({"who": "${name}"}, {"who": "alice"}),  # templates use the names
    ],
)
def test_matches(template: Any, received: Any) -> None:
    assert mismatches(expected(template, name="alice"), received) == []


@pytest.mark.parametrize(
    ("template", "received", "difference"),
    [
        ({"type": "a"}, {"type": "b"}, 'at msg.type: expected "a", received "b"'),
        ({"id": "${any}"}, {}, "at msg.id: missing (expected any)"),
        ({"n": 1}, {"n": "1"}, 'at msg.n: expected 1, received "1"'),
        ({"n": True}, {"n": 1}, "at msg.n: expected true, received 1"),
        ({"a": [1, 2]}, {"a": [1]}, "at msg.a: expected 2 items, received 1"),
        ({"a": [{"b": 1}]}, {"a": [{"b": 2}]}, "at msg.a[0].b: expected 1, received 2"),
        ({"a": {"b": 1}}, {"a": 5}, "at msg.a: expected an object, received 5"),
        ({"a": [1]}, {"a": {}}, "at msg.a: expected an array, received {}"),
        ({"odd key": 1}, {"odd key": 2}, 'at msg["odd key"]: expected 1, received 2'),
        ({"g": '${matches("^x")}'}, {"g": "game"}, "at msg.g: \"game\" does not match '^x'"),
        (
            {"g": '${matches("^x")}'},
            {"g": 5},
            "at msg.g: expected a string matching '^x', received 5",
        ),
        ({"type": "a"}, "not json", 'at msg: expected an object, received "not json"'),
    ],
)
def test_differences(template: Any, received: Any, difference: str) -> None:
    assert mismatches(expected(template), received) == [difference]


def test_differences_are_capped() -> None:
    template = {f"k{i}": i for i in range(20)}
    assert len(mismatches(expected(template), {})) == 5


def test_matchers_show_as_written() -> None:
    value = expected({"id": "${any}", "g": '${matches("^g-")}', "n": [1, "x"]})
    assert show(value) == '{"id": any, "g": matches("^g-"), "n": [1, "x"]}'


def test_a_pattern_computed_at_run_time_is_checked() -> None:
    with pytest.raises(EvaluationError, match="bad regular expression"):
        expected({"g": "${matches(p)}"}, p="(")
    with pytest.raises(EvaluationError, match="matches\\(\\) takes a string"):
        expected({"g": "${matches(p)}"}, p=5)


def test_a_message_too_deep_to_show_is_named_so() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert show(deep) == "<nested too deep to show>"

"""Whatever the input, the front ends answer with a program or ScenarioErrors, never a crash.

Inputs: random text, random YAML, and mutations of every scenario in scenarios/ (characters
deleted, duplicated, replaced; lines swapped; keywords and brackets inserted).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import SCENARIOS

from scenario_engine.errors import ScenarioError
from scenario_engine.language.loader import load_source
from scenario_engine.language.source import Source

TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(SCENARIOS.glob("*.*"))}
FRAGMENTS = [
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    '"',
    "'",
    "${",
    "$${",
    "\\",
    ":",
    ",",
    "\n",
    "#",
    "on",
    "message",
    "type",
    "route",
    "send",
    "broadcast",
    "to",
    "include self",
    "reject",
    "accept",
    "auth",
    "let",
    "=",
    "==",
    "msg.",
    "conn.",
    "&&",
    "!",
    "- ",
    "  ",
    "\t",
    "routes:",
    "do:",
    "\x00",
    "\ufeff",
    "é",
    "1e999",
    "99999999999999999",
]

fuzz_settings = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def check_never_crashes(name: str, text: str) -> None:
    loaded, errors = load_source(Source(name, text))
    assert (loaded is None) == bool(errors)
    for error in errors:
        assert isinstance(error, ScenarioError)
        assert error.line >= 1 and error.col >= 1
        error.format_text()


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(TEXTS)))
    text = TEXTS[name]
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, min(len(text), i + 12)))
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "replace", "swap"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(FRAGMENTS)) + text[i:]
        elif op == "replace":
            text = text[:i] + draw(st.text(max_size=3)) + text[j:]
        else:
            lines = text.split("\n")
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return name, text


@pytest.mark.slow
@fuzz_settings
@given(mutated())
def test_mutated_scenarios_only_produce_scenario_errors(case: tuple[str, str]) -> None:
    check_never_crashes(*case)


@fuzz_settings
@given(
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=3), max_size=60).map("".join),
    st.sampled_from(["x.mock", "x.yaml"]),
)
def test_random_text_only_produces_scenario_errors(text: str, name: str) -> None:
    check_never_crashes(name, text)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "routes",
                        "path",
                        "on",
                        "message",
                        "do",
                        "send",
                        "type",
                        "auth",
                        "reject",
                        "code",
                        "prefix",
                        "let",
                        "where",
                        "broadcast",
                        "to",
                    ]
                ),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_random_yaml_documents_only_produce_scenario_errors(document: object) -> None:
    import yaml

    check_never_crashes("x.yaml", yaml.safe_dump(document))


def test_deep_nesting_is_an_error_not_a_recursion_error() -> None:
    for depth in (150, 10_000, 200_000):
        check_never_crashes(
            "deep.mock", "route /ws { on connect { send " + "[" * depth + "1" + "]" * depth + " } }"
        )
        check_never_crashes("deep.mock", "let x = " + "(" * depth + "1" + ")" * depth)
        check_never_crashes("deep.yaml", "routes: " + "[" * depth + "]" * depth)
        check_never_crashes(
            "deep.yaml", "a:\n" + "".join(" " * i + "- \n" for i in range(min(depth, 3000)))
        )


def test_long_operator_chains_are_an_error_not_a_recursion_error() -> None:
    chain = " + ".join(["1"] * 5000)
    _, errors = load_source(Source("chain.mock", f"route /ws {{ on connect {{ send {chain} }} }}"))
    assert errors and "nested too deeply" in errors[0].message
    _, errors = load_source(
        Source("bang.mock", "route /ws { on connect { send " + "!" * 5000 + "true } }")
    )
    assert errors and "nested too deeply" in errors[0].message


@pytest.mark.slow
def test_huge_file_is_parsed_or_rejected_without_crashing() -> None:
    handlers = "".join(f'  on message type "t{i}" {{ send {{ n: {i} }} }}\n' for i in range(20_000))
    loaded, errors = load_source(Source("huge.mock", f"route /ws {{\n{handlers}}}\n"))
    assert errors == [] and loaded is not None
    assert len(loaded.ir["routes"][0]["on"]["message"]) == 20_000


def check_converts_or_says_why(name: str, text: str) -> None:
    """A file check accepts converts to the other spelling, or convert reports a ScenarioError
    (an EmitError at a pointer), never an internal error; what it writes reads back clean."""
    from scenario_engine.errors import EmitError
    from scenario_engine.language.emit import emit_mock, emit_yaml

    loaded, _ = load_source(Source(name, text))
    if loaded is None:
        return
    try:
        mock = emit_mock(loaded.ir)
    except EmitError:
        pass
    else:
        assert load_source(Source("converted.mock", mock))[1] == [], mock
    assert load_source(Source("converted.yaml", emit_yaml(loaded.ir)))[1] == []


@pytest.mark.slow
@fuzz_settings
@given(mutated())
def test_mutated_scenarios_that_check_clean_convert(case: tuple[str, str]) -> None:
    check_converts_or_says_why(*case)

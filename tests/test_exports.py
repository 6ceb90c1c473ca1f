"""The public API: what ``scenario_engine`` exports, and that importing it costs nothing."""

from __future__ import annotations

import subprocess
import sys

from support import ROOT

import scenario_engine

PUBLIC = {
    # errors
    "ActionError",
    "AdminError",
    "BackplaneError",
    "ConstantError",
    "EmitError",
    "EvaluationError",
    "ExpressionSyntaxError",
    "JournalError",
    "QuantityError",
    "ScenarioEngineError",
    "ScenarioError",
    "ScenarioErrors",
    "ScenarioTestFailed",
    "StringSyntaxError",
    "UsageError",
    # reading, checking and writing scenarios
    "SCHEMA",
    "Loaded",
    "Source",
    "SourceMap",
    "Span",
    "emit_mock",
    "emit_yaml",
    "load_file",
    "load_paths",
    "load_source",
    "load_yaml",
    "parse_mock",
    "schema_text",
    "validate",
    # serving them
    "BackgroundServer",
    "Journal",
    "Program",
    "ScenarioServer",
    "compile_program",
    "load_program",
}

#: What a pytest run of someone who has the package installed must not pay for.
HEAVY = (
    "lark",
    "jsonschema",
    "yaml",
    "websockets",
    "scenario_engine.runtime",
    "scenario_engine.language",
)


def test_the_public_names_are_exported() -> None:
    assert set(scenario_engine.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(scenario_engine, name) is not None, name
    assert set(dir(scenario_engine)) >= PUBLIC


def test_every_exception_derives_from_the_base() -> None:
    for name in PUBLIC:
        value = getattr(scenario_engine, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, scenario_engine.ScenarioEngineError), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        scenario_engine.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as err:
        assert "NoSuchThing" in str(err)
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_package_and_its_pytest_plugin_loads_nothing_heavy() -> None:
    code = (
        "import sys, scenario_engine, scenario_engine.testing.pytest_plugin\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"

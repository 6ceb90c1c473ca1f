"""scenario-engine: WebSocket mock servers written as declarative scenario files.

The pipeline (docs/architecture.md): a `.mock` or YAML file → IR + source map → validation →
a compiled Program → the engine, served over WebSocket.

Every name below is imported on first use (PEP 562), so ``import scenario_engine`` — which the
pytest plugin's entry point does in every pytest run of a machine where the package is
installed — loads none of lark, jsonschema, yaml or websockets.
"""

from __future__ import annotations

import importlib

# typing itself is not imported: mypy reads any TYPE_CHECKING as true.
TYPE_CHECKING = False

__version__ = "0.1.0"

#: Public name → the module that defines it.
_EXPORTS = {
    # errors
    "ActionError": "errors",
    "AdminError": "errors",
    "BackplaneError": "errors",
    "ConstantError": "errors",
    "EmitError": "errors",
    "EvaluationError": "errors",
    "ExpressionSyntaxError": "errors",
    "JournalError": "errors",
    "QuantityError": "errors",
    "ScenarioEngineError": "errors",
    "ScenarioError": "errors",
    "ScenarioErrors": "errors",
    "ScenarioTestFailed": "errors",
    "StringSyntaxError": "errors",
    "UsageError": "errors",
    # language: reading, checking and writing scenarios
    "SCHEMA": "language.schema",
    "Loaded": "language.ir",
    "Source": "language.source",
    "SourceMap": "language.source",
    "Span": "language.source",
    "emit_mock": "language.emit",
    "emit_yaml": "language.emit",
    "load_file": "language.loader",
    "load_paths": "language.loader",
    "load_source": "language.loader",
    "load_yaml": "language.yaml_frontend",
    "parse_mock": "language.mock_frontend",
    "schema_text": "language.schema",
    "validate": "language.validate",
    # runtime: serving them
    "BackgroundServer": "runtime.background",
    "Journal": "runtime.journal",
    "Program": "runtime.program",
    "ScenarioServer": "runtime.server",
    "compile_program": "runtime.compiler",
    "load_program": "runtime.compiler",
}

__all__ = [
    "SCHEMA",
    "ActionError",
    "AdminError",
    "BackgroundServer",
    "BackplaneError",
    "ConstantError",
    "EmitError",
    "EvaluationError",
    "ExpressionSyntaxError",
    "Journal",
    "JournalError",
    "Loaded",
    "Program",
    "QuantityError",
    "ScenarioEngineError",
    "ScenarioError",
    "ScenarioErrors",
    "ScenarioServer",
    "ScenarioTestFailed",
    "Source",
    "SourceMap",
    "Span",
    "StringSyntaxError",
    "UsageError",
    "compile_program",
    "emit_mock",
    "emit_yaml",
    "load_file",
    "load_paths",
    "load_program",
    "load_source",
    "load_yaml",
    "parse_mock",
    "schema_text",
    "validate",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next access finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from .errors import (
        ActionError,
        AdminError,
        BackplaneError,
        ConstantError,
        EmitError,
        EvaluationError,
        ExpressionSyntaxError,
        JournalError,
        QuantityError,
        ScenarioEngineError,
        ScenarioError,
        ScenarioErrors,
        ScenarioTestFailed,
        StringSyntaxError,
        UsageError,
    )
    from .language.emit import emit_mock, emit_yaml
    from .language.ir import Loaded
    from .language.loader import load_file, load_paths, load_source
    from .language.mock_frontend import parse_mock
    from .language.schema import SCHEMA, schema_text
    from .language.source import Source, SourceMap, Span
    from .language.validate import validate
    from .language.yaml_frontend import load_yaml
    from .runtime.background import BackgroundServer
    from .runtime.compiler import compile_program, load_program
    from .runtime.journal import Journal
    from .runtime.program import Program
    from .runtime.server import ScenarioServer

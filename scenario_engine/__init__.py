"""scenario-engine: WebSocket mock servers written as declarative scenario files.

The pipeline (see docs/ir.md): a `.mock` or YAML file → IR + source map → validation.
"""

from .errors import ScenarioEngineError, ScenarioError, ScenarioErrors
from .language.loader import UsageError, load_file, load_paths, load_source
from .language.mock_frontend import parse_mock
from .language.schema import SCHEMA, schema_text
from .language.source import Source, SourceMap, Span
from .language.validate import Loaded, validate
from .language.yaml_frontend import load_yaml

__all__ = [
    "SCHEMA",
    "Loaded",
    "ScenarioEngineError",
    "ScenarioError",
    "ScenarioErrors",
    "Source",
    "SourceMap",
    "Span",
    "UsageError",
    "load_file",
    "load_paths",
    "load_source",
    "load_yaml",
    "parse_mock",
    "schema_text",
    "validate",
]

__version__ = "0.1.0"

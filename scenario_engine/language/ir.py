"""The intermediate representation (IR) both spellings compile to, and a loaded file.

docs/ir.md describes the IR; the JSON Schema (``scenario.schema.json``) is its contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .source import Source, SourceMap, escape_pointer

__all__ = ["Loaded", "template_strings"]


@dataclass
class Loaded:
    """A scenario file after its front end: the IR and the map back to the file."""

    source: Source
    ir: dict[str, Any]
    source_map: SourceMap = field(default_factory=dict)
    #: The top-level lets' values, once validation has evaluated them.
    constants: dict[str, Any] | None = None

    @property
    def spelling(self) -> str:
        """"mock" or "yaml": which front end produced the IR."""
        return "mock" if self.source.name.endswith(".mock") else "yaml"


def template_strings(value: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """(pointer, string) for every string inside a template value that embeds an expression."""
    stack: list[tuple[Any, str]] = [(value, pointer)]
    while stack:
        item, ptr = stack.pop()
        if isinstance(item, str):
            if "${" in item:
                yield ptr, item
        elif isinstance(item, dict):
            stack.extend((v, f"{ptr}/{escape_pointer(k)}") for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{ptr}/{i}") for i, v in reversed(list(enumerate(item))))

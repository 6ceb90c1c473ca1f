"""Errors raised by scenario-engine.

The hierarchy::

    ScenarioEngineError            base of everything this package raises on purpose
    ├── ScenarioError              one diagnostic about a scenario file: position, message, hint
    └── ScenarioErrors             every diagnostic of one or more files, raised together

A ``ScenarioError`` keeps structured fields; ``format_text`` renders it the way a compiler does::

    scenarios/chat.mock:14:5: error: unknown action 'brodcast'
       14 |     brodcast { type: "typing" }
          |     ^^^^^^^^
      hint: did you mean 'broadcast'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ScenarioEngineError",
    "ScenarioError",
    "ScenarioErrors",
    "did_you_mean",
]


class ScenarioEngineError(Exception):
    """Base class of the errors this package raises on purpose."""


@dataclass(frozen=True, eq=True)
class ScenarioError(ScenarioEngineError):
    """One diagnostic about a scenario file.

    ``line`` and ``col`` are 1-based; ``end_col`` is exclusive and only meaningful on ``line``.
    ``source_line`` is the text of ``line`` (without its newline), kept so the error can be
    rendered without reopening the file.
    """

    file: str
    line: int
    col: int
    message: str
    hint: str | None = None
    end_col: int | None = None
    source_line: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: error: {self.message}"

    def format_text(self) -> str:
        """Render as ``file:line:col: error: …``, the source line, a caret and the hint."""
        lines = [str(self)]
        if self.source_line is not None:
            shown = self.source_line.expandtabs(1)
            gutter = f"{self.line:>5} | "
            lines.append(f"{gutter}{shown}")
            start = max(self.col - 1, 0)
            width = 1
            if self.end_col is not None and self.end_col > self.col:
                width = self.end_col - self.col
            width = max(1, min(width, max(len(shown) - start, 1)))
            lines.append(" " * (len(gutter) - 2) + "| " + " " * start + "^" * width)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        """The diagnostic as plain JSON-able data (``check --format json``)."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.col,
            "endColumn": self.end_col,
            "severity": "error",
            "message": self.message,
            "hint": self.hint,
        }

    def format_github(self) -> str:
        """Render as a GitHub Actions workflow command, which annotates the file in a PR."""
        text = self.message + (f" ({self.hint})" if self.hint else "")
        props = f"file={_escape_property(self.file)},line={self.line},col={self.col}"
        if self.end_col is not None and self.end_col > self.col:
            props += f",endColumn={self.end_col}"
        return f"::error {props}::{_escape_data(text)}"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.col, self.message)


class ScenarioErrors(ScenarioEngineError):
    """Every diagnostic found in one or more scenario files, in file and position order."""

    def __init__(self, errors: Iterable[ScenarioError]) -> None:
        self.errors: list[ScenarioError] = sorted(set(errors), key=ScenarioError.sort_key)
        super().__init__(self.errors)

    def __str__(self) -> str:
        return self.format_text()

    def format_text(self) -> str:
        """Every error as ``ScenarioError.format_text`` renders it, a blank line between."""
        return "\n\n".join(e.format_text() for e in self.errors)

    def count_text(self) -> str:
        """'1 error', '3 errors'."""
        return f"{len(self.errors)} error{'' if len(self.errors) == 1 else 's'}"


def did_you_mean(word: str, candidates: Sequence[str] | Iterable[str]) -> str | None:
    """A hint naming the candidate closest to ``word``, or None when none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else None


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")

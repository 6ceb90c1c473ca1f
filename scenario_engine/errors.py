"""Every exception scenario-engine raises on purpose, in one tree.

The hierarchy::

    ScenarioEngineError            base of everything this package raises on purpose
    ├── ScenarioError              one diagnostic about a scenario file: position, message, hint
    ├── ScenarioErrors             every diagnostic of one or more files, raised together
    ├── UsageError                 a command or call given something it cannot use (exit 2)
    │   └── JournalError           a line of a journal file (a recording) that is not an event
    ├── QuantityError              a duration or size that does not read (also ValueError)
    ├── StringSyntaxError          a bad escape or an unclosed ``${`` in a string (ValueError)
    ├── ExpressionSyntaxError      an expression that does not parse (also ValueError)
    ├── EvaluationError            an expression or action failed on the values it met
    │   └── ConstantError          a top-level constant of a file could not be evaluated
    ├── ActionError                an action failed at run time, at the scenario's file:line
    ├── EmitError                  an IR that cannot be written as text (also ValueError)
    ├── AdminError                 a request the admin API refuses, with its HTTP status
    ├── BackplaneError             the backplane (Redis) cannot be reached (serve exits 1)
    └── ScenarioTestFailed         a conversation test failed under pytest (AssertionError)

Errors about a file carry their position: ``ScenarioError`` itself, or offsets into the text
that was parsed (``StringSyntaxError``, ``ExpressionSyntaxError``), or an IR pointer
(``EmitError``), which the caller turns into a ``ScenarioError`` with the file's source map.
Each keeps structured fields and builds its message from them.

A ``ScenarioError`` renders the way a compiler's errors do (``format_text``)::

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
    "did_you_mean",
]


class ScenarioEngineError(Exception):
    """Base class of the errors this package raises on purpose."""


@dataclass(frozen=True, eq=True)
class ScenarioError(ScenarioEngineError):
    """One diagnostic about a scenario file.

    ``line`` and ``col`` are 1-based; ``end_col`` is exclusive and only meaningful on ``line``.
    ``source_line`` is the text of ``line`` (without its newline), kept so the error can be
    rendered without reopening the file. ``severity`` is "error", or "warning" for a finding
    that does not make the file invalid.
    """

    file: str
    line: int
    col: int
    message: str
    hint: str | None = None
    end_col: int | None = None
    source_line: str | None = field(default=None, compare=False)
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"

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
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }

    def format_github(self) -> str:
        """Render as a GitHub Actions workflow command, which annotates the file in a PR."""
        text = self.message + (f" ({self.hint})" if self.hint else "")
        props = f"file={_escape_property(self.file)},line={self.line},col={self.col}"
        if self.end_col is not None and self.end_col > self.col:
            props += f",endColumn={self.end_col}"
        return f"::{self.severity} {props}::{_escape_data(text)}"

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


class UsageError(ScenarioEngineError):
    """A command or a call was given something it cannot use: a path that is not a scenario,
    options that do not go together, a target that is not a WebSocket URL. The command line
    prints it as ``scenario-engine: error: …`` and exits with status 2."""


class JournalError(UsageError):
    """A journal file, read as a recording, has a line that is not an event: ``file`` and
    ``line`` say where (1-based), ``message`` what is wrong. It prints as ``FILE:LINE: …``."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class QuantityError(ScenarioEngineError, ValueError):
    """A duration (``30s``) or size (``1KB``) that does not read; the message says how to
    write one."""


class StringSyntaxError(ScenarioEngineError, ValueError):
    """A string literal or template that does not read: a bad escape, an unclosed ``${``.
    ``offset`` is where in the string scanned."""

    def __init__(self, message: str, offset: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


class ExpressionSyntaxError(ScenarioEngineError, ValueError):
    """An expression that does not parse; ``start``/``end`` are offsets in the text parsed."""

    def __init__(self, message: str, hint: str | None, start: int, end: int) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.start = start
        self.end = end


class EvaluationError(ScenarioEngineError):
    """An expression failed on the values it met (a type error, a division by zero, a value
    too big) or an action could not do what it was asked (a close reason too long). Handlers
    turn it into an ``ActionError`` at the action's position."""


class ConstantError(EvaluationError):
    """A top-level constant could not be evaluated; ``name`` says which."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ActionError(ScenarioEngineError):
    """An action failed at run time; ``location`` is the scenario's ``file:line:col``."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class EmitError(ScenarioEngineError, ValueError):
    """The IR cannot be written: it is malformed (not an IR per docs/ir.md) at ``pointer``, or
    has no spelling in the language asked for."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer = pointer
        self.message = message


class AdminError(ScenarioEngineError):
    """A request the admin API refuses: the HTTP ``status`` and what to say."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BackplaneError(ScenarioEngineError):
    """The backplane (Redis) cannot be reached: at start-up, ``serve`` prints it as one line
    and exits with status 1; while serving, an outage is logged and served through."""


class ScenarioTestFailed(ScenarioEngineError, AssertionError):
    """A conversation test failed under pytest; the message is its failure report."""


def did_you_mean(word: str, candidates: Sequence[str] | Iterable[str]) -> str | None:
    """A hint naming the candidate closest to ``word``, or None when none is close.

    Close means difflib's ratio of 0.6, and, below 0.8, the same first letter: typos rarely
    touch it, while words merely sharing letters (sleep and leave) are not what was meant.
    """
    for match in difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6):
        similar = difflib.SequenceMatcher(None, word, match).ratio() >= 0.8
        if similar or word[:1].lower() == match[:1].lower():
            return f"did you mean '{match}'?"
    return None


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")

"""Source text, positions, and the source map from IR nodes back to file:line:col."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ScenarioError

__all__ = ["Source", "SourceMap", "Span", "escape_pointer", "locate"]


@dataclass(frozen=True, slots=True)
class Span:
    """Where an IR node came from: 1-based line and column; ``end_col`` is exclusive.

    ``origin`` is where character 0 of a string node's value would stand in the file, when the
    value is a verbatim copy of the source (so that a position inside an embedded expression can
    be found by adding its offset); None where the value was transformed (escapes, folding).
    """

    line: int
    col: int
    end_line: int
    end_col: int
    origin: tuple[int, int] | None = None

    def at_offset(self, offset: int, text: str) -> tuple[int, int]:
        """The file position of character ``offset`` of ``text``, the string this span holds."""
        if self.origin is None:
            return self.line, self.col
        line, col = self.origin
        newlines = text.count("\n", 0, offset)
        if newlines == 0:
            return line, col + offset
        return line + newlines, offset - text.rfind("\n", 0, offset)


#: JSON pointer (RFC 6901) of an IR node → where it came from.
SourceMap = dict[str, Span]

#: Where a pointer that nothing in the source map covers is reported: the file's start.
_FILE_START = Span(1, 1, 1, 1)


def escape_pointer(key: str) -> str:
    """``key`` as one reference token of a JSON pointer (RFC 6901: ``~0`` for ``~``, ``~1``
    for ``/``)."""
    return key.replace("~", "~0").replace("/", "~1")


def locate(source_map: SourceMap, pointer: str) -> Span:
    """The span of the IR node at ``pointer`` or, when the source map lacks it (a value the
    front end made up, a key's ``#key`` entry), of its nearest ancestor that has one; the
    file's first character when none has."""
    while pointer not in source_map and pointer:
        pointer = pointer.rsplit("/", 1)[0]
    return source_map.get(pointer, _FILE_START)


class Source:
    """A scenario file's name and text, able to render any of its positions in an error."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self._lines: list[str] | None = None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def line_text(self, line: int) -> str | None:
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1].rstrip("\r")
        return None

    def error(
        self,
        line: int,
        col: int,
        message: str,
        hint: str | None = None,
        end_col: int | None = None,
    ) -> ScenarioError:
        """A ScenarioError at ``line``:``col`` of this file, carrying the source line."""
        return ScenarioError(
            file=self.name,
            line=line,
            col=col,
            message=message,
            hint=hint,
            end_col=end_col,
            source_line=self.line_text(line),
        )

    def error_at(self, span: Span, message: str, hint: str | None = None) -> ScenarioError:
        end_col = span.end_col if span.end_line == span.line else None
        return self.error(span.line, span.col, message, hint, end_col)

"""`.mock` text → the same scenario in the canonical layout, its comments kept (``fmt``).

The layout is ``emit.emit_mock``'s: the file is loaded, its IR emitted, and the comments of
the original put back into the emitted text. Comments are not in the IR, so each is attached
to a statement of the original by position, and the statement is found again in the emitted
text through the source map: both texts have the same IR, so one JSON pointer names the
statement in each. A comment on its own line goes before the statement that follows it in its
block (or before the block's ``}`` when none follows); a comment at the end of a line stays at
the end of the statement's first or last line. A comment inside a multi-line expression, which
the canonical layout may put on one line, moves to the line before its statement.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import ScenarioErrors
from .emit import emit_mock
from .ir import Document, Loaded
from .mock_frontend import parse_mock
from .source import Source, SourceMap
from .validate import validate

__all__ = ["format_mock"]

#: The JSON pointers of actions: in a handler or a route timer, then in the blocks of ifs and
#: timers (a payload's keys named like these are not actions).
_ACTION = re.compile(
    r"/routes/\d+/(on/(connect|close|error)/\d+|(on/message|every)/\d+/do/\d+)"
    r"(/(then|else|every/do|after/do)/\d+)*"
)
#: The JSON pointers of the IR nodes that are statements of a `.mock` file (a line or a block).
_STATEMENT = re.compile(
    r"/prefix|/state|/let/[^/#]+"
    r"|/routes/\d+(/(heartbeat|compression|maxMessage|maxConnections|maxRooms|maxTimers"
    r"|maxSession|origins|subprotocols|latency|auth(/\d+)?|every/\d+|on/(connect|close|error)"
    r"|on/message/\d+))?"
    r"|/tests/\d+(/steps/\d+)?"
    rf"|{_ACTION.pattern}"
)
#: Statements that are blocks whatever they hold; an action is one when it is an if or a timer.
_BLOCK = re.compile(r"/(routes|tests)/\d+|/routes/\d+/(auth|on/\w+|(on/message|every)/\d+)")

_Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class _Comment:
    line: int
    col: int
    text: str
    own_line: bool  # nothing but blanks before it on its line
    blank_before: bool  # the line before it is blank


@dataclass(slots=True)
class _Statement:
    start: _Position
    end: _Position
    block: bool
    blank_before: bool = False
    before: list[_Comment] = field(default_factory=list)  # own lines, before its first line
    closing: list[_Comment] = field(default_factory=list)  # own lines, before its '}'
    after_start: list[str] = field(default_factory=list)  # at the end of its first line
    after_end: list[str] = field(default_factory=list)  # at the end of its last line


def format_mock(text: str, name: str = "<text>") -> str:
    """``text``, a `.mock` file, in the canonical layout with its comments where they were.

    The result loads as the same IR, and formatting it again changes nothing. Raises
    ScenarioErrors, as the loader reports them, when the file has errors."""
    source = Source(name, text)
    ir, source_map, errors = parse_mock(source)
    if ir is None or errors:
        raise ScenarioErrors(errors)
    loaded = Loaded(source, ir, source_map)
    errors = validate(loaded)
    if errors:
        raise ScenarioErrors(errors)
    return _relayout(text, ir, source_map, name)


def _relayout(text: str, ir: Document, source_map: SourceMap, name: str) -> str:
    """The canonical text of ``ir``, parsed from ``text`` (whose positions ``source_map``
    holds), with the comments of ``text`` put back."""
    canonical = emit_mock(ir)
    new_ir, new_map, new_errors = parse_mock(Source(name, canonical))
    if new_ir is None or new_errors:  # emit_mock's contract broken: a bug, not the user's
        raise AssertionError(f"the canonical text of {name} does not parse: {new_errors}")
    comments = _comments(text)
    old = _statements(source_map, ir, text)
    new = _statements(new_map, ir, canonical)
    # Comments inside an expression are in the IR (expressions are copied verbatim), so
    # the emitted text has them already.
    kept = Counter(c.text for c in _comments(canonical))
    tail: list[_Comment] = []
    for comment in comments:
        if kept[comment.text]:
            kept[comment.text] -= 1
            continue
        _attach(comment, old, tail)
    for pointer, statement in old.items():
        if pointer in new:
            moved = new[pointer]
            moved.blank_before = statement.blank_before
            moved.before, moved.closing = statement.before, statement.closing
            moved.after_start, moved.after_end = statement.after_start, statement.after_end
    return _render(canonical, new, tail)


def _comments(text: str) -> list[_Comment]:
    """The comments of a `.mock` text, found as the lexer finds them: a ``#`` outside string
    literals (which never span lines) starts one."""
    found: list[_Comment] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        quote = ""
        i = 0
        while i < len(line):
            c = line[i]
            if quote:
                if c == "\\":
                    i += 1
                elif c == quote:
                    quote = ""
            elif c in "\"'":
                quote = c
            elif c == "#":
                own = not line[:i].strip()
                blank = own and number > 1 and not lines[number - 2].strip()
                found.append(_Comment(number, i + 1, line[i:].rstrip(), own, blank))
                break
            i += 1
    return found


def _statements(source_map: SourceMap, ir: Document, text: str) -> dict[str, _Statement]:
    lines = text.split("\n")
    found: dict[str, _Statement] = {}
    for pointer, span in source_map.items():
        if not _STATEMENT.fullmatch(pointer):
            continue
        start = (span.line, span.col)
        if pointer.startswith("/let/") and pointer + "#key" in source_map:
            key = source_map[pointer + "#key"]
            start = (key.line, key.col)
        line = start[0]
        found[pointer] = _Statement(
            start=start,
            end=(span.end_line, span.end_col),
            block=_is_block(pointer, _value(ir, pointer)),
            blank_before=line > 1 and not lines[line - 2].strip(),
        )
    return found


def _value(ir: Any, pointer: str) -> Any:
    node = ir
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _is_block(pointer: str, value: Any) -> bool:
    """Whether the statement holds a block of statements (between whose braces comments
    may stand)."""
    if _BLOCK.fullmatch(pointer):
        return True
    if _ACTION.fullmatch(pointer) and isinstance(value, dict):
        return bool(value.keys() & {"if", "every", "after"})
    return False


def _attach(comment: _Comment, statements: dict[str, _Statement], tail: list[_Comment]) -> None:
    at = (comment.line, comment.col)
    if not comment.own_line:
        # The comment follows the last statement start or end of its line: it stays there
        # (at an end, the outermost of the statements ending together).
        marks: list[tuple[tuple[_Position, int, _Position], list[str]]] = []
        for s in statements.values():
            outermost = (-s.start[0], -s.start[1])
            if s.end[0] == comment.line and s.end <= at:
                marks.append(((s.end, 1, outermost), s.after_end))
            elif s.start[0] == comment.line and s.start < at:
                marks.append(((s.start, 0, outermost), s.after_start))
        if marks:
            max(marks, key=lambda mark: mark[0])[1].append(comment.text)
            return
    inside = [s for s in statements.values() if s.start < at < s.end]
    owner = max(inside, key=lambda s: s.start) if inside else None
    if owner is not None and not owner.block:
        owner.before.append(comment)
        return
    following = [
        s for s in statements.values() if s.start > at and (owner is None or s.start < owner.end)
    ]
    if following:
        min(following, key=lambda s: s.start).before.append(comment)
    elif owner is not None:
        owner.closing.append(comment)
    else:
        tail.append(comment)


def _render(canonical: str, statements: dict[str, _Statement], tail: list[_Comment]) -> str:
    lines = canonical.split("\n")[:-1]  # the text ends with a line break
    starting: dict[int, list[_Statement]] = {}
    ending: dict[int, list[_Statement]] = {}
    for statement in statements.values():
        starting.setdefault(statement.start[0], []).append(statement)
        ending.setdefault(statement.end[0], []).append(statement)
    out: list[str] = []

    def put(indent: str, comments: list[_Comment]) -> None:
        for comment in comments:
            if comment.blank_before:
                _blank(out)
            out.append(indent + comment.text)

    for number, line in enumerate(lines, 1):
        indent = line[: len(line) - len(line.lstrip())]
        here = sorted(starting.get(number, []), key=lambda s: s.start)
        closing = [s for s in ending.get(number, []) if s.closing]
        for statement in closing:
            if statement.start[0] < number:
                put(indent + "  ", statement.closing)
        for statement in here:
            put(indent, statement.before)
        if any(s.blank_before for s in here):
            _blank(out)
        trailing = [t for s in here for t in s.after_start]
        trailing += [t for s in ending.get(number, []) for t in s.after_end]
        suffix = "".join("  " + t for t in trailing)
        split = [s for s in closing if s.start[0] == number]
        if split and line.endswith("{}"):
            # An empty block with comments inside: opened, so they have lines of their own.
            out.append(line[:-1])
            put(indent + "  ", split[0].closing)
            out.append(indent + "}" + suffix)
        else:
            out.append(line + suffix)
    put("", tail)
    return "\n".join(out) + "\n"


def _blank(out: list[str]) -> None:
    """A blank line, unless there is one already or it would open a block or the file."""
    if out and out[-1].strip() and not out[-1].endswith("{"):
        out.append("")

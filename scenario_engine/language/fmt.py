"""`.mock` text → the same scenario in the canonical layout, its comments kept (``fmt``).

The layout is ``emit.emit_mock``'s: the file is loaded, its IR emitted, and the comments of
the original put back into the emitted text. Comments are not in the IR, so each is attached by
position to a node of the original — a statement, a member of an object or array value, or a
block or value between brackets — and the node is found again in the emitted text through the
source map: both texts have the same IR, so one JSON pointer names the node in each.

* A comment on its own line goes before the statement or member that follows it between the
  same brackets, or before the closing bracket when none follows. One inside a statement's
  header (between its words, where the canonical layout has no line break) goes before the
  statement; one between an ``if``'s ``}`` and its ``else`` goes into the ``else`` branch.
* A comment at the end of a line follows the last thing on that line that the canonical layout
  keeps at the end of a line: a statement's or member's start or end, or an opening or closing
  bracket. ``} else {  # …`` stays after the ``else``'s ``{``, ``"a": 1,  # …`` after its member.
* An object or array value that holds comments is written open, one member per line (an empty
  block or value too), so that each comment keeps its line; without comments, a value is on one
  line when it fits, as ``emit_mock`` writes it.
* A comment inside an expression is part of the expression's text, which the IR copies
  verbatim: the emitted text has it already.

One blank line of the original is kept before a statement, and before a comment.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ScenarioErrors
from .emit import emit_mock
from .ir import Document, Loaded
from .mock_frontend import parse_mock
from .source import Source, SourceMap, Span
from .validate import validate

__all__ = ["format_mock"]

#: The JSON pointers of actions: in a handler or a route timer, then in the blocks of ifs and
#: timers (a payload's keys named like these are not actions).
_ACTION = re.compile(
    r"/routes/\d+/(on/(connect|close|error)/\d+|(on/message|every)/\d+/do/\d+)"
    r"(/(then|else|every/do|after/do)/\d+)*"
)
#: A constant: a `let` of the file.
_CONSTANT = re.compile(r"/let/[^/#]+")
#: The JSON pointers of the IR nodes that are statements of a `.mock` file (a line or a block).
_STATEMENT = re.compile(
    rf"/prefix|/state|{_CONSTANT.pattern}"
    r"|/routes/\d+(/(heartbeat|compression|maxMessage|maxConnections|maxRooms|maxTimers"
    r"|maxSession|origins|subprotocols|latency|auth(/\d+)?|every/\d+|on/(connect|close|error)"
    r"|on/message/\d+))?"
    r"|/tests/\d+(/steps/\d+)?"
    rf"|{_ACTION.pattern}"
)
#: The statements that are blocks themselves (other blocks are named by their list of
#: statements: a handler's or a timer's ``…/do``, an if's ``…/then`` and ``…/else``, a test's
#: ``…/steps``).
_BLOCK_STATEMENT = re.compile(r"/routes/\d+(/auth|/on/(connect|close|error))?")
_BLOCK_LIST = ("/do", "/then", "/else", "/steps")
#: The IR nodes of values (TEMPLATE slots: literal structure stays structure), group 1 naming
#: the value a node is part of.
_VALUE = re.compile(
    rf"({_CONSTANT.pattern}|/state"
    rf"|(?:{_ACTION.pattern}|/routes/\d+/auth/\d+|/tests/\d+/steps/\d+)"
    r"/(?:send|join|leave|log|accept|expect|query|headers|protocols|cancel|broadcast/(?:data|to)"
    r"|(?:ping|pong)/data|(?:let|set)/value|(?:every|after)/as|(?:close|reject)/reason"
    r"|capture/[^/#]+))"
    r"(?:/.*)?",
    re.DOTALL,  # a key may hold a line break
)
#: What matters of a line for finding comments and brackets: comments, string literals (which
#: never span lines, and whose brackets and '#' mean nothing), brackets.
_LEXEMES = re.compile(r"""#.*|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[{}\[\]]""")

_Position = tuple[int, int]  # line and column, 1-based


@dataclass(frozen=True, slots=True)
class _Comment:
    line: int
    col: int
    text: str
    own_line: bool  # nothing but blanks before it on its line
    blank_before: bool  # the line before it is blank
    brackets: tuple[_Position, ...]  # the opening brackets around it, innermost last


@dataclass(slots=True)
class _Anchor:
    """A statement, or a member of an object or array value that is written between brackets:
    what a comment stands before or after."""

    start: _Position
    end: _Position
    blank_before: bool = False
    member: bool = False
    before: list[_Comment] = field(default_factory=list)  # own lines, before its first line
    after_start: list[_Comment] = field(default_factory=list)  # at the end of its first line
    after_end: list[_Comment] = field(default_factory=list)  # at the end of its last line


@dataclass(slots=True)
class _Container:
    """A block of statements or an object or array value, between its brackets."""

    open: _Position
    close: _Position
    value_root: str | None  # for a value, the pointer of the whole value it is part of
    children: list[str] = field(default_factory=list)
    closing: list[_Comment] = field(default_factory=list)  # own lines, before its closing one
    after_open: list[_Comment] = field(default_factory=list)  # at the end of its opening line
    after_close: list[_Comment] = field(default_factory=list)  # at the end of its closing line


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
    layout = _Layout(ir, source_map, text.split("\n"))
    canonical = emit_mock(ir, layout.expand())
    new_ir, new_map, new_errors = parse_mock(Source(name, canonical))
    if new_ir is None or new_errors:  # emit_mock's contract broken: a bug, not the user's
        raise AssertionError(f"the canonical text of {name} does not parse: {new_errors}")
    return _Renderer(canonical, new_map, layout).render()


def _scan(lines: list[str]) -> tuple[list[_Comment], dict[_Position, _Position]]:
    """The comments of a `.mock` text, found as the lexer finds them (a ``#`` outside string
    literals starts one), and its matching brackets (closing → opening)."""
    comments: list[_Comment] = []
    pairs: dict[_Position, _Position] = {}
    stack: list[_Position] = []
    for number, line in enumerate(lines, 1):
        for lexeme in _LEXEMES.finditer(line):
            first = line[lexeme.start()]
            if first in "{[":
                stack.append((number, lexeme.start() + 1))
            elif first in "}]":
                if stack:  # the file parsed: its brackets balance
                    pairs[(number, lexeme.start() + 1)] = stack.pop()
            elif first == "#":
                own = not line[: lexeme.start()].strip()
                blank = own and number > 1 and not lines[number - 2].strip()
                text = lexeme.group().rstrip()
                comments.append(
                    _Comment(number, lexeme.start() + 1, text, own, blank, tuple(stack))
                )
    return comments, pairs


class _Layout:
    """The statements, members, blocks and bracketed values of the original text, and its
    comments attached to them."""

    def __init__(self, ir: Document, source_map: SourceMap, lines: list[str]) -> None:
        self.ir = ir
        self.lines = lines
        self.anchors: dict[str, _Anchor] = {}
        #: The blocks and values between brackets; "" is the file.
        self.containers: dict[str, _Container] = {"": _Container((0, 0), (0, 0), None)}
        self.tail: list[_Comment] = []  # after the last statement of the file
        #: Expressions written over several lines: pointer → their first and last line.
        self.multi_line: dict[str, tuple[int, int]] = {}
        #: Blocks to write open besides those holding comments: an ``else`` that holds one
        #: before its ``if``.
        self.opened: set[str] = set()
        comments, pairs = _scan(lines)
        if not comments:
            # Only the blank lines before statements are kept, then.
            self._statements_after_blanks(source_map)
            return
        self._classify(source_map, pairs)
        trailing = {c.line for c in comments if not c.own_line}
        self._marks = self._marks_on(trailing)
        self._opens = {c.open: key for key, c in self.containers.items() if key}
        self._in_expressions = {
            line: pointer
            for pointer, (first, last) in self.multi_line.items()
            for line in range(first, last)
        }
        self._starts: dict[str, list[_Position]] = {}
        for comment in comments:
            self._attach(comment)

    # ---- the structure of the original ----------------------------------------------------
    def _blank_before(self, line: int) -> bool:
        return line > 1 and not self.lines[line - 2].strip()

    def _statements_after_blanks(self, source_map: SourceMap) -> None:
        for pointer, span in source_map.items():
            if not self._blank_before(span.line):
                continue
            if pointer.endswith("#key"):
                pointer = pointer.removesuffix("#key")
                if not _CONSTANT.fullmatch(pointer):
                    continue
            elif _CONSTANT.fullmatch(pointer) or not _STATEMENT.fullmatch(pointer):
                continue  # a constant starts at its name, its '#key'
            self.anchors[pointer] = _Anchor(
                (span.line, span.col), (span.end_line, span.end_col), blank_before=True
            )

    def _classify(self, source_map: SourceMap, pairs: dict[_Position, _Position]) -> None:
        statements: list[str] = []
        members: list[str] = []
        for pointer, span in source_map.items():
            if pointer.endswith("#key"):
                continue
            value = _VALUE.fullmatch(pointer)
            if value is not None:
                root = value.group(1)
                if pointer != root:
                    members.append(pointer)
                elif not pointer.startswith(("/routes/", "/tests/")):
                    statements.append(pointer)  # a constant, or the state block
                if not self._collection(pointer, root, span, source_map, pairs):
                    self._expression(pointer, span)
            elif _STATEMENT.fullmatch(pointer):
                statements.append(pointer)
                if _BLOCK_STATEMENT.fullmatch(pointer):
                    self._block(pointer, span, source_map, pairs)
            elif pointer.endswith(_BLOCK_LIST):
                self._block(pointer, span, source_map, pairs)
            else:
                self._expression(pointer, span)
        for pointer in statements:
            parent = pointer.rsplit("/", 1)[0]
            while parent not in self.containers:
                parent = parent.rsplit("/", 1)[0]
            self._anchor(pointer, parent, source_map)
        for pointer in members:
            parent = pointer.rsplit("/", 1)[0]
            if parent in self.containers:  # else a value without brackets (`to "room"`)
                self._anchor(pointer, parent, source_map, member=True)

    def _anchor(
        self, pointer: str, parent: str, source_map: SourceMap, member: bool = False
    ) -> None:
        span = source_map[pointer]
        # A constant or an object's member starts at its name.
        key = source_map.get(pointer + "#key", span)
        # Blank lines are kept between statements; in a value, only before a comment.
        blank = not member and self._blank_before(key.line)
        self.anchors[pointer] = _Anchor(
            (key.line, key.col), (span.end_line, span.end_col), blank, member
        )
        self.containers[parent].children.append(pointer)

    def _block(
        self, pointer: str, span: Span, source_map: SourceMap, pairs: dict[_Position, _Position]
    ) -> None:
        close = (span.end_line, span.end_col - 1)
        opening = pairs.get(close)
        if opening is None:
            return
        first = source_map.get(pointer + "/0")
        if pointer.endswith("/else") and first is not None and opening > (first.line, first.col):
            return  # `else if …`: the brackets are the inner if's
        self.containers[pointer] = _Container(opening, close, None)

    def _collection(
        self,
        pointer: str,
        root: str,
        span: Span,
        source_map: SourceMap,
        pairs: dict[_Position, _Position],
    ) -> bool:
        """Records the value at ``pointer`` if it is an object or an array between brackets."""
        close = (span.end_line, span.end_col - 1)
        opening = pairs.get(close)
        if opening is None:
            return False
        if pointer.endswith("/broadcast/to"):  # `to […]`, or one room
            first = source_map.get(pointer + "/0")
            if first is not None and opening >= (first.line, first.col):
                return False  # `to rooms[0]`, `to { … }`: the brackets are the room's
        elif pointer != "/state" and opening != (span.line, span.col):
            return False  # an expression ending with a bracket (`msg.items[0]`)
        self.containers[pointer] = _Container(opening, close, root)
        return True

    def _expression(self, pointer: str, span: Span) -> None:
        if span.end_line > span.line and isinstance(_value(self.ir, pointer), str):
            self.multi_line[pointer] = (span.line, span.end_line)

    def _marks_on(
        self, lines: set[int]
    ) -> dict[int, list[tuple[_Position, int, int, list[_Comment]]]]:
        """The places on ``lines`` that a comment at the end of a line may follow: (position,
        rank, outermost first, where the comment goes)."""
        marks: dict[int, list[tuple[_Position, int, int, list[_Comment]]]] = {}

        def mark(position: _Position, rank: int, pointer: str, target: list[_Comment]) -> None:
            if position[0] in lines:
                marks.setdefault(position[0], []).append((position, rank, -len(pointer), target))

        for pointer, anchor in self.anchors.items():
            mark(anchor.start, 0, pointer, anchor.after_start)
            mark(anchor.end, 3, pointer, anchor.after_end)
        for pointer, container in self.containers.items():
            if pointer:
                mark((container.open[0], container.open[1] + 1), 1, pointer, container.after_open)
                mark(
                    (container.close[0], container.close[1] + 1),
                    2,
                    pointer,
                    container.after_close,
                )
        return marks

    # ---- attaching comments ---------------------------------------------------------------
    def _attach(self, comment: _Comment) -> None:
        at = (comment.line, comment.col)
        expression = self._in_expressions.get(comment.line)
        if expression is not None and comment.text in _value(self.ir, expression):
            return  # in the expression's text, and so in the IR
        if not comment.own_line:
            # After the last mark before it on its line; at one position, a statement's or
            # member's end before a closing bracket (which may stay on one line), and the
            # outermost node.
            before = [m for m in self._marks.get(comment.line, ()) if m[0] <= at]
            if before:
                max(before, key=lambda m: m[:3])[3].append(comment)
                return
        key = next((self._opens[b] for b in reversed(comment.brackets) if b in self._opens), "")
        children = self._children(key)
        starts = self._starts[key]
        i = bisect.bisect_left(starts, at)
        if i and self.anchors[children[i - 1]].end > at:
            self._in_header(children[i - 1], comment)
        elif i < len(children):
            self._before(children[i], comment)
        elif key:
            self.containers[key].closing.append(comment)
        else:
            self.tail.append(comment)

    def _children(self, key: str) -> list[str]:
        """The statements or members directly in a container, in the order of the text."""
        children = self.containers[key].children
        if key not in self._starts:
            children.sort(key=lambda p: (self.anchors[p].start, len(p)))
            self._starts[key] = [self.anchors[p].start for p in children]
        return children

    def _in_header(self, pointer: str, comment: _Comment) -> None:
        """A comment in a statement or member but outside its brackets: between an if's `}`
        and its `else` it goes into the else branch, elsewhere before the statement."""
        then = self.containers.get(pointer + "/then")
        if then is not None and (comment.line, comment.col) > then.close:
            otherwise = pointer + "/else"
            if otherwise in self.containers:
                children = self._children(otherwise)
                if children:
                    self._before(children[0], comment)
                else:
                    self.containers[otherwise].closing.append(comment)
                return
            if otherwise + "/0" in self.anchors:
                self._before(otherwise + "/0", comment)
                return
        self._before(pointer, comment)

    def _before(self, pointer: str, comment: _Comment) -> None:
        self.anchors[pointer].before.append(comment)
        if pointer.endswith("/else/0"):
            self.opened.add(pointer[:-2])  # `else {` keeps a line for it before the `if`

    # ---- what the emitter writes open -----------------------------------------------------
    def expand(self) -> set[str]:
        """The values and blocks to write open: those holding comments, and the values
        around them."""
        expand = set(self.opened)
        for pointer, container in self.containers.items():
            if container.closing or container.after_open:
                self._open(pointer, expand)
            if container.after_close and container.value_root not in (None, pointer):
                self._open(pointer.rsplit("/", 1)[0], expand)
        for pointer, anchor in self.anchors.items():
            if anchor.member and (anchor.before or anchor.after_start or anchor.after_end):
                self._open(pointer.rsplit("/", 1)[0], expand)
        return expand

    def _open(self, pointer: str, expand: set[str]) -> None:
        """Adds the container at ``pointer`` to ``expand`` and, for a value, the values around
        it (those written with brackets: a `to` list of one room may have none)."""
        container = self.containers.get(pointer)
        if container is None:
            return
        expand.add(pointer)
        root = container.value_root
        while root is not None and pointer != root:
            pointer = pointer.rsplit("/", 1)[0]
            if pointer in self.containers:
                expand.add(pointer)


class _Renderer:
    """The canonical text with the comments of the original put back."""

    def __init__(self, canonical: str, new_map: SourceMap, layout: _Layout) -> None:
        self.lines = canonical.split("\n")[:-1]  # the text ends with a line break
        self.new_map = new_map
        self.layout = layout
        #: Before a line: comments with their indentation, and None for a blank line.
        self.inserts: dict[int, list[tuple[str, _Comment] | None]] = {}
        #: At the end of a line.
        self.appends: dict[int, list[_Comment]] = {}
        self._inside: set[int] | None = None

    def render(self) -> str:
        for pointer, container in self.layout.containers.items():
            if container.closing or container.after_open or container.after_close:
                self._container(pointer, container)
        blanks: list[int] = []
        for pointer, anchor in self.layout.anchors.items():
            if anchor.before or anchor.blank_before or anchor.after_start or anchor.after_end:
                blank = self._anchor(pointer, anchor)
                if blank is not None:
                    blanks.append(blank)
        for line in blanks:
            self.inserts.setdefault(line, []).append(None)
        return self._write()

    def _start(self, pointer: str) -> Span:
        # A constant or an object's member starts at its name. Both texts have one IR, so the
        # emitted text has every node of the original.
        return self.new_map.get(pointer + "#key") or self.new_map[pointer]

    def _anchor(self, pointer: str, anchor: _Anchor) -> int | None:
        """Places the comments of a statement or member; returns the line to write a blank
        line before, if the original had one before it."""
        start = self._start(pointer)
        end = self.new_map[pointer]
        line = self.lines[start.line - 1]
        # A member starts its line when its value is written open; a statement always does
        # (its span may start after its keyword: `prefix /api`, `let x = …`), but for the `if`
        # of an `else if`.
        joined = bool(line[: start.col - 1].strip())
        starts_line = not joined or not (anchor.member or pointer.endswith("/else/0"))
        if starts_line:
            indent = line[: len(line) - len(line.lstrip())]
            self.inserts.setdefault(start.line, []).extend((indent, c) for c in anchor.before)
        else:  # the canonical layout joined it to what comes before
            self._append(start.line, anchor.before)
        self._append(start.line, anchor.after_start)
        self._append(end.end_line, anchor.after_end)
        return start.line if anchor.blank_before and starts_line else None

    def _container(self, pointer: str, container: _Container) -> None:
        span = self.new_map[pointer]
        close = span.end_line
        line = self.lines[close - 1]
        if close > span.line and line.lstrip()[:1] in ("}", "]"):
            indent = line[: len(line) - len(line.lstrip())] + "  "
            self.inserts.setdefault(close, []).extend((indent, c) for c in container.closing)
        else:
            self._append(close, container.closing)
        # The opening bracket ends the line before the first statement or member.
        first = min((self._start(child).line for child in container.children), default=close)
        self._append(max(first - 1, span.line), container.after_open)
        self._append(close, container.after_close)

    def _append(self, line: int, comments: list[_Comment]) -> None:
        if not comments:
            return
        if self._inside is None:
            # Lines that end inside an expression: a comment there would join its text.
            self._inside = set()
            for pointer in self.layout.multi_line:
                span = self.new_map[pointer]
                self._inside.update(range(span.line, span.end_line))
        while line in self._inside:
            line += 1
        self.appends.setdefault(line, []).extend(comments)

    def _write(self) -> str:
        out: list[str] = []
        opens = False  # whether the last line written opens a block or a value

        def blank() -> None:
            # One blank line, unless there is one already or it would open a block or the file.
            if out and out[-1].strip() and not opens:
                out.append("")

        for number, line in enumerate(self.lines, 1):
            for insert in self.inserts.get(number, ()):
                if insert is None:
                    blank()
                    continue
                indent, comment = insert
                if comment.blank_before:
                    blank()
                out.append(indent + comment.text)
                opens = False
            trailing = sorted(self.appends.get(number, ()), key=lambda c: (c.line, c.col))
            out.append(line + "".join("  " + c.text for c in trailing))
            opens = line.rstrip().endswith(("{", "["))
        for comment in self.layout.tail:
            if comment.blank_before:
                blank()
            out.append(comment.text)
            opens = False
        return "\n".join(out) + "\n"


def _value(ir: Any, pointer: str) -> Any:
    node = ir
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node

"""What an editor asks about a scenario while it is written: diagnostics with whole-word ranges,
completion that knows where the cursor stands, hover texts, definitions and references, the
outline. Pure functions over a text and a position (1-based line and column), with no editor
protocol in them: ``cli/lsp.py`` speaks LSP and asks these.

Nothing here is a second source of truth: keywords come from the grammar's rules, meanings from
the JSON Schema's descriptions, functions from ``expr.functions``, the names an expression may
use and ``conn``'s properties from the checker (``validate``), diagnostics from ``load_source``.

Completion, hover and navigation read ``.mock`` text with a light scanner (the grammar's own
terminals) rather than the parser, so that they work on a file that does not parse yet.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lark.grammar import NonTerminal, Terminal

from ..errors import QuantityError, ScenarioError
from ..expr.functions import ANY, FUNCTIONS, MATCHERS, Signature
from ..expr.syntax import keywords, parser, terminal_regex
from .loader import load_source
from .schema import SCHEMA
from .source import Source, Span
from .units import DURATION_UNITS, SIZE_UNITS, parse_duration, parse_size
from .validate import (
    BLOCK_NAMES,
    CONN_FIELDS,
    ERROR_FIELDS,
    ROOTS_BY_CONTEXT,
    TIMER_FIELDS,
    check_duplicate_routes,
)

__all__ = [
    "Analysis",
    "Completion",
    "Symbol",
    "complete",
    "definition",
    "diagnostics",
    "hover",
    "references",
    "symbols",
]


# ---------------------------------------------------------------------------------------------
# Diagnostics


def diagnostics(name: str, text: str) -> tuple[list[ScenarioError], Any]:
    """What ``check`` reports for this one file (errors, then warnings of a valid file), each
    with an ``end_col`` covering the whole token at its position; and the constants' values
    when the file is valid (None otherwise)."""
    loaded, errors = load_source(Source(name, text))
    found = sorted(set(errors), key=ScenarioError.sort_key)
    constants = None
    if loaded is not None:
        found += check_duplicate_routes([loaded])  # check runs it over all its files
        found += sorted(loaded.warnings, key=ScenarioError.sort_key)
        constants = loaded.constants
    return [_widened(error) for error in found], constants


_TOKEN_AT = re.compile(r"[A-Za-z0-9_.$:/-]+|\"(?:[^\"\\\n]|\\.)*\"?|'(?:[^'\\\n]|\\.)*'?")


def _widened(error: ScenarioError) -> ScenarioError:
    """The error with ``end_col`` at the end of the token at its position, unless it already
    covers more than one column."""
    line = error.source_line
    if line is None or (error.end_col is not None and error.end_col > error.col + 1):
        return error
    start = error.col - 1
    match = _TOKEN_AT.match(line, start) if 0 <= start < len(line) else None
    end = len(match.group().rstrip(":")) if match else 1
    return ScenarioError(
        error.file,
        error.line,
        error.col,
        error.message,
        error.hint,
        error.col + max(end, 1),
        error.source_line,
        error.severity,
    )


# ---------------------------------------------------------------------------------------------
# Scanning .mock text


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # name, string, quantity, number, path, punct
    text: str
    start: int
    end: int


@functools.cache
def _scanner() -> re.Pattern[str]:
    parts = [
        r"(?P<ws>\s+)",
        r"(?P<comment>#[^\n]*)",
        f"(?P<string>{terminal_regex('STRING').pattern})",
        f"(?P<quantity>{terminal_regex('QUANTITY').pattern})",
        f"(?P<number>{terminal_regex('NUMBER').pattern})",
        f"(?P<name>{terminal_regex('NAME').pattern})",
        r"(?P<punct>\?\?|==|!=|<=|>=|&&|\|\||\.\.|.)",
    ]
    return re.compile("|".join(parts), re.S)


#: Words after which a '/' starts a path, not a division.
_PATH_AFTER = frozenset({"route", "prefix", "to"})


def _scan(
    text: str, start: int = 0, stop: int | None = None, comments: bool = False
) -> Iterator[_Token]:
    scanner, path = _scanner(), terminal_regex("PATH")
    end = len(text) if stop is None else stop
    pos, previous = start, ""
    while pos < end:
        if text[pos] == "/" and previous in _PATH_AFTER:
            found = path.match(text, pos)
            if found is not None:
                yield _Token("path", found.group(), pos, found.end())
                pos, previous = found.end(), ""
                continue
        match = scanner.match(text, pos)
        if match is None:  # an unclosed quote: the rest of its line is the string
            close = text.find("\n", pos)
            close = len(text) if close < 0 else close
            yield _Token("string", text[pos:close], pos, close)
            pos = close
            continue
        kind = match.lastgroup or "punct"
        if kind == "comment" and comments:
            yield _Token(kind, match.group(), pos, match.end())
        elif kind not in ("ws", "comment"):
            yield _Token(kind, match.group(), pos, match.end())
            previous = match.group()
        pos = match.end()


class Analysis:
    """One version of a document: its text, and what was found in it, computed when first
    asked for. ``constants`` are the values of the top-level lets from the last valid check."""

    def __init__(self, name: str, text: str, constants: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.text = text
        self.constants = constants
        self._line_starts: list[int] | None = None
        self._tokens: list[_Token] | None = None
        self._index: _Index | None = None
        self._names: dict[str, list[str]] | None = None

    @property
    def is_mock(self) -> bool:
        return self.name.endswith(".mock")

    @property
    def line_starts(self) -> list[int]:
        if self._line_starts is None:
            starts = [0]
            starts.extend(m.end() for m in re.finditer("\n", self.text))
            self._line_starts = starts
        return self._line_starts

    def offset(self, line: int, col: int) -> int:
        starts = self.line_starts
        line = min(max(line, 1), len(starts))
        return min(starts[line - 1] + col - 1, len(self.text))

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def span(self, start: int, end: int) -> Span:
        line, col = self.position(start)
        end_line, end_col = self.position(end)
        return Span(line, col, end_line, end_col)

    @property
    def tokens(self) -> list[_Token]:
        if self._tokens is None:
            self._tokens = list(_scan(self.text))
        return self._tokens

    @property
    def names(self) -> dict[str, list[str]]:
        """What completion offers from the file, by kind (constant, name, room, timer, client):
        found with regular expressions, far cheaper on a long file than the full index."""
        if self._names is None:
            self._names = {
                kind: list(dict.fromkeys(_unquoted(m[1]) for m in pattern.finditer(self.text)))
                for kind, pattern in _name_patterns().items()
            }
        return self._names

    @property
    def index(self) -> _Index:
        if self._index is None:
            self._index = _build_index(self.tokens)
        return self._index


@functools.cache
def _name_patterns() -> dict[str, re.Pattern[str]]:
    name = terminal_regex("NAME").pattern
    string = terminal_regex("STRING").pattern
    return {
        "constant": re.compile(rf"^let\s+({name})", re.M),
        "name": re.compile(rf"\blet\s+({name})"),
        "room": re.compile(rf"\bjoin\s+({string})"),
        "timer": re.compile(rf"\bas\s+({string})"),
        "client": re.compile(rf"\bconnect\s+({name})\s+to\b"),
    }


def _unquoted(text: str) -> str:
    return text[1:-1] if text[:1] in "\"'" and len(text) > 1 else text


# ---------------------------------------------------------------------------------------------
# Keywords, from the grammar's rules


@functools.cache
def _keyword_terminals() -> dict[str, str]:
    """Terminal name → keyword (``ON`` → ``on``)."""
    words = keywords()
    return {
        t.name: t.pattern.value
        for t in parser().terminals
        if t.pattern.type == "str" and t.pattern.value in words
    }


@functools.cache
def _expansions(rule: str) -> tuple[tuple[str, ...], ...]:
    """The alternatives of ``rule``, each a sequence of symbol names: a keyword as itself in
    quotes (``'on'``), a terminal by name (``NAME``), a rule by name; alternatives that begin
    with a rule (``?action: send | …``) replaced by that rule's alternatives."""
    kw = _keyword_terminals()
    found: list[tuple[str, ...]] = []
    for r in parser().rules:
        if r.origin.name != rule:
            continue
        seq: list[str] = []
        for symbol in r.expansion:
            if isinstance(symbol, Terminal):
                seq.append(f"'{kw[symbol.name]}'" if symbol.name in kw else symbol.name)
            elif isinstance(symbol, NonTerminal):
                seq.append(str(symbol.name))
        if seq and not seq[0].startswith("'") and not seq[0].isupper() and seq[0] != rule:
            found.extend(e + tuple(seq[1:]) for e in _expansions(seq[0]))
        else:
            found.append(tuple(seq))
    return tuple(dict.fromkeys(found))


@functools.cache
def _first_keywords(rule: str) -> tuple[str, ...]:
    words = [seq[0][1:-1] for seq in _expansions(rule) if seq and seq[0].startswith("'")]
    return tuple(dict.fromkeys(words))


#: The grammar's rule for a statement in each kind of block.
_STATEMENT_RULE = {
    "top": "item",
    "route": "route_item",
    "auth": "auth_step",
    "block": "action",
    "test": "test_step",
}
#: Symbols after which an expression may be typed.
_EXPRESSION_SYMBOLS = frozenset({"expr", "delay", "where", "to", "timer_name", "condition"})


def _next_symbols(rule: str, words: list[_Token]) -> tuple[list[str], bool]:
    """After the statement's first ``words``: the keywords that may follow, and whether an
    expression may."""
    offered: list[str] = []
    expression = False
    for seq in _expansions(rule):
        if len(seq) <= len(words) or not all(
            _fits(symbol, word) for symbol, word in zip(seq, words, strict=False)
        ):
            continue
        nxt = seq[len(words)]
        if nxt.startswith("'"):
            offered.append(nxt[1:-1])
        elif nxt[0].islower():
            offered.extend(_first_keywords(nxt))
            expression = expression or nxt in _EXPRESSION_SYMBOLS
    return list(dict.fromkeys(offered)), expression


def _fits(symbol: str, token: _Token) -> bool:
    if symbol.startswith("'"):
        return token.text == symbol[1:-1]
    if symbol == "NAME":
        return token.kind == "name"
    if symbol == "STRING":
        return token.kind == "string"
    if symbol == "NUMBER":
        return token.kind == "number"
    if symbol in ("quantity", "delay"):
        return token.kind in ("quantity", "number")
    if symbol == "path":
        return token.kind in ("path", "string")
    return False


# ---------------------------------------------------------------------------------------------
# Where the cursor stands


#: Keywords whose statement's '{' opens a block of statements, and which kind.
_OPENERS = {
    "route": "route",
    "auth": "auth",
    "test": "test",
    "on": "block",
    "every": "block",
    "after": "block",
    "if": "block",
    "else": "block",
}
_HANDLER_CONTEXT = {"connect": "connect", "message": "message", "close": "close", "error": "error"}


@dataclass(slots=True)
class _Frame:
    kind: str  # top, route, auth, block, test, expr, "(" or "["
    context: str  # the expression context (ROOTS_BY_CONTEXT's key)
    timer: bool = False  # inside an every or after block


@dataclass(slots=True)
class _Place:
    frames: list[_Frame]
    words: list[_Token]  # the statement's tokens before the cursor's word


def _top_level_start(a: Analysis, offset: int) -> int:
    """Where the top-level item holding ``offset`` starts: the last line before it that begins
    with a top-level keyword in its first column (a guess that keeps completion cheap on a long
    file; the whole text when there is none)."""
    pattern = _top_level_pattern()
    span = 4096
    while True:
        low = max(0, offset - span)
        found = [m.start() for m in pattern.finditer(a.text, low, offset)]
        if found:
            return found[-1]
        if low == 0:
            return 0
        span *= 4


@functools.cache
def _top_level_pattern() -> re.Pattern[str]:
    return re.compile(r"^(?:" + "|".join(_first_keywords("item")) + r")\b", re.M)


def _place(a: Analysis, offset: int) -> _Place:
    frames = [_Frame("top", "constant")]
    opener: list[_Token] = []
    words: list[_Token] = []
    for token in _scan(a.text, _top_level_start(a, offset), offset):
        if token.end >= offset and token.kind in ("name", "number", "quantity"):
            break  # the word being typed
        top = frames[-1]
        if token.text == "{" and token.kind == "punct":
            frames.append(_open(top, opener))
            opener, words = [], []
        elif token.text in ("(", "[") and token.kind == "punct":
            frames.append(_Frame(token.text, top.context, top.timer))
            words.append(token)
        elif token.text in ("}", ")", "]") and token.kind == "punct":
            if len(frames) > 1:
                frames.pop()
            opener, words = [], []
            if token.text != "}":
                words.append(token)
        else:
            if top.kind not in ("expr", "(", "[") and token.kind == "name":
                if _starts_statement(a.text, token, top.kind, words):
                    words = []
                    opener = [token] if token.text in _OPENERS else []
                elif opener:
                    opener.append(token)
            words.append(token)
    return _Place(frames, words)


def _starts_statement(text: str, token: _Token, kind: str, words: list[_Token]) -> bool:
    """Whether ``token`` begins a statement: the first word of a line after a complete one."""
    if not words:
        return True
    if text.rfind("\n", words[-1].end, token.start) < 0:
        return False
    rule = _STATEMENT_RULE.get(kind)
    if rule is None:
        return False
    return token.text in _first_keywords(rule) or (kind == "test" and words[-1].kind != "punct")


def _open(top: _Frame, opener: list[_Token]) -> _Frame:
    if top.kind in ("expr", "(", "[") or not opener:
        return _Frame("expr", top.context, top.timer)
    first = opener[0].text
    kind = _OPENERS[first]
    context = top.context
    if kind == "route":
        context = "route-timer"
    elif kind == "auth":
        context = "auth"
    elif kind == "test":
        context = "test"
    elif first == "on" and len(opener) > 1:
        context = _HANDLER_CONTEXT.get(opener[1].text, context)
    return _Frame(kind, context, top.timer or first in ("every", "after"))


# ---------------------------------------------------------------------------------------------
# Symbols: definitions and references, the outline


@dataclass(frozen=True, slots=True)
class Symbol:
    """An item of the outline: a route, a handler, a test, a constant; ``span`` covers it all,
    ``selection`` its name."""

    name: str
    kind: str  # route, handler, test, constant
    span: Span
    selection: Span
    children: tuple[Symbol, ...] = ()


@dataclass(slots=True)
class _Index:
    #: (namespace, name) → tokens naming it; the first definition first.
    definitions: dict[tuple[str, str], list[_Token]] = field(default_factory=dict)
    references: dict[tuple[str, str], list[_Token]] = field(default_factory=dict)
    #: Top-level lets: name → where its expression starts and ends (offsets).
    constants: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: [kind, name, first token, name token, its block's end offset, children]: lists, as the
    #: end and the children are filled in while scanning (and the block's depth meanwhile).
    outline: list[list[Any]] = field(default_factory=list)


_TEMPLATE = re.compile(r"\$\{([^}]*)\}")
_ROOM_VERBS = frozenset({"join", "leave", "to"})


def _build_index(tokens: list[_Token]) -> _Index:
    index = _Index()
    names = terminal_regex("NAME")
    depth = 0
    stack: list[list[Any]] = []  # outline entries whose block is open, with their depth
    pending: list[Any] | None = None
    clients_in_test: set[str] = set()
    previous: _Token | None = None
    let_start: tuple[str, int] | None = None

    def add(table: dict[tuple[str, str], list[_Token]], key: tuple[str, str], t: _Token) -> None:
        table.setdefault(key, []).append(t)

    for i, token in enumerate(tokens):
        text = token.text
        before = previous.text if previous is not None else ""
        if token.kind == "punct":
            if text == "{":
                depth += 1
                if pending is not None:
                    pending.append(depth)
                    stack.append(pending)
                    pending = None
            elif text == "}":
                if stack and stack[-1][-1] == depth:
                    entry = stack.pop()
                    entry[4] = token.end
                    del entry[-1]
                depth = max(depth - 1, 0)
        elif token.kind == "name":
            if before == "." and previous is not None and previous.kind == "punct":
                pass  # a property, not a name
            elif before == "let":
                key = ("name", text)
                add(index.definitions, key, token)
                if depth == 0:
                    let_start = (text, i + 2)
                    entry = ["constant", text, token, token, token.end, []]
                    index.outline.append(entry)
            elif before == "connect" and depth > 0:
                add(index.definitions, ("client", text), token)
                clients_in_test.add(text)
            elif (
                depth > 0
                and text in clients_in_test
                and i + 1 < len(tokens)
                and tokens[i + 1].text in ("send", "expect", "close")
            ):
                add(index.references, ("client", text), token)
            elif text in ("route", "test") and depth == 0:
                named = tokens[i + 1] if i + 1 < len(tokens) else token
                pending = [text, named.text, token, named, named.end, []]
                index.outline.append(pending)
                clients_in_test = set()
            elif text == "on" and depth == 1 and stack and stack[-1][0] == "route":
                words = " ".join(_handler_words(tokens, i))
                pending = ["handler", words, token, token, token.end, []]
                stack[-1][5].append(pending)
            elif text not in keywords():
                add(index.references, ("name", text), token)
            if (
                depth == 0
                and let_start is not None
                and text in _first_keywords("item")
                and before != "="
            ):
                name, first = let_start
                index.constants[name] = (tokens[first].start, previous.end if previous else 0)
                let_start = None
        elif token.kind == "string":
            if before in _ROOM_VERBS:
                table = index.definitions if before == "join" else index.references
                add(table, ("room", text[1:-1]), token)
            elif before == "as":
                add(index.definitions, ("timer", text[1:-1]), token)
            elif before == "cancel":
                add(index.references, ("timer", text[1:-1]), token)
            for m in _TEMPLATE.finditer(text):
                for n in names.finditer(m.group(1)):
                    inner = m.start(1) + n.start()
                    if inner > 0 and text[inner - 1] == ".":
                        continue
                    at = token.start + inner
                    sub = _Token("name", n.group(), at, at + len(n.group()))
                    add(index.references, ("name", n.group()), sub)
        previous = token
    if let_start is not None and tokens:
        name, first = let_start
        if first < len(tokens):
            index.constants[name] = (tokens[first].start, tokens[-1].end)
    for key, defs in index.definitions.items():
        if key[0] == "room":
            index.references.setdefault(key, [])
            seen = {t.start for t in index.references[key]}
            index.references[key] = sorted(
                [t for t in defs if t.start not in seen] + index.references[key],
                key=lambda t: t.start,
            )
    return index


def _handler_words(tokens: list[_Token], i: int) -> list[str]:
    words: list[str] = []
    for token in tokens[i : i + 6]:
        if token.text in ("{", "where") or (words and "\n" in token.text):
            break
        words.append(token.text)
    return words


def symbols(a: Analysis) -> list[Symbol]:
    """The outline: routes with their handlers, tests, constants."""

    def build(entry: list[Any]) -> Symbol:
        kind, name, token, label, end, children = entry[:6]
        return Symbol(
            _unquoted(name) if kind == "test" else name,
            kind,
            a.span(token.start, end),
            a.span(label.start, label.end),
            tuple(build(child) for child in children),
        )

    if not a.is_mock:
        return []
    return [build(entry) for entry in a.index.outline]


def _symbol_at(a: Analysis, line: int, col: int) -> tuple[tuple[str, str], _Token] | None:
    offset = a.offset(line, col)
    index = a.index
    for table in (index.definitions, index.references):
        for key, tokens in table.items():
            for token in tokens:
                if token.start <= offset <= token.end and (
                    token.kind != "string" or key[0] in ("room", "timer")
                ):
                    return key, token
    return None


def definition(a: Analysis, line: int, col: int) -> list[Span]:
    """Where the name, room, timer or client at the position is defined."""
    found = _symbol_at(a, line, col) if a.is_mock else None
    if found is None:
        return []
    key, _ = found
    return [a.span(t.start, t.end) for t in a.index.definitions.get(key, [])[:1]]


def references(a: Analysis, line: int, col: int, include_definition: bool = True) -> list[Span]:
    """Every use of the name, room, timer or client at the position."""
    found = _symbol_at(a, line, col) if a.is_mock else None
    if found is None:
        return []
    key, _ = found
    tokens = list(a.index.references.get(key, []))
    if include_definition:
        tokens += a.index.definitions.get(key, [])
    unique = {t.start: t for t in tokens}
    return [a.span(t.start, t.end) for t in sorted(unique.values(), key=lambda t: t.start)]


# ---------------------------------------------------------------------------------------------
# Completion


@dataclass(frozen=True, slots=True)
class Completion:
    """One proposal: ``kind`` is keyword, function, variable, property, constant, room, timer
    or client; ``insert`` what to insert when it differs from the label."""

    label: str
    kind: str
    detail: str | None = None
    documentation: str | None = None
    insert: str | None = None


_PROPERTIES = {"conn": CONN_FIELDS, "error": ERROR_FIELDS, "timer": TIMER_FIELDS}


def complete(a: Analysis, line: int, col: int) -> list[Completion]:
    """What may be written at the position."""
    if not a.is_mock:
        return []
    offset = a.offset(line, col)
    text = a.text
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    if start > 0 and text[start - 1] == "." and (start < 2 or text[start - 2] != "."):
        return _members(a, start - 1)
    if _in_string_or_comment(a, start):
        return []
    place = _place(a, start)
    frame = place.frames[-1]
    words = place.words
    if frame.kind in ("expr", "(", "["):
        return _expression(a, frame)
    rule = _STATEMENT_RULE[frame.kind]
    items: list[Completion] = []
    if words and "\n" in text[words[-1].end : start]:
        words = []  # a statement's words are on one line: the cursor starts the next
    if not words:
        items += [_keyword(word, frame.kind) for word in _first_keywords(rule)]
        if frame.kind == "test":
            items += _clients(a)
        return items
    following, expression = _next_symbols(rule, words)
    items += [_keyword(word, frame.kind, words) for word in following]
    last = words[-1].text
    if last in _ROOM_VERBS:
        items += _named(a, "room")
    if last == "cancel":
        items += _named(a, "timer")
    if expression or last in _ROOM_VERBS or last == "cancel" or not following:
        items += _expression(a, frame)
    return items


def _in_string_or_comment(a: Analysis, offset: int) -> bool:
    line_start = a.line_starts[a.position(offset)[0] - 1]
    for token in _scan(a.text, line_start, offset, comments=True):
        if token.start < offset and (token.end > offset or token.kind == "comment"):
            return token.kind in ("string", "comment") and not (
                token.kind == "string" and token.end == offset and token.text[-1:] in "\"'"
            )
    return False


def _keyword(word: str, kind: str, before: list[_Token] | None = None) -> Completion:
    words = [t.text for t in before or [] if t.kind == "name"] + [word]
    doc = _describe(words, kind)
    return Completion(word, "keyword", None, doc)


def _expression(a: Analysis, frame: _Frame) -> list[Completion]:
    roots = list(ROOTS_BY_CONTEXT.get(frame.context, ()))
    if frame.timer:
        roots += BLOCK_NAMES
    items = [Completion(name, "variable", _root_detail(name)) for name in roots if name != ANY]
    values = a.constants or {}
    for name in a.names["constant"]:
        detail = _short(values[name]) if name in values else "constant"
        items.append(Completion(name, "constant", detail))
    seen = {item.label for item in items}
    items += [Completion(n, "variable", "let") for n in a.names["name"] if n not in seen]
    items += [_function(sig) for sig in FUNCTIONS.values()]
    if frame.context in ("test",):
        items += [_function(sig) for sig in MATCHERS.values()]
        items.append(Completion(ANY, "keyword", "any value (in an expected message)"))
    return items


def _function(sig: Signature) -> Completion:
    return Completion(sig.name, "function", sig.usage, f"{sig.doc} ({sig.arity_text()})", None)


def _members(a: Analysis, dot: int) -> list[Completion]:
    end = dot
    start = end
    while start > 0 and (a.text[start - 1].isalnum() or a.text[start - 1] == "_"):
        start -= 1
    owner = a.text[start:end]
    if start > 0 and a.text[start - 1] == ".":
        return []
    if owner in _PROPERTIES:
        return [Completion(p, "property", f"{owner}.{p}") for p in _PROPERTIES[owner]]
    value = (a.constants or {}).get(owner)
    if isinstance(value, dict):
        return [Completion(str(k), "property", _short(v)) for k, v in value.items()]
    return []


def _named(a: Analysis, kind: str) -> list[Completion]:
    """Rooms and timers, as the string literals that name them."""
    return [Completion(name, kind, kind, None, json.dumps(name)) for name in a.names[kind]]


def _clients(a: Analysis) -> list[Completion]:
    return [Completion(name, "client", "client") for name in a.names["client"]]


def _root_detail(name: str) -> str:
    description = _schema_lookup([name])
    return description[0] if description else name


def _short(value: Any) -> str:
    return _shorten(json.dumps(value, ensure_ascii=False, default=str))


def _shorten(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Hover


#: What the names an expression starts from are.
_ROOT_TEXT = {
    "msg": "the message being handled (its JSON, parsed)",
    "raw": "the message as received (text or binary)",
    "conn": "this connection: " + ", ".join(CONN_FIELDS),
    "query": "the handshake's query parameters",
    "headers": "the handshake's headers (lower-case names)",
    "params": "the route path's `:name` segments",
    "auth": "what the auth block accepted",
    "session": "this connection's memory, kept until it closes",
    "state": "the file's memory, shared by every route and connection",
    "code": "the close code (in `on close`)",
    "reason": "the close reason (in `on close`)",
    "error": "what went wrong (in `on error`): " + ", ".join(ERROR_FIELDS),
    "timer": "the running timer (in every and after blocks): " + ", ".join(TIMER_FIELDS),
}


def hover(a: Analysis, line: int, col: int) -> str | None:
    """Markdown about what is at the position: a keyword, setting or action (from the schema),
    a function, a name, a constant's value, a duration or size in words."""
    if not a.is_mock:
        return None
    offset = a.offset(line, col)
    line_start = a.line_starts[a.position(offset)[0] - 1]
    line_end = a.text.find("\n", offset)
    line_end = len(a.text) if line_end < 0 else line_end
    tokens = list(_scan(a.text, line_start, line_end))
    here = next((t for t in tokens if t.start <= offset < t.end), None)
    if here is None:
        return None
    if here.kind == "quantity":
        return _quantity_text(here.text)
    if here.kind == "string":  # a name inside a template's ${…}
        piece = next(
            (
                m
                for m in _TEMPLATE.finditer(here.text)
                if m.start(1) <= offset - here.start <= m.end(1)
            ),
            None,
        )
        if piece is None:
            return None
        tokens = list(_scan(a.text, here.start + piece.start(1), here.start + piece.end(1)))
        here = next((t for t in tokens if t.start <= offset < t.end), None)
        if here is None:
            return None
    if here.kind != "name":
        return None
    i = tokens.index(here)
    before = tokens[i - 1] if i > 0 else None
    after = tokens[i + 1] if i + 1 < len(tokens) else None
    if before is not None and before.text == ".":
        owner = tokens[i - 2].text if i >= 2 else ""
        if owner in _PROPERTIES and here.text in _PROPERTIES[owner]:
            return f"`{owner}.{here.text}`"
        return None
    word = here.text
    if after is not None and after.text == "(" and word in {**FUNCTIONS, **MATCHERS}:
        sig = {**FUNCTIONS, **MATCHERS}[word]
        return f"```\n{sig.usage}\n```\n{sig.doc} ({sig.arity_text()})"
    if word in a.names["constant"]:
        # Its value once the file has been checked, else the expression that gives it.
        if a.constants is not None and word in a.constants:
            shown = json.dumps(a.constants[word], ensure_ascii=False, indent=2, default=str)
        elif word in a.index.constants:
            start, end = a.index.constants[word]
            shown = " ".join(a.text[start:end].split())
        else:
            return None
        return f"constant `{word}`\n```\n{_shorten(shown, 2000)}\n```"
    if word in _ROOT_TEXT and (before is None or before.text != "let"):
        return f"`{word}`: {_ROOT_TEXT[word]}"
    if word in keywords():
        kind = _place(a, here.start).frames[-1].kind
        words = [t.text for t in tokens[: i + 1] if t.kind == "name"]
        if after is not None and after.kind == "name" and word in ("max", "on"):
            words.append(after.text)
        text = _describe(words, kind)
        return text
    return None


def _quantity_text(text: str) -> str | None:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]+)", text).groups()  # type: ignore[union-attr]
    try:
        if unit in DURATION_UNITS:
            seconds = parse_duration(text)
            names = {"ms": "millisecond", "s": "second", "m": "minute", "h": "hour"}
            amount = float(number)
            plural = "" if amount == 1 else "s"
            shown = f"{amount:g} {names[unit]}{plural}"
            return shown if unit == "s" else f"{shown} ({seconds:g} s)"
        if unit in SIZE_UNITS:
            return f"{parse_size(text):,} bytes"
    except QuantityError as err:
        return str(err)
    return None


# ---------------------------------------------------------------------------------------------
# What the schema says a keyword means


@functools.cache
def _schema_properties() -> dict[str, list[tuple[str, Mapping[str, Any]]]]:
    """Property name → (where, its schema) for every property the schema describes."""
    found: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, prop in (node.get("properties") or {}).items():
                if isinstance(prop, dict) and "description" in prop:
                    found.setdefault(key, []).append((where, prop))
            for key, child in node.items():
                walk(child, f"{where}/{key}" if key != "properties" else where)
        elif isinstance(node, list):
            for child in node:
                walk(child, where)

    walk(SCHEMA, "")
    return found


#: Which part of the schema describes the statements of each kind of block.
_SCHEMA_PLACE = {
    "top": "",
    "route": "/$defs/route",
    "auth": "/$defs/authStep",
    "block": "/$defs/action",
    "test": "/$defs/testStep",
}


def _camel(words: list[str]) -> str:
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _schema_lookup(words: list[str], kind: str | None = None) -> tuple[str, str] | None:
    """(title, markdown) for the keyword ``words`` (``["max", "message"]`` → ``maxMessage``)."""
    table = _schema_properties()
    candidates: list[tuple[str, Mapping[str, Any]]] = []
    keys = [_camel(words[-2:]), words[-1]] if len(words) > 1 else [words[-1]]
    if words[0] == "on" and len(words) > 1:
        keys = [words[1]]
        candidates = [c for c in table.get(words[1], []) if c[0].endswith("/on")]
    for key in keys:
        candidates += table.get(key, [])
        candidates += table.get({"route": "routes", "test": "tests"}.get(key, ""), [])
    if not candidates:
        return None
    place = _SCHEMA_PLACE.get(kind or "")
    if place is not None and not (words[0] == "on" and len(words) > 1):
        candidates.sort(key=lambda c: not c[0].startswith(place) if place else c[0] != "")
    _, prop = candidates[0]
    title = str(prop.get("title", words[-1]))
    text = str(prop.get("description", ""))
    examples = prop.get("examples")
    if examples:
        text += "\n\nExample (IR): `" + json.dumps(examples[0], ensure_ascii=False) + "`"
    return title, text


def _describe(words: list[str], kind: str) -> str | None:
    found = _schema_lookup(words, kind)
    if found is None:
        return None
    title, text = found
    return f"**{' '.join(words)}** — {title}\n\n{text}"

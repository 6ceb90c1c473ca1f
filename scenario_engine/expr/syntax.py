"""The lark parser of the scenario language and the nodes it builds.

One LALR parser, built once, serves both the whole `.mock` file (start symbol ``start``) and a
single expression (start symbol ``expr``, used for the expressions embedded in IR strings).
Callbacks run while parsing, with no intermediate tree, so arbitrarily deep input costs no Python
recursion here. Every node records ``start``/``end`` character offsets into the parsed text;
turning offsets into lines and columns is the caller's business.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import lark
from lark import Lark, Token, Transformer, Tree

__all__ = [
    "ArrayLit",
    "Binary",
    "Call",
    "Conditional",
    "Expr",
    "Index",
    "Literal",
    "Member",
    "Name",
    "Node",
    "ObjectLit",
    "Stmt",
    "StringLit",
    "Unary",
    "grammar_text",
    "keywords",
    "name_regex",
    "negative_number",
    "parser",
    "string_literal",
    "terminal_regex",
]


@dataclass(frozen=True, slots=True)
class Node:
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A number, true, false or null."""

    value: Any


@dataclass(frozen=True, slots=True)
class StringLit(Node):
    """A string literal as written, quotes included; see ``strings.split_literal``."""

    raw: str


@dataclass(frozen=True, slots=True)
class Name(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Member(Node):
    target: Expr
    name: str
    name_start: int


@dataclass(frozen=True, slots=True)
class Index(Node):
    target: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "!" or "-"
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str  # + - * / % == != < <= > >= in "not in" && || ??
    left: Expr
    right: Expr
    op_start: int


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    test: Expr
    then: Expr
    otherwise: Expr


@dataclass(frozen=True, slots=True)
class ObjectLit(Node):
    # (key, key start, key end, value); a quoted key keeps its quotes in ``raw_key``.
    pairs: tuple[tuple[str, int, int, Expr], ...]


@dataclass(frozen=True, slots=True)
class ArrayLit(Node):
    items: tuple[Expr, ...]


Expr = (
    Literal
    | StringLit
    | Name
    | Member
    | Index
    | Call
    | Unary
    | Binary
    | Conditional
    | ObjectLit
    | ArrayLit
)


@dataclass(frozen=True, slots=True)
class Stmt(Node):
    """A statement of the `.mock` language: ``kind`` is its grammar rule, ``parts`` its pieces
    (tokens, expressions, nested statements, or None for an omitted optional piece)."""

    kind: str
    parts: tuple[Any, ...]


def string_literal(token: Token) -> StringLit:
    """The node of a STRING token."""
    # Tokens made by the lexer always carry positions (lark types them as optional).
    assert token.start_pos is not None and token.end_pos is not None
    return StringLit(token.start_pos, token.end_pos, str(token))


def negative_number(node: Any) -> int | float | None:
    """The number a negated number literal stands for (``-5`` is the JSON number -5, as in
    YAML), or None when ``node`` is anything else (``-x``, ``-true``)."""
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Literal):
        value = node.operand.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value
    return None


def _span(items: list[Any]) -> tuple[int, int]:
    present = [i for i in items if i is not None]
    first, last = present[0], present[-1]
    # Tokens made by the lexer always carry positions (lark types them as optional).
    start = first.start_pos if isinstance(first, Token) else first.start
    end = last.end_pos if isinstance(last, Token) else last.end
    assert start is not None and end is not None
    return start, end


def _values(items: list[Any]) -> list[Any]:
    """The meaningful children: nodes, and tokens that carry a value (not punctuation/keywords)."""
    return [i for i in items if not (isinstance(i, Token) and i.type not in _VALUE_TOKENS)]


_VALUE_TOKENS = frozenset({"NAME", "NUMBER", "STRING", "PATH", "QUANTITY", "COMPARE", "ADD", "MUL"})


def _number(token: Token) -> int | float:
    text = str(token)
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


class _Builder(Transformer[Token, Any]):
    """Builds nodes while the LALR parser reduces (every token is kept, for exact spans)."""

    # ---- expressions -------------------------------------------------------------------
    def name(self, c: list[Any]) -> Name:
        return Name(c[0].start_pos, c[0].end_pos, str(c[0]))

    def number(self, c: list[Any]) -> Literal:
        return Literal(c[0].start_pos, c[0].end_pos, _number(c[0]))

    def string(self, c: list[Any]) -> StringLit:
        return string_literal(c[0])

    def true(self, c: list[Any]) -> Literal:
        return Literal(*_span(c), True)

    def false(self, c: list[Any]) -> Literal:
        return Literal(*_span(c), False)

    def null(self, c: list[Any]) -> Literal:
        return Literal(*_span(c), None)

    def member(self, c: list[Any]) -> Member:
        return Member(*_span(c), c[0], str(c[2]), c[2].start_pos)

    def index(self, c: list[Any]) -> Index:
        return Index(*_span(c), c[0], c[2])

    def call(self, c: list[Any]) -> Call:
        args = tuple(a for a in c[2:-1] if a is not None and not isinstance(a, Token))
        return Call(*_span(c), str(c[0]), args)

    def not_(self, c: list[Any]) -> Unary:
        return Unary(*_span(c), "!", c[1])

    def neg(self, c: list[Any]) -> Unary:
        return Unary(*_span(c), "-", c[1])

    def _binary(self, c: list[Any], op: str) -> Binary:
        return Binary(*_span(c), op, c[0], c[-1], c[1].start_pos)

    def arith(self, c: list[Any]) -> Binary:
        return self._binary(c, str(c[1]))

    def compare(self, c: list[Any]) -> Binary:
        return self._binary(c, str(c[1]))

    def in_(self, c: list[Any]) -> Binary:
        return self._binary(c, "in")

    def not_in(self, c: list[Any]) -> Binary:
        return self._binary(c, "not in")

    def and_(self, c: list[Any]) -> Binary:
        return self._binary(c, "&&")

    def or_(self, c: list[Any]) -> Binary:
        return self._binary(c, "||")

    def coalesce(self, c: list[Any]) -> Binary:
        return self._binary(c, "??")

    def conditional(self, c: list[Any]) -> Conditional:
        return Conditional(*_span(c), c[0], c[2], c[4])

    def object(self, c: list[Any]) -> ObjectLit:
        pairs = tuple(p for p in c if isinstance(p, tuple))
        return ObjectLit(*_span(c), pairs)

    def pair(self, c: list[Any]) -> tuple[str, int, int, Expr]:
        return (str(c[0]), c[0].start_pos, c[0].end_pos, c[2])

    def array(self, c: list[Any]) -> ArrayLit:
        items = tuple(i for i in c[1:-1] if i is not None and not isinstance(i, Token))
        return ArrayLit(*_span(c), items)

    def atom(self, c: list[Any]) -> Any:
        # Only the parenthesised form reaches here; its span includes the parentheses.
        inner = c[1]
        return _reposition(inner, c[0].start_pos, c[2].end_pos)

    # ---- statements --------------------------------------------------------------------
    def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
        if str(data).startswith("_"):
            # lark's own helper rules (repetitions): a tree, which lark then inlines.
            return Tree(data, children)
        start, end = _span(children) if any(x is not None for x in children) else (0, 0)
        return Stmt(start, end, str(data), tuple(_values(children)))


def _reposition(node: Any, start: int, end: int) -> Any:
    """The same expression, spanning its enclosing parentheses too."""
    fields = {f: getattr(node, f) for f in node.__slots__ if f not in ("start", "end")}
    for base in type(node).__mro__[1:]:
        for f in getattr(base, "__slots__", ()):
            if f not in ("start", "end"):
                fields[f] = getattr(node, f)
    return type(node)(start=start, end=end, **fields)


def grammar_text() -> str:
    """The grammar, from the installed package or, in a source checkout, from ``grammar/``."""
    try:
        packaged = resources.files("scenario_engine").joinpath("grammar/scenario.lark")
        return packaged.read_text("utf-8")
    except (FileNotFoundError, NotADirectoryError, ModuleNotFoundError):
        here = Path(__file__).resolve().parents[2] / "grammar" / "scenario.lark"
        return here.read_text("utf-8")


def _cache_file(grammar: str) -> str | bool:
    """Where the built parser is cached, per user; False when there is nowhere to keep it.

    Building the LALR tables (with strict collision checks) takes about 0.3 s, a cached parser
    loads in about 10 ms: it keeps every command's start-up fast. The file name carries a hash
    of the grammar and lark's version, so a changed grammar is always rebuilt (and re-checked).
    """
    digest = hashlib.sha256(f"{lark.__version__}\0{grammar}".encode()).hexdigest()[:20]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scenario-engine"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return str(root / f"grammar-{digest}.lark-cache")


@functools.cache
def parser(cache: bool = True) -> Lark:
    """The shared LALR parser; built on first use, then reused."""
    grammar = grammar_text()
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        strict=True,
        propagate_positions=False,
        keep_all_tokens=True,
        maybe_placeholders=True,
        start=["start", "expr"],
        transformer=_Builder(),
        cache=_cache_file(grammar) if cache else False,
    )


@functools.cache
def terminal_regex(name: str) -> re.Pattern[str]:
    """The regular expression of the grammar's terminal ``name`` (``NAME``, ``PATH``,
    ``QUANTITY``, ``STRING``…): what the lexer takes for one such token."""
    return re.compile(parser().get_terminal(name).pattern.to_regexp())


def name_regex() -> re.Pattern[str]:
    """The grammar's NAME (letters, digits and '_', not starting with a digit): a text is a
    name when ``name_regex().fullmatch(text)``; ``name_regex().pattern`` embeds it."""
    return terminal_regex("NAME")


@functools.cache
def keywords() -> frozenset[str]:
    """Every word that is a keyword somewhere in the grammar."""
    name = name_regex()
    return frozenset(
        t.pattern.value
        for t in parser().terminals
        if t.pattern.type == "str" and name.fullmatch(t.pattern.value)
    )

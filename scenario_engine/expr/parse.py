"""The expressions embedded in IR strings, parsed into expression trees.

An EXPR slot holds one expression; a TEMPLATE holds JSON whose strings may embed ``${…}``.
Both are parsed here, once per distinct text (the same expression text always yields the same
tree, since positions in it are relative to that text).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from lark.exceptions import UnexpectedInput

from ..errors import ExpressionSyntaxError, StringSyntaxError
from .strings import Piece, split_literal, split_template
from .syntax import (
    ArrayLit,
    Binary,
    Call,
    Conditional,
    Expr,
    Index,
    Member,
    ObjectLit,
    StringLit,
    Unary,
    parser,
)
from .syntax_errors import MAX_NESTING, describe_syntax_error, max_nesting

__all__ = [
    "Embedded",
    "children",
    "embedded_expressions",
    "parse_expression",
    "walk",
    "walk_located",
]


@dataclass(frozen=True, slots=True)
class Embedded:
    """An expression found in an IR string: the tree, and where its text starts in the string."""

    expr: Expr
    offset: int
    whole: bool  # the string is exactly this one ${…} (its value keeps its type)


@functools.lru_cache(maxsize=16384)
def parse_expression(text: str) -> Expr:
    """Parse one expression; raises ExpressionSyntaxError."""
    if not text.strip():
        raise ExpressionSyntaxError("empty expression", "write an expression", 0, 0)
    depth, where = max_nesting(text)
    if depth > MAX_NESTING:
        raise ExpressionSyntaxError(
            f"expression nested too deeply (more than {MAX_NESTING} levels)",
            "split it with let",
            where,
            where + 1,
        )
    try:
        # The parser's callbacks build Expr nodes (see syntax._Builder), not lark trees.
        expr: Expr = parser().parse(text, start="expr")  # type: ignore[assignment]
    except UnexpectedInput as err:
        message, hint, start, end = describe_syntax_error(err, text)
        if message == "unexpected end of file":
            message = "the expression ends too early"
        raise ExpressionSyntaxError(message, hint, start, end) from None
    if _depth_exceeds(expr, MAX_NESTING):
        raise ExpressionSyntaxError(
            f"expression nested too deeply (more than {MAX_NESTING} levels)",
            "split it with let",
            0,
            len(text),
        )
    _check_strings(expr)
    return expr


def _check_strings(expr: Expr) -> None:
    """Surface errors inside string literals (bad escapes, unclosed ``${``) at parse time."""
    for node in walk(expr):
        if isinstance(node, StringLit):
            try:
                for piece in split_literal(node.raw):
                    if isinstance(piece, Piece):
                        parse_expression(piece.text)
            except StringSyntaxError as err:
                at = node.start + err.offset
                raise ExpressionSyntaxError(err.message, err.hint, at, at + 2) from None
            except ExpressionSyntaxError as err:
                raise ExpressionSyntaxError(err.message, err.hint, node.start, node.end) from None


def children(expr: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``expr``."""
    if isinstance(expr, Member):
        return (expr.target,)
    if isinstance(expr, Index):
        return (expr.target, expr.index)
    if isinstance(expr, Call):
        return expr.args
    if isinstance(expr, Unary):
        return (expr.operand,)
    if isinstance(expr, Binary):
        return (expr.left, expr.right)
    if isinstance(expr, Conditional):
        return (expr.test, expr.then, expr.otherwise)
    if isinstance(expr, ObjectLit):
        return tuple(p[3] for p in expr.pairs)
    if isinstance(expr, ArrayLit):
        return expr.items
    return ()


def walk(expr: Expr, into_strings: bool = False) -> Iterator[Expr]:
    """Every node of the tree, parents before children (iteratively: trees may be deep).

    ``into_strings``: also the nodes of the expressions embedded in its string literals
    (``"${raw}"`` inside an expression reads ``raw`` too); ``walk_located`` says where they are.
    """
    if not into_strings:
        stack = [expr]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(children(node)))
        return
    for node, _ in walk_located(expr):
        yield node


def walk_located(expr: Expr) -> Iterator[tuple[Expr, int]]:
    """Every node of the tree and of the expressions embedded in its string literals, each
    with the offset its ``start``/``end`` count from: 0 for the nodes of ``expr`` itself, where
    the embedded expression's text begins in ``expr``'s text for the others. Embedded
    expressions come right after the string literal holding them."""
    stack: list[tuple[Expr, int]] = [(expr, 0)]
    while stack:
        node, base = stack.pop()
        yield node, base
        stack.extend((child, base) for child in reversed(children(node)))
        if isinstance(node, StringLit) and "${" in node.raw:
            stack.extend(reversed(_embedded_in_literal(node, base)))


def _embedded_in_literal(node: StringLit, base: int) -> list[tuple[Expr, int]]:
    """The expressions embedded in a string literal, with where their texts begin."""
    try:
        parts = split_literal(node.raw)
        return [
            (parse_expression(piece.text), base + node.start + piece.offset)
            for piece in parts
            if isinstance(piece, Piece)
        ]
    except (StringSyntaxError, ExpressionSyntaxError):
        return []  # parse_expression has reported it, for any tree it returned


def _depth_exceeds(expr: Expr, limit: int) -> bool:
    stack = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children(node))
    return False


def embedded_expressions(text: str) -> list[Embedded]:
    """The expressions of an IR template string; raises ExpressionSyntaxError with offsets in
    ``text``."""
    if "${" not in text:
        return []
    try:
        parts = split_template(text)
    except StringSyntaxError as err:
        raise ExpressionSyntaxError(err.message, err.hint, err.offset, err.offset + 2) from None
    found = []
    whole = len(parts) == 1
    for part in parts:
        if isinstance(part, Piece):
            try:
                expr = parse_expression(part.text)
            except ExpressionSyntaxError as err:
                raise ExpressionSyntaxError(
                    err.message, err.hint, part.offset + err.start, part.offset + err.end
                ) from None
            found.append(Embedded(expr, part.offset, whole))
    return found

"""The expression evaluator: expression trees compiled once into Python closures.

Expressions are never handed to Python's ``eval``: each tree node becomes a small closure over
its children, and the only things a closure can touch are the values in the evaluation context
(JSON data, bytes, and the read-only connection view) and the functions of ``functions``. There
is no attribute access at all — ``msg.__class__`` looks up the key ``"__class__"`` in a JSON
object — so a scenario can reach nothing of the process it runs in.

Operators follow JavaScript where users expect it (``&&``/``||`` return an operand, ``+`` joins
strings) and build only values within the caps of ``values``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConstantError, EvaluationError
from .functions import FUNCTIONS
from .parse import parse_expression
from .strings import Piece, split_literal, split_template, unquote
from .syntax import (
    ArrayLit,
    Binary,
    Call,
    Conditional,
    Expr,
    Index,
    Literal,
    Member,
    Name,
    ObjectLit,
    StringLit,
    Unary,
)
from .values import (
    Context,
    Evaluator,
    check_size,
    checked_items,
    checked_text,
    equal,
    is_number,
    to_text,
    truthy,
    type_name,
)

__all__ = ["compile_expression", "compile_template", "evaluate_constants"]


# ---- operators -------------------------------------------------------------------------------


def _add(a: Any, b: Any) -> Any:
    if is_number(a) and is_number(b):
        return a + b
    if isinstance(a, str) or isinstance(b, str):
        return checked_text(to_text(a) + to_text(b))
    if isinstance(a, list) and isinstance(b, list):
        return checked_items(a + b)
    raise EvaluationError(f"cannot add {type_name(a)} and {type_name(b)}")


def _arith(symbol: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (is_number(a) and is_number(b)):
            raise EvaluationError(
                f"'{symbol}' needs numbers, not {type_name(a)} and {type_name(b)}"
            )
        if symbol in "/%" and b == 0:
            raise EvaluationError("division by zero")
        result = fn(a, b)
        if symbol == "%" and isinstance(a, int) and isinstance(b, int):
            return int(result)
        if symbol == "/" and isinstance(result, float) and result.is_integer():
            return int(result) if abs(result) < 2**53 else result
        return result

    return apply


def _order(symbol: str, fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def apply(a: Any, b: Any) -> bool:
        if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return fn(a, b)
        if a is None or b is None:
            # A missing field is never greater or smaller than anything: `where msg.n > 10`
            # simply does not match a message without n (as in JavaScript).
            return False
        raise EvaluationError(f"cannot compare {type_name(a)} and {type_name(b)} with '{symbol}'")

    return apply


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    if isinstance(container, list):
        return any(equal(item, x) for x in container)
    if isinstance(container, str):
        if not isinstance(item, str):
            raise EvaluationError(f"cannot look for {type_name(item)} in a string")
        return item in container
    raise EvaluationError(
        f"'in' needs an object, array or string on its right, not {type_name(container)}"
    )


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _arith("-", operator.sub),
    "*": _arith("*", operator.mul),
    "/": _arith("/", operator.truediv),
    "%": _arith("%", math.fmod),
    "==": equal,
    "!=": lambda a, b: not equal(a, b),
    "<": _order("<", operator.lt),
    "<=": _order("<=", operator.le),
    ">": _order(">", operator.gt),
    ">=": _order(">=", operator.ge),
    "in": _contains,
    "not in": lambda a, b: not _contains(a, b),
}


def _member(target: Any, name: str) -> Any:
    if isinstance(target, Mapping):
        return target.get(name)
    if target is None:
        raise EvaluationError(f"cannot read '{name}' of null")
    raise EvaluationError(f"cannot read '{name}' of {type_name(target)}")


def _index(target: Any, key: Any) -> Any:
    if isinstance(target, Mapping):
        if not isinstance(key, str):
            key = to_text(key)
        return target.get(key)
    if isinstance(target, list | str):
        if not is_number(key) or int(key) != key:
            raise EvaluationError(
                f"an index into {type_name(target)} must be a whole number, not {type_name(key)}"
            )
        i = int(key)
        return target[i] if 0 <= i < len(target) else None
    if target is None:
        raise EvaluationError(f"cannot index null with {to_text(key)!r}")
    raise EvaluationError(f"cannot index {type_name(target)}")


# ---- compilation -----------------------------------------------------------------------------


def compile_expression(expr: Expr) -> Evaluator:
    """A closure computing ``expr`` from a context (name → value)."""
    if isinstance(expr, Literal):
        value = expr.value
        return lambda ctx: value
    if isinstance(expr, Name):
        name = expr.name
        return lambda ctx: ctx.get(name)
    if isinstance(expr, StringLit):
        return _compile_pieces(split_literal(expr.raw))
    if isinstance(expr, Member):
        key = expr.name
        if isinstance(expr.target, Name):
            # The common case (msg.type, conn.id), without the target's closure call.
            name = expr.target.name

            def read_member(ctx: Context) -> Any:
                value = ctx.get(name)
                if type(value) is dict:
                    return value.get(key)
                return _member(value, key)

            return read_member
        target = compile_expression(expr.target)
        return lambda ctx: _member(target(ctx), key)
    if isinstance(expr, Index):
        target, index = compile_expression(expr.target), compile_expression(expr.index)
        return lambda ctx: _index(target(ctx), index(ctx))
    if isinstance(expr, Call):
        fn = FUNCTIONS[expr.name].call
        args = [compile_expression(a) for a in expr.args]
        return lambda ctx: fn(*[a(ctx) for a in args])
    if isinstance(expr, Unary):
        operand = compile_expression(expr.operand)
        if expr.op == "!":
            return lambda ctx: not truthy(operand(ctx))
        return lambda ctx: _negate(operand(ctx))
    if isinstance(expr, Binary):
        return _compile_binary(expr)
    if isinstance(expr, Conditional):
        test, then = compile_expression(expr.test), compile_expression(expr.then)
        otherwise = compile_expression(expr.otherwise)
        return lambda ctx: then(ctx) if truthy(test(ctx)) else otherwise(ctx)
    if isinstance(expr, ObjectLit):
        pairs = [(_key(raw), compile_expression(v)) for raw, _, _, v in expr.pairs]
        return lambda ctx: {k: v(ctx) for k, v in pairs}
    assert isinstance(expr, ArrayLit)
    items = [compile_expression(i) for i in expr.items]
    return lambda ctx: [i(ctx) for i in items]


def _key(raw: str) -> str:
    return unquote(raw) if raw[0] in "\"'" else raw


def _negate(value: Any) -> Any:
    if not is_number(value):
        raise EvaluationError(f"cannot negate {type_name(value)}")
    return -value


def _compile_binary(expr: Binary) -> Evaluator:
    left, right = compile_expression(expr.left), compile_expression(expr.right)
    if expr.op == "&&":
        return lambda ctx: right(ctx) if truthy(v := left(ctx)) else v
    if expr.op == "||":
        return lambda ctx: v if truthy(v := left(ctx)) else right(ctx)
    if expr.op == "??":
        return lambda ctx: right(ctx) if (v := left(ctx)) is None else v
    fn = _BINARY[expr.op]
    return lambda ctx: fn(left(ctx), right(ctx))


def _compile_pieces(parts: list[str | Piece]) -> Evaluator:
    """Interpolation: text pieces joined with the text of each embedded expression."""
    if len(parts) == 1 and isinstance(parts[0], str):
        text = parts[0]
        return lambda ctx: text
    compiled: list[str | Evaluator] = [
        p if isinstance(p, str) else compile_expression(parse_expression(p.text)) for p in parts
    ]

    def interpolate(ctx: Context) -> str:
        return checked_text("".join(p if isinstance(p, str) else to_text(p(ctx)) for p in compiled))

    return interpolate


def compile_template(value: Any) -> tuple[Evaluator, bool]:
    """A closure building the template's value, and whether that value is constant.

    Constant parts are built once, here; only the parts that embed expressions run per event.
    """
    if isinstance(value, str):
        if "${" not in value:
            return (lambda ctx: value), True
        parts = split_template(value)
        if len(parts) == 1 and isinstance(parts[0], Piece):
            return compile_expression(parse_expression(parts[0].text)), False
        return _compile_pieces(parts), False
    if isinstance(value, dict):
        items = [(k, *compile_template(v)) for k, v in value.items()]
        if all(const for _, _, const in items):
            return (lambda ctx: value), True
        pairs = [(k, fn) for k, fn, _ in items]
        return (lambda ctx: {k: fn(ctx) for k, fn in pairs}), False
    if isinstance(value, list):
        compiled = [compile_template(v) for v in value]
        if all(const for _, const in compiled):
            return (lambda ctx: value), True
        fns = [fn for fn, _ in compiled]
        return (lambda ctx: [fn(ctx) for fn in fns]), False
    return (lambda ctx: value), True


def evaluate_constants(templates: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a file's top-level lets, in order (each may use the earlier ones).

    Each value is measured once, here (``check_size``), so that templates may use it unmeasured.
    Raises ConstantError for the first one that fails.
    """
    values: dict[str, Any] = {}
    for name, template in templates.items():
        try:
            value = compile_template(template)[0](dict(values))
            check_size(value)
        except EvaluationError as err:
            raise ConstantError(name, str(err)) from None
        values[name] = value
    return values

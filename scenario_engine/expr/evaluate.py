"""The expression evaluator: expression trees compiled once into Python closures.

Expressions are never handed to Python's ``eval``: each tree node becomes a small closure over
its children, and the only things a closure can touch are the values in the evaluation context
(JSON data, bytes, and the read-only connection view) and the functions of ``functions``. There
is no attribute access at all — ``msg.__class__`` looks up the key ``"__class__"`` in a JSON
object — so a scenario can reach nothing of the process it runs in.

Values follow JSON, with JavaScript's habits where users expect them: a missing key reads as
null, ``&&``/``||`` return an operand, ``+`` joins strings, truthiness is JavaScript's.
Every string or collection an operator builds is capped (``MAX_STRING``, ``MAX_ITEMS``) so that
one message cannot make the server build a gigabyte.
"""

from __future__ import annotations

import json
import math
import operator
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .functions import SIGNATURES
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

__all__ = [
    "MAX_ITEMS",
    "MAX_STRING",
    "ConstantError",
    "Context",
    "EvaluationError",
    "Evaluator",
    "compile_expression",
    "compile_template",
    "evaluate_constants",
    "to_text",
    "truthy",
]

Context = dict[str, Any]
Evaluator = Callable[[Context], Any]

#: Longest string an operator or function may build (characters).
MAX_STRING = 1_000_000
#: Most items an operator or function may put in one array or object.
MAX_ITEMS = 100_000


class EvaluationError(Exception):
    """An expression failed at run time (a type error, a division by zero, a value too big)."""


# ---- values ----------------------------------------------------------------------------------

def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, list):
        return "an array"
    return "an object"


def truthy(value: Any) -> bool:
    """JavaScript's truthiness: null, false, 0, NaN and "" are false; everything else true."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str | bytes):
        return len(value) > 0
    return True


def _number_text(value: int | float) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def to_text(value: Any) -> str:
    """A value as text, as interpolation shows it: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return _number_text(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return to_json(value)


def to_json(value: Any, bounded: bool = False) -> str:
    """Compact JSON text, as JavaScript's JSON.stringify writes it (within MAX_STRING).

    ``bounded``: the caller knows the value cannot be larger than its inputs (see
    ``check_size``), so the measuring walk is skipped.
    """
    if not bounded and type(value) is not str:
        check_size(value)
    try:
        return _ENCODER.encode(value)
    except (ValueError, RecursionError) as err:  # circular, or nested too deep
        raise EvaluationError(f"cannot encode as JSON: {err}") from None


def check_size(value: Any) -> None:
    """Raise when ``value`` would encode to more than about MAX_STRING characters.

    Values share their parts (``let a = [b, b]``), so a few small steps can describe a huge
    value: measure it, without building it, before anything encodes it. The walk stops as soon
    as the limit is passed, so it costs at most that much.
    """
    budget = MAX_STRING
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes:
            budget -= len(item) + 2
        elif kind is dict or isinstance(item, Mapping):
            budget -= 2 + len(item)
            for key, inner in item.items():
                budget -= len(key) + 3
                stack.append(inner)
        elif kind is list:
            budget -= 2 + len(item)
            stack.extend(item)
        else:
            budget -= 8
        if budget < 0:
            raise EvaluationError(f"value too large to send (more than {MAX_STRING:,} "
                                  "characters)")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"not JSON: {type_name(value)}")


# One encoder for every message: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def _checked_text(text: str) -> str:
    if len(text) > MAX_STRING:
        raise EvaluationError(f"string too long ({len(text):,} characters; the limit is "
                              f"{MAX_STRING:,})")
    return text


def _checked_items(items: Any) -> Any:
    if len(items) > MAX_ITEMS:
        raise EvaluationError(f"too many items ({len(items):,}; the limit is {MAX_ITEMS:,})")
    return items


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1 and "1" != 1."""
    try:
        return _equal(a, b)
    except RecursionError:
        raise EvaluationError("values nested too deeply to compare") from None


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b) and not (isinstance(a, Mapping) and isinstance(b, Mapping)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


# ---- operators -------------------------------------------------------------------------------

def _add(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        return a + b
    if isinstance(a, str) or isinstance(b, str):
        return _checked_text(to_text(a) + to_text(b))
    if isinstance(a, list) and isinstance(b, list):
        return _checked_items(a + b)
    raise EvaluationError(f"cannot add {type_name(a)} and {type_name(b)}")


def _arith(symbol: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (_is_number(a) and _is_number(b)):
            raise EvaluationError(f"'{symbol}' needs numbers, not {type_name(a)} and "
                                  f"{type_name(b)}")
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
        if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return fn(a, b)
        if a is None or b is None:
            # A missing field is never greater or smaller than anything: `where msg.n > 10`
            # simply does not match a message without n (as in JavaScript).
            return False
        raise EvaluationError(f"cannot compare {type_name(a)} and {type_name(b)} with "
                              f"'{symbol}'")
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
    raise EvaluationError(f"'in' needs an object, array or string on its right, not "
                          f"{type_name(container)}")


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
        if not _is_number(key) or int(key) != key:
            raise EvaluationError(f"an index into {type_name(target)} must be a whole number, "
                                  f"not {type_name(key)}")
        i = int(key)
        return target[i] if 0 <= i < len(target) else None
    if target is None:
        raise EvaluationError(f"cannot index null with {to_text(key)!r}")
    raise EvaluationError(f"cannot index {type_name(target)}")


# ---- functions -------------------------------------------------------------------------------

def _short_id(prefix: Any = None) -> str:
    token = uuid.uuid4().hex[:8]
    return f"{to_text(prefix)}-{token}" if prefix is not None else token


def _random(a: Any = None, b: Any = None) -> Any:
    if a is None:
        return random.random()
    if b is None:
        a, b = 0, a
    if not (_is_number(a) and _is_number(b)):
        raise EvaluationError("random(a, b) needs numbers")
    low, high = math.ceil(min(a, b)), math.floor(max(a, b))
    if low > high:
        raise EvaluationError(f"random({to_text(a)}, {to_text(b)}): no whole number between")
    return random.randint(low, high)


def _len(value: Any) -> int:
    if isinstance(value, str | bytes | list | Mapping):
        return len(value)
    raise EvaluationError(f"len() needs a string, array or object, not {type_name(value)}")


def _number(value: Any) -> Any:
    if _is_number(value):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise EvaluationError(f"not a number: {value[:40]!r}") from None
        return int(result) if result.is_integer() and abs(result) < 2**53 else result
    raise EvaluationError(f"cannot make a number of {type_name(value)}")


def _text_fn(name: str, fn: Callable[[str], str]) -> Callable[[Any], str]:
    def apply(value: Any) -> str:
        if not isinstance(value, str):
            raise EvaluationError(f"{name}() needs a string, not {type_name(value)}")
        return fn(value)
    return apply


def _keys(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return list(value.keys())
    raise EvaluationError(f"keys() needs an object, not {type_name(value)}")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "now": lambda: int(time.time() * 1000),
    "uuid": lambda: str(uuid.uuid4()),
    "id": _short_id,
    "random": _random,
    "len": _len,
    "str": lambda v: _checked_text(to_text(v)),
    "number": _number,
    "lower": _text_fn("lower", str.lower),
    "upper": _text_fn("upper", str.upper),
    "keys": _keys,
    "json": lambda v: _checked_text(to_json(v)),
}
assert FUNCTIONS.keys() == SIGNATURES.keys()


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
        fn = FUNCTIONS[expr.name]
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
    if not _is_number(value):
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
        p if isinstance(p, str) else compile_expression(parse_expression(p.text)) for p in parts]

    def interpolate(ctx: Context) -> str:
        return _checked_text("".join(p if isinstance(p, str) else to_text(p(ctx))
                                     for p in compiled))
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


class ConstantError(EvaluationError):
    """A top-level constant could not be evaluated; ``name`` says which."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


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

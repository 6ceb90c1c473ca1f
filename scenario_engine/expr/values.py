"""Values of the scenario language: JSON data with JavaScript's habits, and their limits.

Values are what JSON can hold (plus bytes, for binary messages, and the read-only ``conn``
view): a missing key reads as null, truthiness is JavaScript's, ``==`` is JSON equality. Every
string or collection built from values is capped (``MAX_STRING``, ``MAX_ITEMS``) so that one
message cannot make the server build a gigabyte; ``check_size`` measures a value before it is
encoded, and ``encode`` turns a value into the frame that carries it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sized
from json import encoder as json_encoder
from typing import Any, TypeVar

from ..errors import EvaluationError

__all__ = [
    "MAX_ITEMS",
    "MAX_STRING",
    "Context",
    "Evaluator",
    "check_size",
    "checked_items",
    "checked_text",
    "decode_json",
    "encode",
    "equal",
    "is_number",
    "measure",
    "to_json",
    "to_text",
    "truthy",
    "type_name",
]

_Items = TypeVar("_Items", bound=Sized)

#: The names an expression can read (msg, conn, let names…) and their values.
Context = dict[str, Any]
#: A compiled expression: computes its value from the names of a context.
Evaluator = Callable[[Context], Any]

MAX_STRING = 1_000_000
#: Most items an operator or function may put in one array or object.
MAX_ITEMS = 100_000


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
        return _encode(value)
    except ValueError as err:
        if "Out of range float" in str(err):
            raise EvaluationError(
                "NaN and Infinity are not JSON numbers (RFC 8259): no message may carry them"
            ) from None
        raise EvaluationError(f"cannot encode as JSON: {err}") from None
    except RecursionError:
        raise EvaluationError("cannot encode as JSON: nested too deeply") from None


def check_size(value: Any) -> None:
    """Raise when ``value`` would encode to more than about MAX_STRING characters.

    Values share their parts (``let a = [b, b]``), so a few small steps can describe a huge
    value: measure it, without building it, before anything encodes it. The walk stops as soon
    as the limit is passed, so it costs at most that much.
    """
    if measure(value, MAX_STRING) < 0:
        raise EvaluationError(f"value too large to send (more than {MAX_STRING:,} characters)")


def measure(value: Any, limit: int) -> int:
    """About how many characters ``value`` takes as JSON, or -1 as soon as that passes
    ``limit`` (the walk stops there, so it costs at most that much)."""
    budget = limit
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
            return -1
    return limit - budget


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"not JSON: {type_name(value)}")


# One encoder for every message: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_jsonable, allow_nan=False
)
# JSONEncoder.encode still builds its C encoder on every call (about half its time for a
# short message): build it once, with _ENCODER's own settings. No circular check (markers
# None): a value that contains itself recurses until RecursionError, which to_json reports
# as nested too deeply.
_make_c_encoder: Any = getattr(json_encoder, "c_make_encoder", None)
_c_encoder: Any = (
    None
    if _make_c_encoder is None  # an interpreter without json's C accelerator
    else _make_c_encoder(
        None,  # markers
        _ENCODER.default,
        json_encoder.encode_basestring_ascii
        if _ENCODER.ensure_ascii
        else json_encoder.encode_basestring,
        None,  # indent
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        _ENCODER.sort_keys,
        _ENCODER.skipkeys,
        _ENCODER.allow_nan,
    )
)


def _encode(value: Any) -> str:
    """``_ENCODER.encode(value)``, the same text, sooner."""
    if _c_encoder is None or isinstance(value, str):
        return _ENCODER.encode(value)
    return "".join(_c_encoder(value, 0))


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON (RFC 8259)")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e999999: a JSON number, but no double holds it
        raise ValueError(f"{text[:40]} is too large a number")
    return number


#: JSON text → value, strictly: NaN, Infinity and numbers too large for a double (which
#: Python's decoder turns into inf) are not JSON, so a text holding one is not a JSON message.
#: Raises ValueError (or RecursionError, for nesting too deep).
decode_json = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite).decode


def checked_text(text: str) -> str:
    if len(text) > MAX_STRING:
        raise EvaluationError(
            f"string too long ({len(text):,} characters; the limit is {MAX_STRING:,})"
        )
    return text


def checked_items(items: _Items) -> _Items:
    if len(items) > MAX_ITEMS:
        raise EvaluationError(f"too many items ({len(items):,}; the limit is {MAX_ITEMS:,})")
    return items


def is_number(value: Any) -> bool:
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
    if is_number(a) and is_number(b):
        return bool(a == b)
    if type(a) is not type(b) and not (isinstance(a, Mapping) and isinstance(b, Mapping)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def encode(value: Any, bounded: bool = False) -> str | bytes:
    """The frame a value becomes: bytes binary, a string its text, anything else JSON text.
    ``bounded``: as for ``to_json``."""
    if isinstance(value, str | bytes):
        return value
    return to_json(value, bounded)

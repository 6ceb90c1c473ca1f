"""The functions scenario expressions may call: each one's signature and code, in one place.

The set is closed: an expression can call these and nothing else, so a scenario can never reach
Python, the file system, the environment or the network through a function. The checker reads
the signatures (unknown names, argument counts, did-you-mean); the evaluator calls the code.

Expected messages of conversation tests have two more forms that stand for a whole value,
``any`` and ``matches(RE)``: their signatures are here too (``MATCHERS``), for the checker; what
they match is the test runner's business.
"""

from __future__ import annotations

import math
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import EvaluationError, StringSyntaxError
from .strings import unquote
from .values import (
    checked_items,
    checked_text,
    decode_json,
    equal,
    is_number,
    to_json,
    to_text,
    type_name,
)

__all__ = ["ANY", "FUNCTIONS", "MATCHERS", "Function", "Signature", "pattern_error"]


@dataclass(frozen=True, slots=True)
class Signature:
    """How a function is called: its name, how many arguments it takes, an example of its use
    and what it does (the checker's hints, and the docs, read these)."""

    name: str
    min_args: int
    max_args: int
    usage: str
    doc: str

    def arity_text(self) -> str:
        if self.min_args == self.max_args:
            n = self.min_args
            return f"{n} argument" + ("" if n == 1 else "s")
        return f"{self.min_args} to {self.max_args} arguments"


@dataclass(frozen=True, slots=True)
class Function(Signature):
    """A function expressions may call: its signature and the code that computes it."""

    call: Callable[..., Any]


def _short_id(prefix: Any = None) -> str:
    token = uuid.uuid4().hex[:8]
    return f"{to_text(prefix)}-{token}" if prefix is not None else token


def _random(a: Any = None, b: Any = None) -> Any:
    if a is None:
        return random.random()
    if b is None:
        a, b = 0, a
    if not (is_number(a) and is_number(b)):
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
    if is_number(value):
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


def _string(name: str, value: Any, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise EvaluationError(f"{name}() needs {what}, not {type_name(value)}")
    return value


def _whole(name: str, value: Any) -> int:
    if not is_number(value) or int(value) != value:
        raise EvaluationError(f"{name}() needs a whole number, not {to_text(value)[:40]}")
    return int(value)


def _starts_with(text: Any, prefix: Any) -> bool:
    return _string("startsWith", text).startswith(_string("startsWith", prefix))


def _ends_with(text: Any, suffix: Any) -> bool:
    return _string("endsWith", text).endswith(_string("endsWith", suffix))


def _slice(value: Any, start: Any = 0, end: Any = None) -> Any:
    # JavaScript's slice: negative positions count from the end, out-of-range ones are clamped.
    if not isinstance(value, str | list):
        raise EvaluationError(f"slice() needs a string or an array, not {type_name(value)}")
    first = _whole("slice", start)
    return value[first:] if end is None else value[first : _whole("slice", end)]


def _index_of(value: Any, item: Any) -> int:
    if isinstance(value, str):
        return value.find(_string("indexOf", item, "a string to look for in a string"))
    if isinstance(value, list):
        return next((i for i, x in enumerate(value) if equal(x, item)), -1)
    raise EvaluationError(f"indexOf() needs a string or an array, not {type_name(value)}")


def _split(text: Any, separator: Any) -> list[str]:
    text, separator = _string("split", text), _string("split", separator)
    # As JavaScript: an empty separator splits into characters.
    parts = list(text) if separator == "" else text.split(separator)
    return checked_items(parts)


def _join(items: Any, separator: Any = ",") -> str:
    if not isinstance(items, list):
        raise EvaluationError(f"join() needs an array, not {type_name(items)}")
    return checked_text(
        _string("join", separator).join("" if item is None else to_text(item) for item in items)
    )


def _replace(text: Any, old: Any, new: Any) -> str:
    text, old = _string("replace", text), _string("replace", old)
    if old == "":
        raise EvaluationError("replace() needs a non-empty string to replace")
    return checked_text(text.replace(old, _string("replace", new)))


def _parse(text: Any) -> Any:
    try:
        return decode_json(_string("parse", text, "JSON text (a string)"))
    except ValueError as err:
        raise EvaluationError(f"parse(): not JSON: {err}") from None
    except RecursionError:
        raise EvaluationError("parse(): not JSON: nested too deeply") from None


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "binary"
    return "array" if isinstance(value, list) else "object"


def _chance(probability: Any) -> bool:
    if not is_number(probability) or not 0 <= probability <= 1:
        raise EvaluationError(
            f"chance() needs a probability from 0 to 1, not {to_text(probability)[:40]}"
        )
    return bool(random.random() < probability)


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function(
            "now",
            0,
            0,
            "now()",
            "milliseconds since the Unix epoch, like Date.now()",
            lambda: int(time.time() * 1000),
        ),
        Function(
            "uuid", 0, 0, "uuid()", "a random UUID (version 4) string", lambda: str(uuid.uuid4())
        ),
        Function(
            "id",
            0,
            1,
            'id("game")',
            'a short unique id, with an optional prefix: "game-7f3a9c21"',
            _short_id,
        ),
        Function(
            "random",
            0,
            2,
            "random(1, 6)",
            "random() a float in [0, 1); random(a, b) an integer from a to b inclusive",
            _random,
        ),
        Function("len", 1, 1, "len(msg.items)", "length of a string, array or object", _len),
        Function(
            "str",
            1,
            1,
            "str(msg.count)",
            "a value as text (objects and arrays as JSON)",
            lambda v: checked_text(to_text(v)),
        ),
        Function("number", 1, 1, 'number("42")', "a string or boolean as a number", _number),
        Function("lower", 1, 1, "lower(msg.name)", "lower-case text", _text_fn("lower", str.lower)),
        Function("upper", 1, 1, "upper(msg.name)", "upper-case text", _text_fn("upper", str.upper)),
        Function("keys", 1, 1, "keys(users)", "the keys of an object, as an array", _keys),
        Function(
            "json",
            1,
            1,
            "json(msg)",
            "a value encoded as JSON text",
            lambda v: checked_text(to_json(v)),
        ),
        Function(
            "parse",
            1,
            1,
            "parse(slice(raw, 2))",
            "JSON text decoded into a value (the reverse of json)",
            _parse,
        ),
        Function(
            "startsWith",
            2,
            2,
            'startsWith(raw, "42")',
            "whether a string starts with another",
            _starts_with,
        ),
        Function(
            "endsWith",
            2,
            2,
            'endsWith(msg.file, ".png")',
            "whether a string ends with another",
            _ends_with,
        ),
        Function(
            "slice",
            1,
            3,
            "slice(raw, 2)",
            "part of a string or array, from start up to (not including) end; negative "
            "positions count from the end, as in JavaScript",
            _slice,
        ),
        Function(
            "indexOf",
            2,
            2,
            'indexOf(raw, "[")',
            "where a string is found in a string, or a value in an array; -1 if nowhere",
            _index_of,
        ),
        Function(
            "split",
            2,
            2,
            'split(msg.tags, ",")',
            'a string cut at every separator, as an array ("" cuts between characters)',
            _split,
        ),
        Function(
            "join",
            1,
            2,
            'join(msg.names, ", ")',
            'the items of an array as text, with a separator between them (default ",")',
            _join,
        ),
        Function(
            "replace",
            3,
            3,
            'replace(msg.text, "cat", "dog")',
            "a string with every occurrence of one string replaced by another",
            _replace,
        ),
        Function(
            "trim",
            1,
            1,
            "trim(msg.name)",
            "a string without the blanks around it",
            _text_fn("trim", str.strip),
        ),
        Function(
            "typeOf",
            1,
            1,
            'typeOf(msg.id) == "string"',
            'what a value is: "string", "number", "boolean", "null", "array", "object" or "binary"',
            _type_of,
        ),
        Function(
            "chance",
            1,
            1,
            "chance(0.1)",
            "true with the given probability (0 to 1): for faults that happen sometimes",
            _chance,
        ),
    )
}

#: The name that matches any value in an expected message.
ANY = "any"
#: Functions only expected messages may call.
MATCHERS: dict[str, Signature] = {
    s.name: s
    for s in (
        Signature(
            "matches",
            1,
            1,
            'matches("^game-")',
            "in an expected message: any string the regular expression finds a match in",
        ),
    )
}


def pattern_error(raw: str) -> str | None:
    """Why the string literal ``raw`` (quotes included) is not a valid regular expression."""
    try:
        re.compile(unquote(raw))
    except (re.error, StringSyntaxError) as err:
        return str(err)
    return None

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
from .values import checked_text, is_number, to_json, to_text, type_name

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

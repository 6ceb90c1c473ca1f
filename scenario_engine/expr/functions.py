"""The functions scenario expressions may call: their names and how many arguments each takes.

The set is closed: an expression can call these and nothing else, so a scenario can never reach
Python, the file system, the environment or the network through a function.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SIGNATURES", "Signature"]


@dataclass(frozen=True, slots=True)
class Signature:
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


SIGNATURES: dict[str, Signature] = {s.name: s for s in (
    Signature("now", 0, 0, "now()", "milliseconds since the Unix epoch, like Date.now()"),
    Signature("uuid", 0, 0, "uuid()", "a random UUID (version 4) string"),
    Signature("id", 0, 1, 'id("game")',
              'a short unique id, with an optional prefix: "game-7f3a9c21"'),
    Signature("random", 0, 2, "random(1, 6)",
              "random() a float in [0, 1); random(a, b) an integer from a to b inclusive"),
    Signature("len", 1, 1, "len(msg.items)", "length of a string, array or object"),
    Signature("str", 1, 1, "str(msg.count)", "a value as text (objects and arrays as JSON)"),
    Signature("number", 1, 1, 'number("42")', "a string or boolean as a number"),
    Signature("lower", 1, 1, "lower(msg.name)", "lower-case text"),
    Signature("upper", 1, 1, "upper(msg.name)", "upper-case text"),
    Signature("keys", 1, 1, "keys(users)", "the keys of an object, as an array"),
    Signature("json", 1, 1, "json(msg)", "a value encoded as JSON text"),
)}

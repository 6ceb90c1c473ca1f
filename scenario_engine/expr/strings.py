"""String literals and templates: escapes, and the ``${…}`` pieces embedded in strings.

Two spellings meet here. In a `.mock` string literal, backslash escapes apply (``\\n``,
``\\"``, ``\\u00e9``, and ``\\$`` for a literal ``$``). In an IR template string (JSON/YAML),
there is no escape layer of our own but one: ``$${`` stands for a literal ``${``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import StringSyntaxError

__all__ = [
    "Piece",
    "find_closing_brace",
    "join_template",
    "split_literal",
    "split_template",
    "unquote",
]


@dataclass(frozen=True, slots=True)
class Piece:
    """An embedded expression: its text and the offset of that text in the string scanned."""

    text: str
    offset: int


_ESCAPES = {
    '"': '"',
    "'": "'",
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "$": "$",
    "0": "\0",
}


def find_closing_brace(text: str, start: int) -> int | None:
    """Index of the ``}`` closing the ``${`` whose body begins at ``start``, or None.

    Braces inside quoted strings do not count, so ``${msg.a == "}"}`` closes at the last brace.
    """
    depth = 0
    quote: str | None = None
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if quote is not None:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return None


def split_literal(raw: str) -> list[str | Piece]:
    """Split a `.mock` string literal (with its quotes) into text and embedded expressions.

    Offsets of pieces and errors are relative to ``raw`` (so the opening quote is offset 0).
    """
    parts: list[str | Piece] = []
    buf: list[str] = []
    i, end = 1, len(raw) - 1
    while i < end:
        c = raw[i]
        if c == "\\":
            i = _escape(raw, i, buf)
            continue
        if c == "$" and raw.startswith("${", i):
            close = find_closing_brace(raw[:end], i + 2)
            if close is None:
                raise StringSyntaxError(
                    "unclosed '${' in string",
                    i,
                    "close the expression with '}', or write \\${ for a literal '${'",
                )
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(_piece(raw, i + 2, close))
            i = close + 1
            continue
        buf.append(c)
        i += 1
    if buf or not parts:
        parts.append("".join(buf))
    return parts


def _escape(raw: str, i: int, buf: list[str]) -> int:
    nxt = raw[i + 1] if i + 1 < len(raw) - 1 else ""
    if nxt == "u":
        digits = raw[i + 2 : i + 6]
        if len(digits) == 4 and all(d in "0123456789abcdefABCDEF" for d in digits):
            buf.append(chr(int(digits, 16)))
            return i + 6
        raise StringSyntaxError("bad unicode escape", i, "write \\u followed by 4 hex digits")
    if nxt in _ESCAPES:
        buf.append(_ESCAPES[nxt])
        return i + 2
    raise StringSyntaxError(
        f"unknown escape '\\{nxt}'",
        i,
        "use \\\\ for a backslash; the escapes are \\n \\t \\r \\\" \\' \\\\ \\$ \\uXXXX",
    )


def _piece(text: str, start: int, close: int) -> Piece:
    body = text[start:close]
    if not body.strip():
        raise StringSyntaxError("empty '${}' in string", start - 2, "put an expression inside")
    return Piece(body, start)


def split_template(text: str) -> list[str | Piece]:
    """Split an IR template string into text and embedded expressions (``$${`` is a literal)."""
    if "${" not in text:
        return [text]
    parts: list[str | Piece] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("$${", i):
            buf.append("${")
            i += 3
        elif text.startswith("${", i):
            close = find_closing_brace(text, i + 2)
            if close is None:
                raise StringSyntaxError(
                    "unclosed '${' in string",
                    i,
                    "close the expression with '}', or write $${ for a literal '${'",
                )
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(_piece(text, i + 2, close))
            i = close + 1
        else:
            buf.append(text[i])
            i += 1
    if buf or not parts:
        parts.append("".join(buf))
    return parts


def join_template(parts: list[str | Piece]) -> str:
    """The IR template string for ``parts`` (the inverse of ``split_template``).

    Text ending in ``$`` right before an expression (``"US$${amount}"`` in a `.mock` string:
    a dollar sign, then the amount) cannot be written as ``$`` + ``${…}``, which would read as
    the ``$${`` escape; that ``$`` is written as the expression ``${"$"}`` instead.
    """
    out: list[str] = []
    for i, part in enumerate(parts):
        if isinstance(part, Piece):
            out.append("${" + part.text + "}")
            continue
        text = part.replace("${", "$${")
        if text.endswith("$") and i + 1 < len(parts) and isinstance(parts[i + 1], Piece):
            text = text[:-1] + '${"$"}'
        out.append(text)
    return "".join(out)


def unquote(raw: str) -> str:
    """The value of a string literal in which ``${`` has no special meaning (keys, paths, types)."""
    buf: list[str] = []
    i, end = 1, len(raw) - 1
    while i < end:
        if raw[i] == "\\":
            i = _escape(raw, i, buf)
        else:
            buf.append(raw[i])
            i += 1
    return "".join(buf)

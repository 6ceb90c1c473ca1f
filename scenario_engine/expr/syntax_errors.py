"""Turning lark's syntax errors into ScenarioErrors a person can act on.

Shared by the `.mock` parser and the expression parser: both report an unexpected token by
saying what the grammar expected there, in words, with a did-you-mean when a keyword was meant.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from ..errors import did_you_mean
from .syntax import keywords, name_regex, parser

__all__ = ["MAX_NESTING", "block_end", "brackets_balance", "describe_syntax_error", "max_nesting"]

#: Deepest bracket nesting accepted in a file or an expression; deeper input is an error
#: (not a RecursionError further down the pipeline).
MAX_NESTING = 100

_ACTIONS = (
    "send",
    "broadcast",
    "join",
    "leave",
    "close",
    "ping",
    "pong",
    "let",
    "log",
    "if",
    "every",
    "after",
    "cancel",
    "wait",
    "set",
    "unset",
    "drop",
)
_ROUTE_ITEMS = (
    "heartbeat",
    "compression",
    "max",
    "origins",
    "subprotocols",
    "latency",
    "auth",
    "on",
    "every",
)
_TOP_ITEMS = ("prefix", "let", "state", "route", "test")
_AUTH_STEPS = ("reject", "accept", "let", "wait")
#: Words that start an item of a route or of the file, never an action: met where an action
#: is expected, they mean the block before them was not closed.
_OUTER_WORDS = frozenset(_ROUTE_ITEMS + _TOP_ITEMS) - frozenset(_ACTIONS)
#: What people used to other tools write for an action, and the action that does it.
_ACTION_SYNONYMS = {
    "emit": "send",
    "reply": "send",
    "respond": "send",
    "publish": "broadcast",
    "subscribe": "join",
    "unsubscribe": "leave",
    "disconnect": "close",
    "terminate": "close",
    "end": "close",
    "kill": "drop",
    "abort": "drop",
    "destroy": "drop",
    "sleep": "wait",
    "delay": "wait",
    "pause": "wait",
    "timeout": "after",
    "settimeout": "after",
    "later": "after",
    "interval": "every",
    "setinterval": "every",
    "repeat": "every",
    "schedule": "every",
    "stop": "cancel",
    "clear": "cancel",
    "clearinterval": "cancel",
    "cleartimeout": "cancel",
    "assign": "set",
    "store": "set",
    "put": "set",
    "update": "set",
    "delete": "unset",
    "remove": "unset",
    "print": "log",
    "console": "log",
    "var": "let",
    "const": "let",
}
_EVENTS = ("connect", "message", "close", "error")
#: A test step that does not start with a client's name.
_TEST_STEPS = ("connect", "wait", "let")
#: What may follow a client's name in a test step.
_CLIENT_STEPS = frozenset({"close", "expect", "send"})

_REGEX_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "PATH": "a path such as /ws/chat",
    "QUANTITY": "a value with a unit such as 10s or 1KB",
    "COMPARE": "a comparison",
    "ADD": "'+' or '-'",
    "MUL": "'*', '/' or '%'",
    "$END": "the end of the file",
}


def _literal(name: str) -> str | None:
    """The text of a terminal that is a fixed string (a keyword, punctuation), else None."""
    try:
        pattern = parser().get_terminal(name).pattern
    except KeyError:
        return None
    return pattern.value if pattern.type == "str" else None


def _terminal_text(name: str) -> str:
    if name in _REGEX_NAMES:
        return _REGEX_NAMES[name]
    literal = _literal(name)
    return f"'{literal}'" if literal is not None else name.lower()


def _keywords(expected: Collection[str]) -> set[str]:
    """The keywords among the terminals the parser expected."""
    return {word for word in map(_literal, expected) if word in keywords()}


def _token_text(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    value = str(token)
    return f"'{value}'" if len(value) <= 40 else f"'{value[:37]}...'"


def describe_syntax_error(err: UnexpectedInput, text: str) -> tuple[str, str | None, int, int]:
    """Message, hint, and the [start, end) offsets in ``text`` that the error is about."""
    if isinstance(err, UnexpectedCharacters):
        pos: int = err.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        if char in "\"'":
            return (
                "unterminated string",
                "a string ends on the line it starts, with the same quote it opens with",
                pos,
                pos + 1,
            )
        shown = repr(char) if char.isprintable() and char != " " else f"U+{ord(char or chr(0)):04X}"
        return (f"unexpected character {shown}", None, pos, pos + 1)
    assert isinstance(err, UnexpectedToken)
    token = err.token
    expected = err.accepts or err.expected
    words = _keywords(expected)
    start = token.start_pos if token.start_pos is not None else len(text)
    end = token.end_pos if token.end_pos is not None else start + 1
    got = _token_text(token)
    word = str(token) if token.type != "$END" and str(token).isidentifier() else None

    if token.type == "$END":
        hint = None
        if "RBRACE" in expected:
            opened = _unclosed_brace(text)
            hint = "a '}' is missing" + (
                f": the block opened on line {opened} is not closed" if opened else ""
            )
        return ("unexpected end of file", hint, len(text), len(text))
    if word in _OUTER_WORDS and set(_ACTIONS) <= words:
        opened = _unclosed_brace(text[:start])
        where = f" the block opened on line {opened}" if opened else " a block"
        return (
            f"unexpected '{word}' among actions: a '}}' is missing",
            f"close{where} before this line",
            start,
            end,
        )
    for group, what in (
        (_ACTIONS, "action"),
        (_ROUTE_ITEMS, "route setting or handler"),
        (_AUTH_STEPS, "auth step"),
        (_EVENTS, "event"),
        (_TOP_ITEMS, "top-level statement"),
    ):
        if set(group) <= words:
            if word is not None:
                synonym = _ACTION_SYNONYMS.get(word.lower()) if group is _ACTIONS else None
                return (
                    f"unknown {what} '{word}'",
                    (f"did you mean '{synonym}'?" if synonym else None)
                    or did_you_mean(word, group)
                    or f"expected one of: {', '.join(group)}",
                    start,
                    end,
                )
            return (
                f"expected {_article(what)} {what}, got {got}",
                f"expected one of: {', '.join(group)}",
                start,
                end,
            )
    names = sorted({_terminal_text(n) for n in expected if not n.startswith("__")})
    if {"NAME", "NUMBER", "STRING"} <= set(expected):
        names = ["an expression"]
    if not names:  # the parser can only reduce here: nothing may follow
        return (f"unexpected {got}", None, start, end)
    listing = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    hint = None
    if expected == {"STRING"} and word is not None:
        hint = f'put it in quotes: "{word}"'
    elif word is not None and words:
        hint = did_you_mean(word, words)
    if hint is None and words == _CLIENT_STEPS:
        # The parser took the word before for a client's name, which starts a client step.
        client = _word_before(text, start)
        if client is not None:
            name = text[client[0] : client[1]]
            line_start = text.rfind("\n", 0, client[0]) + 1
            if _BARE_REASON.search(text[line_start : client[0]]):
                return (
                    f"unexpected '{name}' after the close code",
                    f'a close reason in a test is a quoted string: "{name}"',
                    *client,
                )
            hint = did_you_mean(name, _TEST_STEPS)
    return (f"unexpected {got}; expected {listing}", hint, start, end)


#: ``close 4000`` (or ``expect close 4000``) and blanks ending the text: a word after them on
#: the same line was meant as the close reason, which in a test is a string literal.
_BARE_REASON = re.compile(r"\bclose[ \t]+[0-9]+[ \t]+\Z")
#: How far back ``_word_before`` looks: a name, then blanks and comments.
_LOOK_BACK = 1000


def _word_before(text: str, offset: int) -> tuple[int, int] | None:
    """[start, end) of the name right before ``offset`` (blanks and comments between), or
    None."""
    window = max(0, offset - _LOOK_BACK)
    # Possessive: a line of many '#' must not be split into comments in every possible way.
    before = re.search("(" + name_regex().pattern + r")(?:\s|#[^\n]*+)*+\Z", text[window:offset])
    if before is None or (before.start() == 0 and window > 0):
        return None
    return window + before.start(1), window + before.end(1)


def _article(what: str) -> str:
    return "an" if what[0] in "aeiou" else "a"


_NESTING_TOKENS = re.compile(r"""[{\[(]|[}\])]|"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|#[^\n]*""")


def brackets_balance(text: str) -> bool:
    """Whether each kind of bracket is opened as often as closed in ``text``, not counting
    those inside strings and comments."""
    count = {c: 0 for c in "{}[]()"}
    for match in _NESTING_TOKENS.finditer(text):
        if match.group() in count:
            count[match.group()] += 1
    return all(count[o] == count[c] for o, c in ("{}", "[]", "()"))


def block_end(text: str, start: int, line_end: int) -> int | None:
    """Where the brackets opened on the line ``text[start:line_end]`` are all closed again
    (the offset of the last closing bracket), or None when the line opens none, or they never
    close. Strings and comments do not count."""
    depth = 0
    for match in _NESTING_TOKENS.finditer(text, start):
        c = match.group()
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth < 0:
                return None
            if depth == 0 and match.start() >= line_end:
                return match.start()
        if match.start() >= line_end and depth <= 0:
            return None
    return None


def _unclosed_brace(text: str) -> int | None:
    """Line of the last '{' that is never closed (strings and comments skipped)."""
    opened: list[int] = []
    for match in _NESTING_TOKENS.finditer(text):
        if match.group() == "{":
            opened.append(match.start())
        elif match.group() == "}" and opened:
            opened.pop()
    return text.count("\n", 0, opened[-1]) + 1 if opened else None


def max_nesting(text: str) -> tuple[int, int]:
    """The deepest bracket nesting in ``text`` and the offset where it is first reached.

    Brackets inside strings (escapes included) and comments do not count.
    """
    depth = best = where = 0
    for match in _NESTING_TOKENS.finditer(text):
        c = match.group()
        if c in "{[(":
            depth += 1
            if depth > best:
                best, where = depth, match.start()
        elif c in "}])":
            depth -= 1
    return best, where

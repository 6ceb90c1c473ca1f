"""A recording read from a journal file, and the check that every event is one.

A recording is a journal (runtime/journal.py; docs/admin.md): one JSON object per line, as
``serve --journal`` and ``record --journal`` write them. The inference reads the events
``connect``, ``reject``, ``in``, ``out`` and ``close``, and the proxy's additions when they are
there (``connect.subprotocol``/``protocols``, ``reject.query``/``headers``, ``close.by``); the
others (``unmatched``, ``error``, ``reload``, kinds it does not know) pass through unchecked.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import JournalError, UsageError
from ..runtime.journal import payload, seconds

__all__ = ["check_events", "event_problem", "read_journal"]

Event = dict[str, Any]

#: Larger journal files are refused before reading: what a session records is far smaller.
MAX_JOURNAL_BYTES = 256 * 1024 * 1024


def read_journal(path: Path) -> list[Event]:
    """The events of a journal file, in order; blank lines are skipped.

    Raises ``JournalError`` (``FILE:LINE: …``) for a line that is not JSON or not an event the
    inference can use, and ``UsageError`` for a file that cannot be read."""
    name = str(path)
    try:
        if path.stat().st_size > MAX_JOURNAL_BYTES:
            raise UsageError(f"{name}: larger than {MAX_JOURNAL_BYTES:,} bytes; is it a journal?")
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"{name}: {err.strerror or err}") from None
    events: list[Event] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except UnicodeDecodeError:
            raise JournalError(name, number, "not UTF-8 text") from None
        except json.JSONDecodeError as err:
            raise JournalError(
                name,
                number,
                f"not JSON ({err.msg} at column {err.colno}); a journal has "
                "one JSON object per line, as serve --journal writes it",
            ) from None
        problem = event_problem(event)
        if problem is not None:
            raise JournalError(name, number, problem)
        events.append(event)
    return events


def check_events(events: Iterable[object], source: str = "<events>") -> list[Event]:
    """``events`` as a list, each checked as ``read_journal`` checks a line (``line`` in the
    error is the event's position, from 1)."""
    checked: list[Event] = []
    for number, event in enumerate(events, 1):
        problem = event_problem(event)
        if problem is not None:
            raise JournalError(source, number, problem)
        assert isinstance(event, dict)
        checked.append(event)
    return checked


def event_problem(event: object) -> str | None:
    """Why ``event`` is not a journal event the inference can read, or None."""
    if not isinstance(event, dict):
        return f"not an event: a JSON {_kind(event)}, where an object with an 'event' is expected"
    kind = event.get("event")
    if not isinstance(kind, str):
        return "not an event: no 'event' naming what happened (connect, in, out, close…)"
    time = event.get("time")
    if not isinstance(time, str) or not _is_time(time):
        return f"'{kind}' event without a 'time' such as \"2026-11-25T19:50:01.123Z\""
    for field, expected in _FIELDS.get(kind, ()):
        problem = _field_problem(event, field, expected)
        if problem is not None:
            return f"'{kind}' event: {problem}"
    if kind in ("in", "out"):
        return _payload_problem(event, kind)
    if kind == "reject" and not (_is_int(event.get("status")) or _is_int(event.get("code"))):
        return "'reject' event: neither a 'status' nor a 'code'"
    if kind == "close" and event.get("by") not in (None, "client", "server"):
        return "'close' event: 'by' is \"client\" or \"server\""
    return None


#: The fields each event must have (a trailing ``?``: may be missing or null), and their type.
_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "connect": (
        ("connection", "string"),
        ("path", "path"),
        ("route", "string?"),
        ("query", "strings?"),
        ("headers", "strings?"),
        ("subprotocol", "string?"),
        ("protocols", "string list?"),
    ),
    "reject": (
        ("path", "path"),
        ("reason", "string?"),
        ("query", "strings?"),
        ("headers", "strings?"),
    ),
    "in": (("connection", "string"),),
    "out": (("connections", "string list"),),
    "close": (("connection", "string"), ("code", "integer?"), ("reason", "string?")),
}


def _field_problem(event: Event, field: str, expected: str) -> str | None:
    optional = expected.endswith("?")
    kind = expected.rstrip("?")
    value = event.get(field)
    if value is None:
        return None if optional else f"no '{field}'"
    valid = {
        "string": isinstance(value, str),
        "path": isinstance(value, str) and value.startswith("/"),
        "integer": _is_int(value),
        "strings": isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
        "string list": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if valid:
        return None
    wanted = {
        "string": "a string",
        "path": "a path starting with /",
        "integer": "a whole number",
        "strings": "an object of strings",
        "string list": "a list of strings",
    }[kind]
    return f"'{field}' is {wanted}, not {json.dumps(value)[:60]}"


def _payload_problem(event: Event, kind: str) -> str | None:
    text, binary = event.get("text"), event.get("binary")
    if isinstance(text, str) and binary is None:
        return None
    if isinstance(binary, str) and text is None:
        try:
            payload(event)
        except binascii.Error:
            return f"'{kind}' event: 'binary' is not base64"
        return None
    return f"'{kind}' event: the message is a 'text' string or a 'binary' base64 string"


def _is_time(text: str) -> bool:
    try:
        seconds(text)
    except ValueError:
        return False
    return True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"

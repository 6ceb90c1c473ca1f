"""The journal: what happened on a server, in order, as plain JSON-able events.

Every event has ``seq`` (1, 2, 3, … for the life of the journal), ``time`` (ISO 8601, UTC, in
milliseconds: when it happened, which for a ``connect`` of the recording proxy may be a moment
before the events recorded ahead of it) and ``event``, one of:

- ``connect``: ``connection``, ``route`` (the route's path pattern), ``path``, ``query``,
  ``headers`` (names in lower case);
- ``reject``: ``path``, ``query``, ``headers`` (what the refused client sent), ``reason``, and
  ``status`` (an HTTP refusal of the handshake) or ``code`` (a close right after it);
- ``in``: ``connection``, and ``text`` or ``binary`` (base64);
- ``unmatched``: ``connection``, and ``text`` or ``binary``: a message no handler took (after
  its ``in`` event);
- ``out``: ``connections`` (every client the message was written to: one event per send or
  broadcast, not one per recipient), and ``text`` or ``binary``;
- ``close``: ``connection``, ``code``, ``reason``;
- ``error``: ``connection`` (None for an ``auth`` block), ``location`` (the scenario's
  file:line:col), ``message``: a handler, ``on close`` or ``auth`` failed;
- ``reload``: ``added``, ``changed``, ``removed`` (route paths), ``reset`` (files whose state
  started over), ``kept`` and ``closed`` (how many clients stayed, how many were closed with
  1012): a new version of the scenarios is served (``serve --watch``). The ``close`` events of
  the clients it closed follow.

The recording proxy (``scenario-engine record``; recording/proxy.py) writes the same events
about the server it stands in front of, with these differences: ``connect`` has ``route`` null
(the proxy knows no route patterns), ``subprotocol`` (the one the server selected, or null) and
``protocols`` (the client's offer); ``out`` is one event per receiving connection (the proxy
cannot tell a broadcast); ``close`` has ``by``, "client" or "server": the side that closed first
(or dropped the connection: code 1006; the proxy stopping closes as the client, with 1001). A
``reject`` is an HTTP refusal of the handshake, or a close with a code of 4000–4999 before any
message, right after the handshake (what an ``auth`` block's ``reject 4001`` does).

With ``serve --workers``, every event also says which ``worker`` recorded it (the journal's
``stamp``).

The last ``limit`` events are kept in memory (none with a limit of 0: a journal only written
to its sink); a ``sink`` also gets each event as one JSON line as it happens. Workers that
share one file write to it through ``AppendedLines``, each line whole. The server's
event loop records; tests read from their own thread (the pytest fixture runs the server in a
thread of its own), so reads take a snapshot under a lock.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "DEFAULT_LIMIT",
    "AppendedLines",
    "Journal",
    "Sink",
    "payload",
    "payload_fields",
    "seconds",
    "timestamp",
]

DEFAULT_LIMIT = 10_000

logger = logging.getLogger("scenario_engine")

Event = dict[str, Any]


class Sink(Protocol):
    """Where a journal writes its lines: a text file, standard output, ``AppendedLines``."""

    def write(self, text: str, /) -> object: ...
    def flush(self) -> None: ...


class Journal:
    """The last ``limit`` events of a server, optionally written to ``sink`` as JSON lines.

    ``limit`` 0 keeps none in memory: reads find nothing, and only the sink gets the events.
    ``stamp``: fields every event carries, after ``event`` (``{"worker": 2}``).
    """

    def __init__(
        self,
        limit: int = DEFAULT_LIMIT,
        sink: Sink | None = None,
        stamp: Mapping[str, Any] | None = None,
    ) -> None:
        if limit < 0:
            raise ValueError(f"a journal keeps 0 events or more, not {limit}")
        self.stamp = dict(stamp or {})
        # With maxlen 0, append drops the event at once: nothing is kept, nothing to special-case.
        self._events: collections.deque[Event] = collections.deque(maxlen=limit)
        self._seq = 0
        self._sink = sink
        self._changed = threading.Condition(threading.Lock())
        # Waking waiters costs a little on every event: only done while someone waits.
        self._waiting = 0

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the latest event recorded (0 before the first); ``clear`` keeps it."""
        return self._seq

    def record(self, event: str, **fields: Any) -> Event:
        return self.record_at(time.time(), event, **fields)

    def record_at(self, now: float, event: str, **fields: Any) -> Event:
        """Record an event that happened at ``now`` (a time.time() value), a moment ago: the
        recording proxy learns only then whether a connection was a refusal."""
        with self._changed:
            self._seq += 1
            entry: Event = {
                "seq": self._seq,
                "time": timestamp(now),
                "event": event,
                **self.stamp,
                **fields,
            }
            self._events.append(entry)
            if self._waiting:
                self._changed.notify_all()
            if self._sink is not None:
                self._write(entry)
        return entry

    def _write(self, entry: Event) -> None:
        # Flushed at once, not when the buffer fills: an ``out`` event is recorded before its
        # message is written to the socket, so a client that has the message finds it in the
        # file. (A line-buffered file would make the same write(2) per line.)
        assert self._sink is not None
        try:
            self._sink.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._sink.flush()
        except (OSError, ValueError) as err:  # a full disk, a closed file: stop writing
            logger.error("journal: cannot write any more events: %s", err)
            self._sink = None

    def events(
        self, since: int = 0, connection: str | None = None, limit: int | None = None
    ) -> list[Event]:
        """Events after ``since`` (a ``seq``), oldest first; only those of ``connection`` if
        given (``out`` events that reached it included); at most ``limit`` of them."""
        with self._changed:
            snapshot = list(self._after(since))
        if connection is not None:
            snapshot = [e for e in snapshot if _concerns(e, connection)]
        return snapshot if limit is None else snapshot[:limit]

    def latest(self, since: int = 0, limit: int = DEFAULT_LIMIT) -> list[Event]:
        """The newest ``limit`` events after ``since`` (a ``seq``), oldest first: what a reader
        that can take only so many shows of what happened since it last looked."""
        with self._changed:
            newer = min(len(self._events), max(self._seq - since, 0), max(limit, 0))
            picked = list(itertools.islice(reversed(self._events), newer))
        picked.reverse()
        return picked

    def clear(self) -> None:
        """Forget every event; numbering goes on from ``last_seq``."""
        with self._changed:
            self._events.clear()

    def wait_for(
        self, event: str, connection: str | None = None, *, since: int = 0, timeout: float = 5.0
    ) -> Event:
        """The first ``event`` after ``since`` (of ``connection`` if given), waiting up to
        ``timeout`` seconds for it. Call it from another thread than the server's."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._waiting += 1
            try:
                seen = since
                while True:
                    for entry in self._after(seen):
                        if entry["event"] == event and (
                            connection is None or _concerns(entry, connection)
                        ):
                            return entry
                    # On the next wake-up, look at the newer events only (``since`` may be
                    # ahead of the journal: then it stands).
                    seen = max(seen, self._seq)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        whose = f" of connection {connection}" if connection else ""
                        raise TimeoutError(
                            f"no {event!r} event{whose} after seq {since} within {timeout:g}s"
                        )
                    self._changed.wait(remaining)
            finally:
                self._waiting -= 1

    def _after(self, since: int) -> Iterator[Event]:
        """The events kept with a ``seq`` after ``since``; call it holding the lock."""
        # Sequence numbers are consecutive in the deque: skip to ``since`` directly.
        skip = since - self._events[0]["seq"] + 1 if self._events else 0
        return itertools.islice(self._events, max(skip, 0), None)

    def messages_in(self, connection: str | None = None) -> list[str | bytes]:
        """The messages clients sent (of ``connection`` if given), oldest first."""
        return [_payload(e) for e in self.events(connection=connection) if e["event"] == "in"]

    def messages_out(self, connection: str | None = None) -> list[str | bytes]:
        """The messages the server sent (to ``connection`` if given), oldest first."""
        return [_payload(e) for e in self.events(connection=connection) if e["event"] == "out"]


class AppendedLines:
    """A journal file that several processes write to (the workers of ``serve --workers``):
    each line goes to the end of the file in one write(2).

    POSIX makes a write to a file opened with O_APPEND land whole at the end, with no other
    write in between; a buffered file could split a long line into several writes, and the
    lines of two workers would then mix. (A pipe gives that guarantee only up to PIPE_BUF
    bytes, so standard output is not shared this way: the supervisor passes each worker's
    lines on whole.) Network file systems such as NFS do not keep it.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)

    def write(self, text: str, /) -> int:
        data = text.encode()
        written = os.write(self._fd, data)
        # Only a full disk or a signal makes a short write: the rest still goes out.
        while written < len(data):
            written += os.write(self._fd, data[written:])
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> AppendedLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def payload_fields(data: str | bytes) -> dict[str, str]:
    """A message as event fields: ``text``, or ``binary`` in base64."""
    if isinstance(data, str):
        return {"text": data}
    return {"binary": base64.b64encode(data).decode("ascii")}


def payload(event: Event) -> str | bytes:
    """The message of an ``in`` or ``out`` event (the inverse of ``payload_fields``);
    binascii.Error when its ``binary`` is not base64."""
    text = event.get("text")
    if text is not None:
        return str(text)
    return base64.b64decode(event["binary"], validate=True)


def seconds(time_field: str) -> float:
    """The time.time() value of an event's ``time`` (the inverse of ``timestamp``);
    ValueError when it is not an ISO 8601 time."""
    return datetime.fromisoformat(time_field).timestamp()


def timestamp(seconds: float) -> str:
    """``2026-11-25T19:50:01.123Z`` for a time.time() value."""
    whole, millis = divmod(round(seconds * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def _concerns(entry: Event, connection: str) -> bool:
    return entry.get("connection") == connection or connection in entry.get("connections", ())


def _payload(entry: Event) -> str | bytes:
    text: str | None = entry.get("text")
    return text if text is not None else base64.b64decode(entry["binary"])

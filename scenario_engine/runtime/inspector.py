"""The inspector: a page at ``/__admin/`` that shows a running mock live, and the WebSocket feed
that keeps it live.

The page is static files shipped in the package (``inspector_page/``: HTML, CSS, JavaScript
and an icon, no build step, nothing fetched from elsewhere), answered on the admin API's port
with a strict Content-Security-Policy. The page changes nothing by itself: its actions (send,
close, state, reset) are requests to the admin API, with the admin API's checks.

The feed, ``FEED_PATH``, is a WebSocket of the server itself, not a route of the scenarios. It
opens only for whom the admin API answers (the same network and Host checks; a handshake is held
to the same-origin rule of writes), sends a snapshot, then updates: the journal's new events,
the rows of the connection table that changed, the ``state`` of the files whose state changed.
docs/inspector.md describes the messages.

Bounds, so that a busy mock stays fast and the page stays usable:

- while no feed is open, nothing runs: the feed reads the journal, which the admin API keeps
  anyway, from a timer that the first feed starts and that stops with the last one. No event
  costs more than its record in the journal, open feed or not;
- an update goes out at most every BATCH_INTERVAL, with at most MAX_BATCH_EVENTS events and
  MAX_BATCH_BYTES of them, the newest; those left out are counted (``dropped``). A message's
  text is cut at MAX_EVENT_TEXT characters, a broadcast's list of recipients at MAX_RECIPIENTS;
- the connection table and the state are compared with what the feeds were last sent at most
  every REFRESH_INTERVAL while events come in, and every IDLE_REFRESH otherwise (a timer may
  change a session without any event); one comparison serves every feed;
- a feed client with more than MAX_FEED_QUEUED bytes unread is closed with 1008, as a slow
  client of a route is; the page reconnects and starts again from a snapshot.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import json
import logging
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from .admin import ADMIN_PREFIX, Admin
from .journal import Journal
from .link import Link

__all__ = ["FEED_PATH", "Inspector"]

#: The feed's WebSocket.
FEED_PATH = ADMIN_PREFIX + "/live"
#: Seconds between two updates of the feed, at most.
BATCH_INTERVAL = 0.1
#: Seconds between two comparisons of the connection table and the state with what the feeds
#: have, while events come in; and while none do.
REFRESH_INTERVAL = 0.5
IDLE_REFRESH = 2.0
#: Most events in one update, and most bytes of them: the newest are kept.
MAX_BATCH_EVENTS = 100
MAX_BATCH_BYTES = 128 * 1024
#: Events of the journal in the snapshot (the page shows this many), and most bytes of them.
SNAPSHOT_EVENTS = 500
MAX_SNAPSHOT_BYTES = 512 * 1024
#: Characters of a message's text (or base64) in an event; recipients listed for a broadcast.
MAX_EVENT_TEXT = 4096
MAX_RECIPIENTS = 100
#: A session or a state whose JSON is longer is not sent; the page reads it from the admin API.
MAX_SESSION_TEXT = 2048
MAX_STATE_TEXT = 256 * 1024
#: Bytes a feed client may leave unread before it is closed (1008): more than a snapshot of a
#: thousand connections with their sessions, which a page on a slow network needs to take in.
MAX_FEED_QUEUED = 4 * 1024 * 1024
#: A feed is pinged this often and closed if it does not answer by the next ping (a page
#: whose machine went to sleep).
FEED_KEEPALIVE = 20.0
#: The page sends nothing on the feed: anything larger than this closes it (1009).
FEED_MAX_MESSAGE = 1024
#: How long a feed closed for being slow gets to read the close frame before it is cut off.
SLOW_CLOSE_TIMEOUT = 2.0
CLOSE_POLICY_VIOLATION = 1008

#: The page's files: the name under ADMIN_PREFIX → the file in the package and its type.
_FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "inspector.js": ("inspector.js", "text/javascript; charset=utf-8"),
    "inspector.css": ("inspector.css", "text/css; charset=utf-8"),
    # Its own icon: else the browser asks for /favicon.ico, which the journal records as a
    # refused handshake.
    "favicon.svg": ("favicon.svg", "image/svg+xml"),
}
#: Scripts and styles from the page's own files only (no inline script, so an injected tag
#: could not run), connections back to this server only, nothing else loaded, never framed.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

logger = logging.getLogger("scenario_engine")

Event = dict[str, Any]


class Inspector:
    """The page and the feed of one server, whose admin API is ``admin`` and whose journal is
    ``journal`` (None: the feed has no events to show). Runs on the server's event loop."""

    def __init__(self, admin: Admin, journal: Journal | None) -> None:
        self.admin = admin
        self.journal = journal
        self._files = {
            name: (_read(filename), content_type)
            for name, (filename, content_type) in _FILES.items()
        }
        #: The open feeds, and the timer of their next update (None: not running).
        self._feeds: set[Link] = set()
        self._timer: asyncio.TimerHandle | None = None
        #: What the feeds were last sent: the journal's last event; every connection's row
        #: and every file's state, as JSON text; when those were compared last (loop time),
        #: and the journal's last event then.
        self._seq = 0
        self._rows: dict[str, str] = {}
        self._states: dict[str, str] = {}
        self._refreshed = 0.0
        self._refreshed_seq = 0

    # ---- the page --------------------------------------------------------------------------
    @staticmethod
    def serves(target: str) -> bool:
        """Whether a request target (under ADMIN_PREFIX) is one of the page's files."""
        return _file_name(target) is not None

    def respond(self, peer: str | None, request: Request) -> Response:
        """One of the page's files, to the client at ``peer``, if the admin API answers it."""
        refused = self.admin.refusal(peer, request, changes_state=False)
        if refused is not None:
            body = refused.message + "\n"
            response = _response(refused.status, body.encode(), "text/plain; charset=utf-8")
        elif request.method not in ("GET", "HEAD"):
            body = f"{request.method} not allowed: use GET\n"
            response = _response(405, body.encode(), "text/plain; charset=utf-8")
            response.headers["Allow"] = "GET, HEAD"
        else:
            name = _file_name(request.path)
            assert name is not None
            content, content_type = self._files[name]
            response = _response(200, content, content_type)
            if request.method == "HEAD":
                response = Response(200, "OK", response.headers, b"")
        logger.info("admin %s %s %s: %d", peer, request.method, request.path, response.status_code)
        return response

    # ---- the feed --------------------------------------------------------------------------
    def accept(self, link: Link, request: Request) -> Response:
        """The answer to a handshake to FEED_PATH: 101 if the admin API answers its client."""
        protocol = link.protocol
        refused = self.admin.refusal(link.peer, request, changes_state=False)
        if refused is not None:
            logger.info("inspector feed refused to %s: %s", link.peer, refused.message)
            return protocol.reject(refused.status, refused.message + "\n")
        protocol.max_message_size = FEED_MAX_MESSAGE
        return protocol.accept(request)

    def follow(self, link: Link) -> None:
        """A feed has opened (its handshake answered 101): send it the snapshot, then updates."""
        first = not self._feeds
        self._feeds.add(link)
        link.gone.add_done_callback(lambda _: self._feeds.discard(link))
        link.keepalive(FEED_KEEPALIVE)
        snapshot, rows, states, seq = self._snapshot()
        loop = asyncio.get_running_loop()
        if first:
            # Updates start from this snapshot. (A later feed's snapshot is newer than what
            # the others were sent: the next update repeats some of it, which the page takes
            # as it takes any update.)
            self._rows, self._states, self._seq = rows, states, seq
            self._refreshed, self._refreshed_seq = loop.time(), seq
        logger.info("inspector feed opened by %s", link.peer)
        self._send(link, snapshot)
        if self._timer is None:
            self._timer = loop.call_later(BATCH_INTERVAL, self._tick)

    def close(self) -> None:
        """Stop updating (the server closes the feeds' connections with every other)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _snapshot(self) -> tuple[bytes, dict[str, str], dict[str, str], int]:
        """The first message of a feed, and the rows, states and last event it holds."""
        rows = self._connection_rows()
        states = self._state_texts()
        journal = self.journal
        seq = 0 if journal is None else journal.last_seq
        events = [] if journal is None else journal.latest(0, SNAPSHOT_EVENTS)
        encoded = _encode_events(events, MAX_SNAPSHOT_BYTES)
        program = self.admin.server.engine.program
        head = json.dumps(
            {
                "type": "snapshot",
                "version": 1,
                "last": seq,
                "journal": journal is not None,
                "routes": [{"path": route.path, "file": route.file} for route in program.routes],
                "files": self.admin.files(),
                "limits": {
                    "events": SNAPSHOT_EVENTS,
                    "batchEvents": MAX_BATCH_EVENTS,
                    "eventText": MAX_EVENT_TEXT,
                    "recipients": MAX_RECIPIENTS,
                    "interval": BATCH_INTERVAL,
                },
            }
        )
        text = (
            f'{head[:-1]},"connections":[{",".join(rows.values())}],'
            f'"state":{_object(states.items())},"events":[{",".join(encoded)}],'
            f'"omitted":{len(events) - len(encoded)}}}'
        )
        return text.encode(), rows, states, seq

    def _tick(self) -> None:
        """Send the feeds what changed since the last update, then look again later."""
        self._timer = None
        if not self._feeds:
            self._rows, self._states = {}, {}  # the next feed starts from its snapshot
            return
        try:
            self._update()
        except Exception:  # a bug of ours: the mock goes on, and the feeds at the next turn
            logger.exception("inspector feed update failed")
        self._timer = asyncio.get_running_loop().call_later(BATCH_INTERVAL, self._tick)

    def _update(self) -> None:
        """Send the feeds what changed since the last update, if anything did."""
        loop = asyncio.get_running_loop()
        parts: list[str] = []
        journal = self.journal
        last = self._seq if journal is None else journal.last_seq
        if journal is not None and last != self._seq:
            events = _encode_events(journal.latest(self._seq, MAX_BATCH_EVENTS), MAX_BATCH_BYTES)
            parts.append(f'"events":[{",".join(events)}]')
            # Events recorded since the last update and not in this one: left out here, or
            # gone from the journal already (its size bound, a clear).
            dropped = last - self._seq - len(events)
            if dropped > 0:
                parts.append(f'"dropped":{dropped}')
            self._seq = last
        now = loop.time()
        due = REFRESH_INTERVAL if last != self._refreshed_seq else IDLE_REFRESH
        if now - self._refreshed >= due:
            self._refreshed, self._refreshed_seq = now, last
            parts.extend(self._changes())
        if parts:
            payload = f'{{"type":"update","last":{last},{",".join(parts)}}}'.encode()
            for link in list(self._feeds):
                self._send(link, payload)

    def _changes(self) -> list[str]:
        """The rows and states that differ from what the feeds were last sent, as parts of an
        update; what they are now becomes what the feeds have."""
        parts = []
        rows = self._connection_rows()
        changed = [text for conn_id, text in rows.items() if self._rows.get(conn_id) != text]
        removed = [conn_id for conn_id in self._rows if conn_id not in rows]
        self._rows = rows
        if changed:
            parts.append(f'"connections":[{",".join(changed)}]')
        if removed:
            parts.append(f'"removed":{json.dumps(removed)}')
        states = self._state_texts()
        differ = [(file, text) for file, text in states.items() if self._states.get(file) != text]
        self._states = states
        if differ:
            parts.append(f'"state":{_object(differ)}')
        return parts

    def _connection_rows(self) -> dict[str, str]:
        """Every open connection's row of the table (as ``GET /__admin/connections`` lists
        them, oldest first), as JSON text by connection id."""
        rows = {}
        for row in self.admin.connections():
            session = json.dumps(row["session"])
            if len(session) > MAX_SESSION_TEXT:
                row["session"] = None
                row["sessionSize"] = len(session)
            rows[row["id"]] = json.dumps(row)
        return rows

    def _state_texts(self) -> dict[str, str]:
        """Every file's ``state`` as JSON text (``null`` when it is too long to send)."""
        states = {}
        for file in self.admin.files():
            text = json.dumps(self.admin.state(file))
            states[file] = text if len(text) <= MAX_STATE_TEXT else "null"
        return states

    def _send(self, link: Link, payload: bytes) -> None:
        """Queue a message on a feed, or close the feed if it leaves too much unread."""
        if link.protocol.state is not State.OPEN:
            return
        if link.unsent() > MAX_FEED_QUEUED:
            self._feeds.discard(link)
            logger.warning(
                "closing the inspector feed of %s: too slow (over %d bytes unread)",
                link.peer,
                MAX_FEED_QUEUED,
            )
            link.close(CLOSE_POLICY_VIOLATION, "Inspector feed too slow")
            asyncio.get_running_loop().call_later(SLOW_CLOSE_TIMEOUT, link.abort)
            return
        link.send(payload, True)


def _file_name(target: str) -> str | None:
    """The page's file a request target names (``""``: the page itself), or None."""
    path = urlsplit(target).path
    if path == ADMIN_PREFIX:
        return ""
    name = path.removeprefix(ADMIN_PREFIX + "/")
    return name if name != path and name in _FILES else None


def _read(filename: str) -> bytes:
    """A file of the page, from the installed package."""
    return (resources.files("scenario_engine.runtime") / "inspector_page" / filename).read_bytes()


def _encode_events(events: Sequence[Event], budget: int) -> list[str]:
    """The newest of ``events`` (oldest first) that fit in ``budget`` bytes, as JSON texts,
    oldest first."""
    encoded: list[str] = []
    size = 0
    for event in reversed(events):
        text = json.dumps(_shortened(event))
        size += len(text) + 1
        if size > budget and encoded:
            break
        encoded.append(text)
    encoded.reverse()
    return encoded


def _shortened(event: Event) -> Event:
    """An event as the feed sends it: a long message cut (``truncated``: its full length), a
    long list of recipients cut (``recipients``: how many there were)."""
    copy: Event | None = None
    for key in ("text", "binary"):
        value = event.get(key)
        if value is not None and len(value) > MAX_EVENT_TEXT:
            copy = dict(event)
            copy[key] = value[:MAX_EVENT_TEXT]
            copy["truncated"] = len(value)
    targets = event.get("connections")
    if targets is not None and len(targets) > MAX_RECIPIENTS:
        copy = dict(event) if copy is None else copy
        copy["connections"] = targets[:MAX_RECIPIENTS]
        copy["recipients"] = len(targets)
    return event if copy is None else copy


def _object(members: Iterable[tuple[str, str]]) -> str:
    """A JSON object from names and values that are JSON text already."""
    return "{" + ",".join(f"{json.dumps(name)}:{value}" for name, value in members) + "}"


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            ("Cache-Control", "no-store"),
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            # Other sites may not load these files (as a script of theirs, say).
            ("Cross-Origin-Resource-Policy", "same-origin"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, body)

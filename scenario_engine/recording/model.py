"""A recording as objects: the clients, what each sent, what the server delivered, refusals.

Journal events become: a ``Client`` per ``connect`` (its request, when it opened and how it
closed), a ``Sent`` per ``in``, a ``Delivery`` per message the server sent (one message and
every client it reached), a ``Refusal`` per ``reject``. Times are milliseconds since the epoch.

A served mock journals a broadcast as one ``out`` event listing every receiver; the recording
proxy cannot know a broadcast and journals one ``out`` per receiver. Its events (``route`` is
null in their ``connect``) are joined back: the same message to another client within
``SAME_MOMENT`` of the first is one delivery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..expr.values import decode_json
from ..runtime.journal import payload, seconds

__all__ = [
    "SAME_MOMENT",
    "Client",
    "Delivery",
    "Payload",
    "Recording",
    "Refusal",
    "Sent",
    "build_recording",
    "millis",
]

#: Copies of one message sent to several clients within this many milliseconds of each other
#: are one broadcast (a backend writes them in a loop; the proxy journals each as it comes).
SAME_MOMENT = 20.0


class Payload:
    """A message: ``text`` or ``data`` (binary), and ``value``, what a handler sees as ``msg``:
    the JSON value of a text that is JSON, else the text itself, or the bytes."""

    __slots__ = ("data", "is_json", "text", "value")

    def __init__(self, text: str | None, data: bytes | None) -> None:
        self.text = text
        self.data = data
        self.is_json = False
        self.value: Any = data
        if text is not None:
            self.value = text
            try:
                decoded = decode_json(text)
            except (ValueError, RecursionError):
                return
            # A JSON string ('"hi"') is text for a handler's msg but not for sending: kept
            # as the text it is, so that a reply made of it sends it alike.
            if not isinstance(decoded, str):
                self.value = decoded
                self.is_json = True

    @classmethod
    def of(cls, event: dict[str, Any]) -> Payload:
        message = payload(event)
        if isinstance(message, str):
            return cls(message, None)
        return cls(None, message)

    @property
    def binary(self) -> bool:
        return self.data is not None

    @property
    def is_object(self) -> bool:
        return self.is_json and isinstance(self.value, dict)

    def same(self, other: Payload) -> bool:
        return self.text == other.text and self.data == other.data

    def __repr__(self) -> str:
        return f"Payload({self.text!r})" if self.data is None else f"Payload({self.data!r})"


@dataclass(eq=False)
class Client:
    """One recorded connection."""

    id: str
    index: int
    path: str
    #: The route's pattern, when the journal is a served mock's (the proxy does not know it).
    pattern: str | None
    query: dict[str, str]
    headers: dict[str, str]
    subprotocol: str | None
    protocols: list[str] | None
    opened: float
    seq: int
    closed: float | None = None
    close_seq: int | None = None
    close_code: int | None = None
    close_reason: str = ""
    #: "client" or "server" when the journal says (the proxy's), else None.
    closed_by: str | None = None
    sent: list[Sent] = field(default_factory=list)
    received: list[Delivery] = field(default_factory=list)

    def open_at(self, time: float, seq: int) -> bool:
        """Whether the connection was open at that moment of the recording."""
        if (self.opened, self.seq) > (time, seq):
            return False
        return self.close_seq is None or (self.closed, self.close_seq) > (time, seq)

    def __repr__(self) -> str:
        return f"Client({self.index}, {self.path})"


@dataclass(eq=False)
class Sent:
    """A message a client sent."""

    client: Client
    time: float
    seq: int
    payload: Payload


@dataclass(eq=False)
class Delivery:
    """A message of the server, and every client it reached at that moment."""

    time: float
    seq: int
    payload: Payload
    receivers: list[Client]


@dataclass(eq=False)
class Refusal:
    """A handshake the server turned away: an HTTP ``status``, or a close ``code`` right
    after it. ``query`` and ``headers`` are None when the journal does not have them."""

    path: str
    time: float
    seq: int
    reason: str
    status: int | None
    code: int | None
    query: dict[str, str] | None
    headers: dict[str, str] | None


@dataclass
class Recording:
    clients: list[Client]
    deliveries: list[Delivery]
    refusals: list[Refusal]
    #: Whether the events come from a served mock (routes known, broadcasts journaled once).
    served: bool
    #: The first and last moments of the recording.
    start: float
    end: float

    @property
    def messages(self) -> list[Sent]:
        return sorted((s for c in self.clients for s in c.sent), key=lambda s: s.seq)


def millis(event: dict[str, Any]) -> float:
    """The event's time, in milliseconds since the epoch."""
    return seconds(event["time"]) * 1000


def build_recording(events: Iterable[dict[str, Any]]) -> Recording:
    """The recording of checked journal events (``journal_file.check_events``)."""
    clients: dict[str, Client] = {}
    deliveries: list[Delivery] = []
    refusals: list[Refusal] = []
    times: list[float] = []
    served = False
    for seq, event in enumerate(events):
        kind = event["event"]
        time = millis(event)
        times.append(time)
        if kind == "connect":
            client = Client(
                id=event["connection"],
                index=len(clients),
                path=event["path"].split("?", 1)[0],
                pattern=event.get("route"),
                query=dict(event.get("query") or {}),
                headers=dict(event.get("headers") or {}),
                subprotocol=event.get("subprotocol"),
                protocols=event.get("protocols"),
                opened=time,
                seq=seq,
            )
            served = served or client.pattern is not None
            # A served mock's ids are random and never reused: a repeated one is a new client.
            clients[client.id] = client
        elif kind == "reject":
            refusals.append(
                Refusal(
                    path=event["path"].split("?", 1)[0],
                    time=time,
                    seq=seq,
                    reason=event.get("reason") or "",
                    status=event.get("status"),
                    code=event.get("code") if event.get("status") is None else None,
                    query=event.get("query"),
                    headers=event.get("headers"),
                )
            )
        elif kind == "in":
            sender = clients.get(event["connection"])
            if sender is not None and sender.closed is None:
                sender.sent.append(Sent(sender, time, seq, Payload.of(event)))
        elif kind == "out":
            receivers = [
                clients[c]
                for c in event["connections"]
                if c in clients and clients[c].closed is None
            ]
            if receivers:
                deliveries.append(Delivery(time, seq, Payload.of(event), receivers))
        elif kind == "close":
            closing = clients.get(event["connection"])
            if closing is not None and closing.closed is None:
                closing.closed = time
                closing.close_seq = seq
                closing.close_code = event.get("code")
                closing.close_reason = event.get("reason") or ""
                closing.closed_by = event.get("by")
    if not served:
        deliveries = _joined(deliveries)
    for delivery in deliveries:
        for receiver in delivery.receivers:
            receiver.received.append(delivery)
    return Recording(
        clients=list(clients.values()),
        deliveries=deliveries,
        refusals=refusals,
        served=served,
        start=min(times, default=0.0),
        end=max(times, default=0.0),
    )


def _joined(deliveries: list[Delivery]) -> list[Delivery]:
    """One-receiver deliveries of the same message within SAME_MOMENT joined into one."""
    joined: list[Delivery] = []
    for delivery in deliveries:
        same = None
        for earlier in reversed(joined):
            if delivery.time - earlier.time > SAME_MOMENT:
                break
            if earlier.payload.same(delivery.payload) and not any(
                r in earlier.receivers for r in delivery.receivers
            ):
                same = earlier
                break
        if same is not None:
            same.receivers.extend(delivery.receivers)
        else:
            joined.append(
                Delivery(delivery.time, delivery.seq, delivery.payload, list(delivery.receivers))
            )
    return joined

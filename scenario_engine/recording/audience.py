"""Who a broadcast reaches: every client of the route, or a room, the sender or not.

A message that reached other clients than the one whose action caused it is a broadcast. The
simplest rule that gives *exactly* the receivers of every occurrence is taken, in this order:

1. every other client connected to the route (``broadcast …``), or every client including
   the sender (``… include self``);
2. a room of everyone who sent one kind of message (``join "chat"`` in that kind's handler,
   the room named after the route);
3. a room named by a field of such messages (``join msg.room``), the broadcast going to the
   room its own message names (``to msg.room``);

and for 2 and 3, clients leave the room with another kind of message naming it
(``leave msg.room``) when that is what the receivers show. An occurrence that reached nobody
is consistent with a rule that gives nobody there (the first to join a chat hears no one).
When no rule fits every occurrence, the route-wide one is taken, and only the receivers it
predicts are expected by the tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .kinds import Kind
from .model import Client, Delivery, Sent
from .timing import Trigger

__all__ = ["Audience", "Occasion", "RoomRule", "resolve"]


@dataclass(eq=False)
class Occasion:
    """One occurrence of a broadcast: what caused it, and the delivery (None: nobody got it)."""

    trigger: Trigger
    delivery: Delivery | None


@dataclass(frozen=True)
class RoomRule:
    """Clients join a room with a message of ``kind``: the room is ``name`` (a constant) or
    the value of the message's ``field``; a message of ``leave`` naming the room leaves it."""

    kind: Kind
    name: str | None
    field: str | None
    leave: Kind | None = None


@dataclass
class Audience:
    include_self: bool
    room: RoomRule | None
    #: Whether the rule gives the receivers of every occurrence.
    consistent: bool
    #: Per occasion (by position), the receivers the rule gives.
    predicted: list[set[Client]] = field(default_factory=list)


def resolve(
    occasions: Sequence[Occasion],
    clients: Sequence[Client],
    messages: Sequence[Sent],
    kinds: dict[Sent, Kind],
    room_name: str,
) -> Audience:
    """The rule for one broadcast of a handler, from all its occasions."""
    moments = [_moment(o) for o in occasions]
    open_now = _open_clients(moments, clients)
    actual = [_actual(o) for o in occasions]
    # Every other client of the route, then with the sender: kept whole, as the fallback.
    route_wide = [base - {o.trigger.client} for base, o in zip(open_now, occasions, strict=True)]
    if route_wide == actual:
        return Audience(False, None, True, route_wide)
    if open_now == actual:
        return Audience(True, None, True, open_now)
    for rule in _rules(messages, kinds, room_name):
        for include_self in (False, True):
            predicted = _predicted(
                rule, occasions, moments, open_now, messages, kinds, actual, include_self
            )
            if predicted is not None:
                return Audience(include_self, rule, True, predicted)
    included = sum(1 for o in occasions if o.delivery and o.trigger.client in o.delivery.receivers)
    if included * 2 > len(occasions):
        return Audience(
            True,
            None,
            False,
            [
                p | {o.trigger.client} if o.trigger.kind != "close" else p
                for p, o in zip(route_wide, occasions, strict=True)
            ],
        )
    return Audience(False, None, False, route_wide)


def _moment(occasion: Occasion) -> tuple[float, int]:
    if occasion.delivery is not None:
        return occasion.delivery.time, occasion.delivery.seq
    return occasion.trigger.time, occasion.trigger.seq


def _open_clients(
    moments: Sequence[tuple[float, int]], clients: Sequence[Client]
) -> list[set[Client]]:
    """The clients connected at each moment."""
    return [{c for c in clients if c.open_at(*moment)} for moment in moments]


def _predicted(
    rule: RoomRule,
    occasions: Sequence[Occasion],
    moments: Sequence[tuple[float, int]],
    open_now: Sequence[set[Client]],
    messages: Sequence[Sent],
    kinds: dict[Sent, Kind],
    actual: Sequence[set[Client]],
    include_self: bool,
) -> list[set[Client]] | None:
    """The receivers the room rule gives each occasion, if they are the actual ones every
    time (else None, as soon as one differs). The messages are walked once, in order, the
    rooms' members kept up to date as the occasions come."""
    order = sorted(range(len(occasions)), key=lambda i: moments[i][1])
    rooms: dict[Any, set[Client]] = {}
    predicted: list[set[Client]] = [set() for _ in occasions]
    position = 0
    for i in order:
        while position < len(messages) and messages[position].seq <= moments[i][1]:
            sent = messages[position]
            kind = kinds[sent]
            if kind is rule.kind:
                rooms.setdefault(_room_of(rule, sent), set()).add(sent.client)
            elif kind is rule.leave:
                rooms.get(_room_of(rule, sent), set()).discard(sent.client)
            position += 1
        occasion = occasions[i]
        trigger = occasion.trigger
        if rule.field is None:
            room: Any = rule.name
        elif trigger.sent is not None:
            room = _room_of(rule, trigger.sent)
            if not isinstance(room, str):
                return None
        else:
            return None
        members = rooms.get(room, set()) & open_now[i]
        if not include_self:
            members = members - {trigger.client}
        if members != actual[i]:
            return None
        predicted[i] = members
    return predicted


def _rules(messages: Sequence[Sent], kinds: dict[Sent, Kind], room_name: str) -> Iterator[RoomRule]:
    """The room rules, simplest first: a constant room, then rooms named by a field; each
    without leaving, then left by each other kind of message."""
    order = list(dict.fromkeys(kinds[s] for s in messages))
    leaves: list[Kind | None] = [None, *order]
    for kind in order:
        for leave in leaves:
            if leave is not kind:
                yield RoomRule(kind, room_name, None, leave)
    for kind in order:
        for name in _room_fields([s for s in messages if kinds[s] is kind], kind):
            for leave in leaves:
                if leave is not kind:
                    yield RoomRule(kind, None, name, leave)


def _room_fields(sents: Sequence[Sent], kind: Kind) -> list[str]:
    """Top-level keys with a string value in every message of a kind, but the kind's own."""
    values = [s.payload.value for s in sents]
    if not values or not all(isinstance(v, dict) for v in values):
        return []
    own = kind.key_path.removeprefix("msg.") if kind.key_path else None
    return [k for k in values[0] if k != own and all(isinstance(v.get(k), str) for v in values)]


def _room_of(rule: RoomRule, sent: Sent) -> Any:
    """The room a message of the rule's kinds names (the constant one for a constant)."""
    if rule.field is None:
        return rule.name
    value = sent.payload.value
    return value.get(rule.field) if isinstance(value, dict) else None


def _actual(occasion: Occasion) -> set[Client]:
    return set(occasion.delivery.receivers) if occasion.delivery else set()

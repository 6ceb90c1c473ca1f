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
    fallback: Audience | None = None
    for rule in _rules(messages, kinds, room_name):
        for include_self in (False, True):
            predicted = [
                _members(rule, occasion, clients, messages, kinds, include_self)
                for occasion in occasions
            ]
            consistent = all(
                p is not None and p == _actual(o)
                for p, o in zip(predicted, occasions, strict=False)
            )
            audience = Audience(include_self, rule, consistent, [p or set() for p in predicted])
            if consistent:
                return audience
            if rule is None and fallback is None:
                fallback = audience
    assert fallback is not None
    included = sum(1 for o in occasions if o.delivery and o.trigger.client in o.delivery.receivers)
    if included * 2 > len(occasions):
        fallback = Audience(
            True,
            None,
            False,
            [
                p | {o.trigger.client} if o.trigger.kind != "close" else p
                for p, o in zip(fallback.predicted, occasions, strict=True)
            ],
        )
    return fallback


def _rules(
    messages: Sequence[Sent], kinds: dict[Sent, Kind], room_name: str
) -> Iterator[RoomRule | None]:
    yield None
    order: list[Kind] = []
    for sent in messages:
        if kinds[sent] not in order:
            order.append(kinds[sent])
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
    if rule.field is None:
        return rule.name
    value = sent.payload.value
    return value.get(rule.field) if isinstance(value, dict) else None


def _members(
    rule: RoomRule | None,
    occasion: Occasion,
    clients: Sequence[Client],
    messages: Sequence[Sent],
    kinds: dict[Sent, Kind],
    include_self: bool,
) -> set[Client] | None:
    """Who the rule sends the occasion's broadcast to (None: the rule cannot say)."""
    trigger = occasion.trigger
    moment = (
        (occasion.delivery.time, occasion.delivery.seq)
        if occasion.delivery
        else (
            trigger.time,
            trigger.seq,
        )
    )
    open_now = {c for c in clients if c.open_at(*moment)}
    if rule is None:
        base = open_now
    else:
        if rule.field is None:
            room = rule.name
        elif trigger.sent is not None and kinds.get(trigger.sent) is not None:
            room = (
                _room_of(rule, trigger.sent)
                if isinstance(trigger.sent.payload.value, dict)
                else None
            )
            if not isinstance(room, str):
                return None
        else:
            return None
        members: set[Client] = set()
        for sent in messages:
            if sent.seq > moment[1]:
                break
            kind = kinds[sent]
            if kind is rule.kind and _room_of(rule, sent) == room:
                members.add(sent.client)
            elif kind is rule.leave and _room_field_value(rule, sent) == room:
                members.discard(sent.client)
        base = members & open_now
    if include_self:
        return set(base)
    return base - {trigger.client}


def _room_field_value(rule: RoomRule, sent: Sent) -> Any:
    if rule.field is None:
        return rule.name
    value = sent.payload.value
    return value.get(rule.field) if isinstance(value, dict) else None


def _actual(occasion: Occasion) -> set[Client]:
    return set(occasion.delivery.receivers) if occasion.delivery else set()

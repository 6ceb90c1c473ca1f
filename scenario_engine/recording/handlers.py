"""A handler's actions from every occurrence of its event, and what the tests may expect.

The occurrences of one event (a kind of message, connects, closes) are lined up: each
occurrence's replies, in order, by kind and delay, become the *slots* of the handler. A slot
reaching the sender alone is a ``send``; one reaching others a ``broadcast`` (audience.py); one
later than replies come an ``after D``. A reply to the sender present in fewer than half the
occurrences is not made (the recording does not say when it happens) and not expected.
Then the handler's timers (streams.py), the rooms it joins or leaves, the timers it cancels, and
a close when the server closed the connection right after.

What the handler makes of each delivery is kept as an ``Expectation``: the spec of its value,
the receivers the scenario sends it to, how long a test waits for it. A test expects the
deliveries that have one, and only those.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..language.ir import Action, BroadcastBody, CloseBody
from .audience import Audience, Occasion, RoomRule, resolve
from .generalize import Context, Recorded, Spec, generalize, string_literal
from .kinds import Kind
from .model import Client, Delivery, Sent
from .timing import Effect, Trigger, nice_duration, reply_shape, round_interval

__all__ = ["Expectation", "HandlerInput", "ServerClose", "build_actions", "context_of"]


@dataclass
class Expectation:
    """What a test may expect of one delivery."""

    spec: Spec
    receivers: set[Client]
    #: How long a test waits for it (ms), when longer than a reply takes.
    within: float | None = None
    #: The client whose action made the server send it (None: a timer of the route).
    cause: Client | None = None


@dataclass(eq=False)
class ServerClose:
    """The server closed a client's connection right after one of its triggers."""

    trigger: Trigger
    code: int
    reason: str


@dataclass
class HandlerInput:
    """What one handler is built from."""

    triggers: list[Trigger]
    effects: dict[Trigger, list[Effect]]
    closes: dict[Trigger, ServerClose]
    clients: Sequence[Client]
    messages: Sequence[Sent]
    kinds: dict[Sent, Kind]
    room_name: str
    recorded: Recorded
    identities: dict[Client, str]
    #: The path of msg naming the kind (a reply takes no value from it).
    kind: Kind | None = None


@dataclass(eq=False)
class _Slot:
    shape: str
    delay: int | None
    entries: dict[Trigger, Effect] = field(default_factory=dict)
    classes: set[str] = field(default_factory=set)


@dataclass
class Built:
    actions: list[Action]
    expectations: dict[Delivery, Expectation]
    closes: dict[Client, ServerClose]
    #: The rooms joined and left: (kind, room template) pairs, for the handlers of those kinds.
    rooms: list[RoomRule]


def context_of(
    trigger: Trigger, identities: dict[Client, str], counter: int | None = None
) -> Context:
    sent = trigger.sent
    query = trigger.client.query
    if sent is None:
        return Context(identity=identities.get(trigger.client), counter=counter, query=query)
    payload = sent.payload
    return Context(
        msg=payload.value,
        raw=payload.text,
        has_msg=payload.data is None,
        identity=identities.get(trigger.client),
        counter=counter,
        query=query,
    )


def build_actions(given: HandlerInput) -> Built:
    """The actions of one handler (streams and rooms excepted: the caller adds them)."""
    triggers = given.triggers
    counters = _counters(triggers)
    slots = _slots(triggers, given.effects, given.recorded)
    actions: list[Action] = []
    expectations: dict[Delivery, Expectation] = {}
    rooms: list[RoomRule] = []
    used: set[str] = set()
    for slot in slots:
        present = [t for t in triggers if t in slot.entries]
        values = [slot.entries[t].delivery.payload.value for t in present]
        if any(isinstance(v, bytes) for v in values):
            spec = _binary_spec(slot, present)
            if spec is None:
                continue
        else:
            contexts = [context_of(t, given.identities, counters[t]) for t in present]
            spec = generalize(values, contexts, given.recorded)
        used |= spec.uses()
        if slot.classes == {"self"}:
            if len(present) * 2 < len(triggers):
                continue
            action: Action = {"send": spec.template()}
            for trigger in present:
                delivery = slot.entries[trigger].delivery
                expectations[delivery] = Expectation(
                    spec, {trigger.client}, _within(slot), trigger.client
                )
        else:
            occasions = [
                Occasion(t, slot.entries[t].delivery if t in slot.entries else None)
                for t in triggers
            ]
            audience = resolve(
                occasions, given.clients, given.messages, given.kinds, given.room_name
            )
            action = _broadcast(spec.template(), audience)
            if audience.room is not None and audience.room not in rooms:
                rooms.append(audience.room)
            for occasion, predicted in zip(occasions, audience.predicted, strict=True):
                if occasion.delivery is not None:
                    explained = predicted & set(occasion.delivery.receivers)
                    if explained:
                        expectations[occasion.delivery] = Expectation(
                            spec, explained, _within(slot), occasion.trigger.client
                        )
        if slot.delay is not None:
            action = {"after": {"delay": nice_duration(slot.delay), "do": [action]}}
        actions.append(action)
    closes = _closes(triggers, given.closes)
    if closes:
        code, reason = closes
        body: CloseBody = {"code": code}
        if reason:
            body["reason"] = _escape(reason)
        actions.append({"close": body})
    counting: list[Action] = [
        {
            "set": {
                "path": f"session.{name}",
                "value": f"${{(session.{name} ?? 0) + 1}}",
            }
        }
        for name in sorted(used)
    ]
    closed = {
        t.client: given.closes[t] for t in triggers if t in given.closes and closes is not None
    }
    return Built(counting + actions, expectations, closed, rooms)


def _broadcast(data: Any, audience: Audience) -> Action:
    body: BroadcastBody = {"data": data}
    if audience.room is not None:
        body["to"] = [join_room(audience.room)]
    if audience.include_self:
        body["includeSelf"] = True
    return {"broadcast": body}


def join_room(rule: RoomRule) -> Any:
    """The room a message of the rule's kind joins (or leaves), as a template."""
    return _escape(rule.name or "") if rule.field is None else f"${{msg.{rule.field}}}"


def _within(slot: _Slot) -> float | None:
    return float(slot.delay) if slot.delay is not None else None


def _counters(triggers: Sequence[Trigger]) -> dict[Trigger, int]:
    seen: dict[Client, int] = {}
    counters = {}
    for trigger in triggers:
        seen[trigger.client] = seen.get(trigger.client, 0) + 1
        counters[trigger] = seen[trigger.client]
    return counters


def _slots(
    triggers: Sequence[Trigger], effects: dict[Trigger, list[Effect]], recorded: Recorded
) -> list[_Slot]:
    """The occurrences' effects lined up by kind of message and delay, in order."""
    slots: list[_Slot] = []
    for trigger in triggers:
        position = 0
        for effect in effects.get(trigger, []):
            payload = effect.delivery.payload
            shape = reply_shape(payload.value, payload.binary)
            delay = round_interval(effect.delay) if effect.late else None
            index = next(
                (
                    i
                    for i in range(position, len(slots))
                    if slots[i].shape == shape
                    and slots[i].delay == delay
                    and trigger not in slots[i].entries
                ),
                None,
            )
            if index is None:
                index = position
                slots.insert(index, _Slot(shape, delay))
            slot = slots[index]
            slot.entries[trigger] = effect
            receivers = effect.delivery.receivers
            if trigger.kind != "close" and receivers == [trigger.client]:
                slot.classes.add("self")
            else:
                slot.classes.add("others")
            position = index + 1
    for slot in slots:
        if slot.delay is not None:
            slot.delay = round_interval(statistics.median(e.delay for e in slot.entries.values()))
    return slots


def _binary_spec(slot: _Slot, present: Sequence[Trigger]) -> Spec | None:
    """A binary reply the mock can make: the binary message it answers, sent back."""
    from .generalize import FromRequest

    for trigger in present:
        sent = trigger.sent
        if sent is None or sent.payload.data != slot.entries[trigger].delivery.payload.data:
            return None
    return FromRequest("raw")


def _closes(
    triggers: Sequence[Trigger], closes: dict[Trigger, ServerClose]
) -> tuple[int, str] | None:
    """The close the server made after this event, when it did so at least half the time
    and always alike."""
    made = [closes[t] for t in triggers if t in closes]
    if not made or len(made) * 2 < len(triggers):
        return None
    kinds = {(c.code, c.reason) for c in made}
    if len(kinds) != 1:
        return None
    return next(iter(kinds))


def _escape(text: str) -> str:
    return text.replace("${", "$${")


def timer_name(label: str) -> str:
    """A timer's name from what it sends: ``price`` → ``prices``."""
    word = "".join(c if c.isalnum() else "_" for c in label).strip("_") or "push"
    if not (word[0].isalpha() or word[0] == "_"):
        word = "t_" + word
    return word if word.endswith("s") else word + "s"


def quoted(text: str) -> str:
    return string_literal(text)

"""A handler's actions from every occurrence of its event, and what the tests may expect.

The occurrences of one event (a kind of message, connects, closes) are lined up: each
occurrence's replies, in order, by kind and delay, become the *slots* of the handler. A slot
reaching the sender alone is a ``send``; one reaching others a ``broadcast`` (audience.py); one
later than replies come an ``after D``. A reply to the sender present in fewer than half the
occurrences is not made (the recording does not say when it happens) and not expected.
Then a close when the server closed the connection right after (the timers a handler starts
or cancels and the rooms it joins or leaves are added by infer.py, from every handler's
findings).

What the handler makes of each delivery is kept as an ``Expectation``: the spec of its value,
the receivers the scenario sends it to, how long a test waits for it. A test expects the
deliveries that have one, and only those.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..language.ir import Action, BroadcastBody, CloseBody, IfAction
from .audience import Audience, Occasion, RoomRule, resolve
from .generalize import (
    Context,
    FromRequest,
    Recorded,
    Spec,
    as_template,
    generalize,
    string_literal,
)
from .kinds import Kind
from .model import Client, Delivery, Sent
from .timing import Effect, Trigger, nice_duration, reply_shape, round_interval

__all__ = [
    "Expectation",
    "HandlerInput",
    "ServerClose",
    "build_actions",
    "context_of",
    "said_before",
]


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
    said: dict[Trigger, dict[tuple[Hashable, str], str]]
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
    """One handler's actions, and what they tell the tests and the other handlers."""

    actions: list[Action]
    expectations: dict[Delivery, Expectation]
    closes: dict[Client, ServerClose]
    #: The rooms joined and left: (kind, room template) pairs, for the handlers of those kinds.
    rooms: list[RoomRule]


def said_before(
    triggers: Sequence[Trigger], kinds: dict[Sent, Kind]
) -> dict[Trigger, dict[tuple[Hashable, str], str]]:
    """For each trigger, what its client had said before it: in the latest message of each
    kind, (kind, path of ``msg``) → the text there."""
    said: dict[Client, dict[tuple[Hashable, str], str]] = {}
    found = {}
    for trigger in sorted(triggers, key=lambda t: t.seq):
        so_far = said.setdefault(trigger.client, {})
        found[trigger] = dict(so_far)
        sent = trigger.sent
        kind = kinds.get(sent) if sent is not None else None
        if sent is not None and kind is not None and isinstance(sent.payload.value, dict):
            for path, text in _text_paths(sent.payload.value, "msg"):
                if path != kind.key_path:
                    so_far[(kind, path)] = text
    return found


def context_of(
    trigger: Trigger,
    identities: dict[Client, str],
    said: dict[Trigger, dict[tuple[Hashable, str], str]],
    counter: int | None = None,
) -> Context:
    sent = trigger.sent
    client = trigger.client
    context = Context(
        identity=identities.get(client),
        counter=counter,
        query=client.query,
        said=said.get(trigger, {}),
    )
    if sent is not None:
        context.msg = sent.payload.value
        context.raw = sent.payload.text
        context.has_msg = sent.payload.data is None
    return context


def _text_paths(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                yield from _text_paths(item, f"{path}.{key}")


def build_actions(given: HandlerInput) -> Built:
    """The actions of one handler (streams and rooms excepted: the caller adds them)."""
    triggers = given.triggers
    counters = _counters(triggers)
    slots = _slots(triggers, given.effects, given.recorded)
    branch = _branch(slots, triggers, given.kind)
    actions: list[Action] = []
    made = _Made()
    conditional: IfAction | None = None
    for slot in slots:
        if branch is not None and slot in branch.slots:
            holds = slot in branch.then_slots
            chosen = [t for t in triggers if (t in branch.holds) == holds]
            action = _slot_action(slot, chosen, counters, given, made, always=True)
            if action is None:
                continue
            if conditional is None:
                conditional = {"if": branch.condition, "then": [], "else": []}
                actions.append(conditional)
            conditional["then" if holds else "else"].append(action)
            continue
        action = _slot_action(slot, triggers, counters, given, made, always=False)
        if action is not None:
            actions.append(action)
    if conditional is not None and not conditional["else"]:
        del conditional["else"]
    closes = _closes(triggers, given.closes)
    if closes:
        code, reason = closes
        body: CloseBody = {"code": code}
        if reason:
            body["reason"] = as_template(reason)
        actions.append({"close": body})
    counting: list[Action] = [
        {
            "set": {
                "path": f"session.{name}",
                "value": f"${{(session.{name} ?? 0) + 1}}",
            }
        }
        for name in sorted(made.counters)
    ]
    closed = {
        t.client: given.closes[t] for t in triggers if t in given.closes and closes is not None
    }
    return Built(counting + actions, made.expectations, closed, made.rooms)


@dataclass
class _Made:
    """What the slots' actions give the rest: expectations, rooms, session counters."""

    expectations: dict[Delivery, Expectation] = field(default_factory=dict)
    rooms: list[RoomRule] = field(default_factory=list)
    counters: set[str] = field(default_factory=set)


def _slot_action(
    slot: _Slot,
    triggers: Sequence[Trigger],
    counters: dict[Trigger, int],
    given: HandlerInput,
    made: _Made,
    always: bool,
) -> Action | None:
    """The action of one slot over the occurrences ``triggers`` (None: it is not made).
    ``always``: the slot happens in each of them (a branch of an ``if``)."""
    present = [t for t in triggers if t in slot.entries]
    if not present:
        return None
    values = [slot.entries[t].delivery.payload.value for t in present]
    if any(isinstance(v, bytes) for v in values):
        spec = _binary_spec(slot, present)
        if spec is None:
            return None
    else:
        contexts = [context_of(t, given.identities, given.said, counters[t]) for t in present]
        spec = generalize(values, contexts, given.recorded)
    action: Action
    if slot.classes == {"self"}:
        if not always and len(present) * 2 < len(triggers):
            return None  # a reply that seldom came, and nothing in the request says when
        made.counters |= spec.uses()
        action = {"send": spec.template()}
        for trigger in present:
            delivery = slot.entries[trigger].delivery
            made.expectations[delivery] = Expectation(
                spec, {trigger.client}, _within(slot), trigger.client
            )
    else:
        made.counters |= spec.uses()
        occasions = [
            Occasion(t, slot.entries[t].delivery if t in slot.entries else None) for t in triggers
        ]
        audience = resolve(occasions, given.clients, given.messages, given.kinds, given.room_name)
        action = _broadcast(spec.template(), audience)
        if audience.room is not None and audience.room not in made.rooms:
            made.rooms.append(audience.room)
        for occasion, predicted in zip(occasions, audience.predicted, strict=True):
            if occasion.delivery is not None:
                explained = predicted & set(occasion.delivery.receivers)
                if explained:
                    made.expectations[occasion.delivery] = Expectation(
                        spec, explained, _within(slot), occasion.trigger.client
                    )
    if slot.delay is not None:
        action = {"after": {"delay": nice_duration(slot.delay), "do": [action]}}
    return action


@dataclass
class _Branch:
    """An ``if`` on the request: the slots that happen when it holds (``then_slots``) or
    not (the others of ``slots``), and the occurrences where it holds."""

    condition: str
    holds: set[Trigger]
    slots: set[_Slot]
    then_slots: set[_Slot]


def _branch(
    slots: Sequence[_Slot], triggers: Sequence[Trigger], kind: Kind | None
) -> _Branch | None:
    """When the occurrences had two different sets of replies to the sender, and one field of
    the request tells which (its presence, its type, its value), with two occurrences or more
    on one side: that field's condition."""
    # Replies that reach the sender whenever they happen: their absence means they did not.
    telling = [
        s
        for s in slots
        if all(t.client in e.delivery.receivers for t, e in s.entries.items()) and s.delay is None
    ]
    outcomes = {t: frozenset(s for s in telling if t in s.entries) for t in triggers}
    if len(set(outcomes.values())) != 2 or any(t.sent is None for t in triggers):
        return None
    messages = {t: t.sent.payload.value for t in triggers if t.sent is not None}
    if not all(isinstance(m, dict) for m in messages.values()):
        return None
    excluded = kind.key_path if kind is not None else None
    for condition, test in _conditions(list(messages.values()), excluded):
        holds = {t for t in triggers if test(messages[t])}
        yes = {outcomes[t] for t in holds}
        no = {outcomes[t] for t in triggers if t not in holds}
        if (
            len(yes) == 1
            and len(no) == 1
            and yes != no
            and max(len(holds), len(triggers) - len(holds)) >= 2
        ):
            (then_outcome,), (else_outcome,) = yes, no
            differing = set(then_outcome ^ else_outcome)
            return _Branch(condition, holds, differing, set(then_outcome - else_outcome))
    return None


def _conditions(
    messages: Sequence[dict[str, Any]], excluded: str | None
) -> Iterator[tuple[str, Callable[[Any], bool]]]:
    """Conditions on one field of the messages: its presence, its type, one of its values."""
    paths: list[str] = []
    for message in messages:
        for path in _scalar_paths(message, "msg"):
            if path not in paths and path != excluded:
                paths.append(path)
    for path in paths:
        yield f"{path} != null", _present(path)
        for name in dict.fromkeys(_type_name(_at(m, path)) for m in messages):
            yield f'typeOf({path}) == "{name}"', _typed(path, name)
        for value in dict.fromkeys(json.dumps(_at(m, path)) for m in messages):
            literal = json.loads(value)
            shown = string_literal(literal) if isinstance(literal, str) else value
            yield f"{path} == {shown}", _equal_to(path, value)


def _present(path: str) -> Callable[[Any], bool]:
    return lambda message: _at(message, path) is not None


def _typed(path: str, name: str) -> Callable[[Any], bool]:
    return lambda message: _type_name(_at(message, path)) == name


def _equal_to(path: str, encoded: str) -> Callable[[Any], bool]:
    return lambda message: json.dumps(_at(message, path)) == encoded


def _scalar_paths(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                yield from _scalar_paths(item, f"{path}.{key}")
    elif not isinstance(value, list):
        yield path


def _at(message: Any, path: str) -> Any:
    value = message
    for key in path.split(".")[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _broadcast(data: Any, audience: Audience) -> Action:
    body: BroadcastBody = {"data": data}
    if audience.room is not None:
        body["to"] = [join_room(audience.room)]
    if audience.include_self:
        body["includeSelf"] = True
    return {"broadcast": body}


def join_room(rule: RoomRule) -> Any:
    """The room a message of the rule's kind joins (or leaves), as a template."""
    return as_template(rule.name or "") if rule.field is None else f"${{msg.{rule.field}}}"


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


def timer_name(label: str) -> str:
    """A timer's name from what it sends: ``price`` → ``prices``."""
    word = "".join(c if c.isalnum() else "_" for c in label).strip("_") or "push"
    if not (word[0].isalpha() or word[0] == "_"):
        word = "t_" + word
    if word.endswith("s"):
        return word
    return word + "es" if word.endswith(("sh", "ch", "x")) else word + "s"

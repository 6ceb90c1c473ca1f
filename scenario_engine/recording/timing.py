"""Why each message of the server came: a reply, a delayed push, a push on a timer.

Every message the server sent is explained by timing and correlation:

- a **stream** (``every D``): messages of one kind reaching a client at regular intervals.
  It started where the client's connect or message came one interval before the first, and
  stopped with the message after which no more came (a ``cancel`` there) or with the close;
  several at once of one kind are told apart by a field constant within each (``symbol``);
- a **reply**: the latest thing that happened on the route (a connect, a message, a close)
  within the reply window before it — a client's message and its replies are milliseconds
  apart, and the window adapts to what the recording shows (``reply_window``);
- a **delayed push** (``after D``): later than the window, after the receiver's last message
  or connect.

What fits none of these (a message long after anything, to no client that did anything) is
left unexplained: the scenario does not send it and the tests do not expect it.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .model import Client, Delivery, Sent

__all__ = [
    "Effect",
    "ReplyTiming",
    "Stream",
    "Trigger",
    "attribute",
    "find_streams",
    "nice_duration",
    "reply_shape",
    "reply_window",
    "round_interval",
]


@dataclass(eq=False)
class Trigger:
    """Something a client did that the server may have answered."""

    kind: str  # "connect", "message" or "close"
    client: Client
    time: float
    seq: int
    sent: Sent | None = None

    def __repr__(self) -> str:
        return f"Trigger({self.kind}, {self.client.index}, {self.seq})"


@dataclass(eq=False)
class Effect:
    """A delivery explained by a trigger: a reply, or a push ``delay`` ms later (``late``)."""

    delivery: Delivery
    trigger: Trigger
    delay: float
    late: bool


@dataclass(eq=False)
class Stream:
    """Pushes of one kind to one client at a regular ``interval`` (ms)."""

    receiver: Client
    deliveries: list[Delivery]
    interval: float
    shape: str
    #: The field (of the pushes) whose value tells concurrent streams apart, if any.
    split: str | None
    start: Trigger | None
    #: The client's message after which the pushes stopped (a cancel there), if any.
    stop: Trigger | None
    #: Stopped on its own after ``len(deliveries)`` runs (``times N``).
    limited: bool = False
    #: What the client did one interval before the first push (``start`` is one of them).
    aligned: list[Trigger] = field(default_factory=list)


def reply_shape(value: Any, binary: bool) -> str:
    """What kind of message a value is, for grouping: its ``type`` (or the like), its keys,
    the start of its text."""
    if binary:
        return "binary"
    if isinstance(value, dict):
        for key in ("type", "event", "op", "action", "kind", "method", "cmd", "t"):
            if isinstance(value.get(key), str):
                return f"{key}={value[key]}"
        return "keys=" + ",".join(sorted(value))
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "text=" + text_token(value)
    return "json"


def text_token(text: str) -> str:
    """The first token of a text message: a run of digits, a word, or one character."""
    if not text:
        return ""
    first = text[0]
    kind: Callable[[str], bool] | None = None
    if first.isdigit():
        kind = str.isdigit
    elif first.isalpha() or first == "_":
        kind = lambda c: c.isalnum() or c in "_-"  # noqa: E731
    if kind is None:
        return first
    end = 1
    while end < len(text) and kind(text[end]):
        end += 1
    return text[:end]


@dataclass(frozen=True)
class ReplyTiming:
    """How fast the server answered in this recording (ms): ``window``, how long after a
    client's action a message can still be its answer; ``prompt``, how soon most answers
    came (a timer's push that soon after something, every time, is an answer instead)."""

    window: float
    prompt: float


def reply_window(clients: Sequence[Client]) -> ReplyTiming:
    """From the delay between each client message and the next message the client got:
    the window is twice the typical quickest and 100 ms more, from 100 ms to 1 s."""
    delays = []
    for client in clients:
        received = client.received
        i = 0
        for sent in client.sent:
            while i < len(received) and received[i].seq < sent.seq:
                i += 1
            if i < len(received):
                delays.append(received[i].time - sent.time)
    if not delays:
        return ReplyTiming(100.0, 15.0)
    quick = statistics.quantiles(delays, n=4)[0] if len(delays) > 1 else delays[0]
    quick = max(quick, 0.0)
    return ReplyTiming(min(max(2 * quick + 100.0, 100.0), 1000.0), 2 * quick + 15.0)


def _tolerance(interval: float) -> float:
    """How far a timer's push may stray from its beat: a timer's drift, a network's jitter."""
    return 0.1 * interval + 15.0


def _regular(times: Sequence[float], window: float) -> float | None:
    """The interval of ``times`` if they come regularly, slower than replies do."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if not gaps:
        return None
    middle = statistics.median(gaps)
    if middle < max(window / 2, 20.0):
        return None
    if all(abs(g - middle) <= _tolerance(middle) for g in gaps):
        return middle
    return None


def find_streams(
    clients: Sequence[Client], triggers: Sequence[Trigger], timing: ReplyTiming, end: float
) -> list[Stream]:
    """The streams of pushes each client received."""
    window = timing.window
    by_client: dict[Client, list[Trigger]] = defaultdict(list)
    for trigger in triggers:
        by_client[trigger.client].append(trigger)
    moments = sorted((t.seq, t.time) for t in triggers if t.kind != "close")
    streams: list[Stream] = []
    for client in clients:
        groups: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in client.received:
            groups[reply_shape(delivery.payload.value, delivery.payload.binary)].append(delivery)
        for shape, deliveries in groups.items():
            if len(deliveries) < 2:
                continue
            for split, run in _runs(deliveries, window):
                if _answers(run, moments, timing.prompt):
                    continue
                stream = _stream(client, run, shape, split, by_client[client], window, end)
                if stream is not None:
                    streams.append(stream)
    _agree_on_starts(streams)
    streams.sort(key=lambda s: s.deliveries[0].seq)
    return streams


def _agree_on_starts(streams: Sequence[Stream]) -> None:
    """Streams of one kind start alike: where several things a client did could have
    started one (a connect and a subscribe in the same millisecond), the start is a kind of
    thing that could have started every stream of the kind, preferring, in this order, a
    message naming what the pushes name (a subscribe to the symbol priced), a message when
    a message stopped the streams, a connect, the latest."""
    by_shape: dict[str, list[Stream]] = defaultdict(list)
    for stream in streams:
        if stream.aligned:
            by_shape[stream.shape].append(stream)
    for group in by_shape.values():
        common: list[str] | None = None
        for stream in group:
            keys = list(dict.fromkeys(_start_key(t) for t in stream.aligned))
            common = keys if common is None else [k for k in common if k in keys]
        if not common:
            continue
        stopped = any(s.stop is not None for s in group)

        def preference(key: str, group: list[Stream] = group, stopped: bool = stopped) -> Any:
            named = all(
                any(_names_the_push(t, s) for t in s.aligned if _start_key(t) == key) for s in group
            )
            return (named, stopped and key != "connect", key == "connect")

        chosen = max(reversed(common), key=preference)
        for stream in group:
            stream.start = [t for t in stream.aligned if _start_key(t) == chosen][-1]


def _names_the_push(trigger: Trigger, stream: Stream) -> bool:
    """Whether the trigger's message and the stream's first push share a text value."""
    if trigger.sent is None:
        return False
    said = {v for v in _leaves(trigger.sent.payload.value) if isinstance(v, str)}
    pushed = {v for v in _leaves(stream.deliveries[0].payload.value) if isinstance(v, str)}
    return bool(said & pushed)


def _start_key(trigger: Trigger) -> str:
    if trigger.sent is None:
        return trigger.kind
    payload = trigger.sent.payload
    return reply_shape(payload.value, payload.binary)


def _answers(run: Sequence[Delivery], moments: Sequence[tuple[int, float]], prompt: float) -> bool:
    """Whether half the run or more came promptly after something a client did (``moments``:
    their ``seq`` and time): answers to those, at the pace the clients went, not a timer."""
    prompt_ones = 0
    for delivery in run:
        i = bisect.bisect_left(moments, (delivery.seq, 0.0)) - 1
        if i >= 0 and delivery.time - moments[i][1] <= prompt:
            prompt_ones += 1
    return prompt_ones * 2 >= len(run)


def _runs(deliveries: list[Delivery], window: float) -> list[tuple[str | None, list[Delivery]]]:
    """The regular runs among deliveries of one kind: of all of them, or of each value of one
    text field when several streams of the kind ran at once (``symbol``) — whichever leaves
    fewer deliveries out of a run of three or more."""
    options: list[list[tuple[str | None, list[Delivery]]]] = [
        [(None, run) for run in _regular_runs(deliveries, window)]
    ]
    values = [d.payload.value for d in deliveries]
    if all(isinstance(v, dict) for v in values):
        for key in values[0]:
            if not all(isinstance(v.get(key), str) for v in values):
                continue
            parts: dict[Any, list[Delivery]] = defaultdict(list)
            for delivery, value in zip(deliveries, values, strict=True):
                parts[value[key]].append(delivery)
            if 2 <= len(parts) <= len(deliveries) // 2:
                options.append(
                    [(key, run) for part in parts.values() for run in _regular_runs(part, window)]
                )

    def covered(option: list[tuple[str | None, list[Delivery]]]) -> tuple[int, int]:
        lengths = [len(run) for _, run in option]
        return sum(n for n in lengths if n >= 3), sum(lengths)

    return max(options, key=covered)  # the first of equals: no split


def _regular_runs(deliveries: list[Delivery], window: float) -> list[list[Delivery]]:
    """Maximal runs of two or more deliveries at a regular interval (a stream restarted, or
    stopped and started again, makes several runs). The beat is judged on a run's first
    gaps, so that a long stream costs a look at each gap, not at the whole run each time."""
    runs: list[list[Delivery]] = []
    current: list[Delivery] = []
    for delivery in deliveries:
        if len(current) < 2 or _fits(current, delivery, window):
            current.append(delivery)
            continue
        if _regular([d.time for d in current[: _BEAT + 1]], window) is not None:
            runs.append(current)
            current = [delivery]
        else:
            current = [*current[1:], delivery]
    if len(current) >= 2 and _regular([d.time for d in current[: _BEAT + 1]], window) is not None:
        runs.append(current)
    return runs


#: How many gaps of a run set its beat.
_BEAT = 16


def _fits(run: list[Delivery], delivery: Delivery, window: float) -> bool:
    """Whether ``delivery`` continues the run on its beat."""
    head = [d.time for d in run[: _BEAT + 1]]
    if len(run) <= _BEAT:
        head.append(delivery.time)
        return _regular(head, window) is not None
    beat = _regular(head, window)
    gap = delivery.time - run[-1].time
    return beat is not None and abs(gap - beat) <= _tolerance(beat)


def _stream(
    client: Client,
    run: list[Delivery],
    shape: str,
    split: str | None,
    triggers: list[Trigger],
    window: float,
    end: float,
) -> Stream | None:
    interval = _regular([d.time for d in run], window)
    assert interval is not None
    tolerance = _tolerance(interval)
    first, last = run[0], run[-1]
    # The stream's own value (its symbol), which the messages that start and stop it name.
    marker = first.payload.value.get(split) if split is not None else None

    def names_it(trigger: Trigger) -> bool:
        return marker is None or (
            trigger.sent is not None and marker in _leaves(trigger.sent.payload.value)
        )

    # A timer's first run comes one interval after it starts: give or take a slow start.
    # Of several things the client did then, its connect, else the latest.
    aligned = [
        t
        for t in triggers
        if t.seq < first.seq
        and t.kind != "close"
        and names_it(t)
        and 0.75 * interval - tolerance <= first.time - t.time <= 1.25 * interval + tolerance
    ]
    start = next((t for t in aligned if t.kind == "connect"), aligned[-1] if aligned else None)
    if start is None and len(run) < 3:
        return None  # two messages at one interval, after nothing: no evidence of a timer
    # The next push was due by then: a close before it ended the stream, else a message
    # before it stopped it, else it stopped on its own.
    due = last.time + interval + tolerance
    closed = client.closed is not None and client.closed <= due
    after = [t for t in triggers if t.seq > last.seq and t.time <= due and t.kind == "message"]
    stop = None if closed else next((t for t in after if names_it(t)), None)
    limited = stop is None and not closed and end > due
    return Stream(client, run, interval, shape, split, start, stop, limited, aligned)


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def attribute(
    deliveries: Sequence[Delivery], triggers: Sequence[Trigger], window: float
) -> tuple[list[Effect], list[Delivery]]:
    """Each delivery's cause (replies, then delayed pushes), and the deliveries with none."""
    effects: list[Effect] = []
    unexplained: list[Delivery] = []
    ordered = sorted(triggers, key=lambda t: t.seq)
    i = 0
    recent: list[Trigger] = []
    for delivery in sorted(deliveries, key=lambda d: d.seq):
        while i < len(ordered) and ordered[i].seq < delivery.seq:
            recent.append(ordered[i])
            i += 1
        cause = _cause(delivery, recent, window)
        if cause is None:
            unexplained.append(delivery)
            continue
        delay = delivery.time - cause.time
        effects.append(Effect(delivery, cause, delay, late=delay > window))
    return effects, unexplained


def _cause(delivery: Delivery, recent: list[Trigger], window: float) -> Trigger | None:
    close_by = list(
        itertools.takewhile(lambda t: delivery.time - t.time <= window, reversed(recent))
    )
    receivers = delivery.receivers
    for trigger in close_by:
        if trigger.kind == "close" and trigger.client in receivers:
            continue
        # A connect answered to others only (an announcement) is rarer than a reply to
        # someone else's message: the message is preferred if there is one.
        if (
            trigger.kind == "connect"
            and trigger.client not in receivers
            and any(t.kind == "message" for t in close_by)
        ):
            continue
        return trigger
    for trigger in reversed(recent):
        if trigger.client in receivers and trigger.kind != "close":
            return trigger
    return None


def round_interval(milliseconds: float) -> int:
    """A duration as a person would write it: 487 → 500, 1012 → 1000, 2.4 s → 2500."""
    if milliseconds <= 10:
        return 10
    steps = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10)
    magnitude = 10.0 ** math.floor(math.log10(milliseconds))
    best = min(steps, key=lambda s: abs(s * magnitude - milliseconds))
    return max(10, round(best * magnitude))


def nice_duration(milliseconds: int) -> str:
    if milliseconds % 60_000 == 0:
        return f"{milliseconds // 60_000}m"
    if milliseconds % 1000 == 0:
        return f"{milliseconds // 1000}s"
    return f"{milliseconds}ms"

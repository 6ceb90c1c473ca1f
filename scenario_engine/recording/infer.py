"""A recording → the scenario a person would have written of it.

The steps, each in a module of its own:

1. the journal's events as clients, messages and deliveries (model.py);
2. the routes: one per path, ``:params`` for id-like segments (routes.py);
3. why each delivery came: timer streams, replies, delayed pushes (timing.py);
4. the kinds of client messages, one handler each (kinds.py);
5. each handler's actions from its occurrences (handlers.py), values generalized
   (generalize.py), broadcasts given their audience and rooms (audience.py), timers from the
   streams, a close where the server closed;
6. auth from refused handshakes (auth.py);
7. a test per group of clients that talked together, one per refusal (conversations.py).
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..language.ir import (
    Action,
    Document,
    EveryBody,
    Handlers,
    MessageHandler,
    Route,
    RouteTimer,
)
from .audience import RoomRule
from .auth import AuthRule, infer_auth
from .conversations import Pause, Running, write_tests
from .generalize import Context, Recorded, as_template, generalize, request_paths
from .handlers import (
    Built,
    Expectation,
    HandlerInput,
    ServerClose,
    build_actions,
    context_of,
    join_room,
    said_before,
    timer_name,
)
from .journal_file import check_events
from .kinds import Kind, classify
from .model import Client, Delivery, Recording, Refusal, Sent, build_recording
from .routes import route_patterns
from .shapes import is_id_like
from .timing import (
    Effect,
    ReplyTiming,
    Stream,
    Trigger,
    attribute,
    find_streams,
    nice_duration,
    reply_shape,
    reply_window,
    round_interval,
)

__all__ = ["infer_scenario"]

#: A server's close code that a client rarely sends (without ``close.by``, who closed is a
#: guess: these are taken for the server's).
_CLIENT_CODES = (1000, 1001, 1005, 1006)


def infer_scenario(
    events: Iterable[dict[str, Any]], *, name: str, hints: list[str] | None = None
) -> Document:
    """The scenario inferred from a recording's journal events; ``name`` (the recording's,
    such as the output file's stem) starts each test's name. What the recording could not
    say is appended to ``hints`` when given, one sentence each."""
    notes = hints if hints is not None else []
    recording = build_recording(check_events(events))
    if not recording.clients and not recording.refusals:
        notes.append(
            "the recording has no connection: connect a client through the recorder and "
            "talk to the server, then stop it"
        )
        return {"routes": []}
    patterns = route_patterns(
        [*(c.path for c in recording.clients), *(r.path for r in recording.refusals)],
        [c.pattern for c in recording.clients if c.pattern],
    )
    timing = reply_window(recording.clients)
    recorded = Recorded(recording.start, recording.end, _echoed(recording))
    routes: list[Route] = []
    expectations: dict[Delivery, Expectation] = {}
    closes: dict[Client, ServerClose] = {}
    refused: list[tuple[Refusal, AuthRule | None]] = []
    pauses: list[Pause] = []
    labels: dict[Sent, str] = {}
    running: list[Running] = []
    for pattern in dict.fromkeys(patterns.values()):
        clients = [c for c in recording.clients if patterns[c.path] == pattern]
        refusals = [r for r in recording.refusals if patterns[r.path] == pattern]
        inferred = _route(pattern, clients, refusals, recording, recorded, timing, notes)
        routes.append(inferred.route)
        expectations.update(inferred.expectations)
        closes.update(inferred.closes)
        refused.extend(inferred.refused)
        pauses.extend(inferred.pauses)
        labels.update(inferred.labels)
        running.extend(inferred.running)
    if not any(c.sent for c in recording.clients):
        notes.append("no client sent a message: the routes have no message handlers")
    lost = [d for d in recording.deliveries if d.payload.binary and d not in expectations]
    if lost:
        notes.append(
            f"{len(lost)} binary message(s) of the server are not reproduced: a scenario sends "
            "bytes only as the echo of a binary message it received (send raw)"
        )
    unsendable = [
        s
        for c in recording.clients
        for s in c.sent
        if s.payload.data is not None and not _utf8(s.payload.data)
    ]
    if unsendable:
        notes.append(
            f"{len(unsendable)} binary message(s) of the clients are not UTF-8: the tests "
            "cannot send them and leave them out"
        )
    tests = write_tests(
        name, recording.clients, expectations, closes, refused, pauses, labels, running, notes
    )
    document: Document = {"routes": routes}
    if recorded.tables:
        document["let"] = recorded.tables
    if tests:
        document["tests"] = tests
    return document


@dataclass
class _Inferred:
    """One route, and what its tests need to know of it."""

    route: Route
    expectations: dict[Delivery, Expectation]
    closes: dict[Client, ServerClose]
    refused: list[tuple[Refusal, AuthRule | None]]
    pauses: list[Pause]
    labels: dict[Sent, str]
    running: list[Running]


def _route(
    pattern: str,
    clients: list[Client],
    refusals: list[Refusal],
    recording: Recording,
    recorded: Recorded,
    timing: ReplyTiming,
    notes: list[str],
) -> _Inferred:
    window = timing.window
    triggers = _triggers(clients)
    streams = find_streams(clients, triggers, timing, recording.end)
    pushed = {d for s in streams for d in s.deliveries}
    members = set(clients)
    deliveries = [
        d
        for d in recording.deliveries
        if d not in pushed and all(r in members for r in d.receivers)
    ]
    effects, _ = attribute(deliveries, triggers, window)
    by_trigger: dict[Trigger, list[Effect]] = defaultdict(list)
    for effect in effects:
        by_trigger[effect.trigger].append(effect)
    message_of = {t.sent: t for t in triggers if t.sent is not None}

    def signature(sent: Sent) -> tuple[str, ...]:
        trigger = message_of[sent]
        return tuple(
            sorted(
                {
                    reply_shape(e.delivery.payload.value, e.delivery.payload.binary)
                    for e in by_trigger.get(trigger, [])
                    if sent.client in e.delivery.receivers
                }
            )
        )

    messages = sorted((s for c in clients for s in c.sent), key=lambda s: s.seq)
    kinds, kind_of = classify(messages, signature)
    identities = _identities(clients, by_trigger, recording.served)
    server_closes = _server_closes(clients, triggers, window)
    said = said_before(triggers, kind_of)
    room_name = _room_name(pattern)

    def build(chosen: list[Trigger], kind: Kind | None) -> Built:
        excluded = (kind.key_path,) if kind and kind.key_path else ()
        return build_actions(
            HandlerInput(
                triggers=chosen,
                effects=by_trigger,
                closes=server_closes,
                clients=clients,
                messages=messages,
                kinds=kind_of,
                room_name=room_name,
                recorded=dataclasses.replace(recorded, excluded=excluded),
                identities=identities,
                said=said,
                kind=kind,
            )
        )

    on_connect = build([t for t in triggers if t.kind == "connect"], None)
    by_kind = {
        kind: build([t for t in triggers if t.sent is not None and kind_of[t.sent] is kind], kind)
        for kind in kinds
    }
    on_close = build([t for t in triggers if t.kind == "close"], None)
    built = [on_connect, *by_kind.values(), on_close]
    expectations: dict[Delivery, Expectation] = {}
    closes: dict[Client, ServerClose] = {}
    for part in built:
        expectations.update(part.expectations)
        closes.update(part.closes)
    starts: dict[Kind | None, list[Action]] = defaultdict(list)
    ends: dict[Kind | None, list[Action]] = defaultdict(list)
    pauses: list[Pause] = []
    _timers(
        streams, kind_of, identities, said, recorded, starts, ends, expectations, pauses, window
    )
    rooms: list[RoomRule] = []
    for part in built:
        rooms.extend(r for r in part.rooms if r not in rooms)
    joins: dict[Kind, list[Action]] = defaultdict(list)
    for (kind_key, path), remembered in recorded.memory.items():
        if isinstance(kind_key, Kind) and kind_key in by_kind:
            joins[kind_key].append(
                {"set": {"path": f"session.{remembered}", "value": f"${{{path}}}"}}
            )
    for room in rooms:
        joined: Action = {"join": join_room(room)}
        if joined not in joins[room.kind]:
            joins[room.kind].append(joined)
        if room.leave is not None:
            left: Action = {"leave": join_room(room)}
            if left not in joins[room.leave]:
                joins[room.leave].append(left)
    handlers: Handlers = {}
    connect_actions = [*on_connect.actions, *starts[None]]
    if connect_actions:
        handlers["connect"] = connect_actions
    message_handlers: list[MessageHandler] = []
    for kind in kinds:
        actions = [*ends[kind], *joins[kind], *by_kind[kind].actions, *starts[kind]]
        actions = _close_last(actions)
        handler: MessageHandler = {"do": actions}
        if kind.type is not None:
            handler = {"type": kind.type, "do": actions}
        if kind.where is not None:
            handler["where"] = kind.where
        if kind.binary:
            handler["binary"] = True
        message_handlers.append(handler)
    if message_handlers:
        handlers["message"] = message_handlers
    if on_close.actions:
        handlers["close"] = [a for a in on_close.actions if "close" not in a]
    route: Route = {"path": pattern}
    rules, explained = infer_auth(refusals, clients)
    unknown = [r for r in refusals if r.query is None]
    if unknown:
        notes.append(
            f"{len(unknown)} refused connection(s) to {pattern} were recorded without their "
            "query and headers: no auth condition could be inferred from them"
        )
    if rules:
        route["auth"] = [rule.step() for rule in rules]
    selected = list(dict.fromkeys(c.subprotocol for c in clients if c.subprotocol))
    if selected:
        route["subprotocols"] = {"names": selected}
    if handlers:
        route["on"] = handlers
    route_timers = _route_timers(streams, recorded)
    if route_timers:
        route["every"] = route_timers
    rule_of = {}
    for refusal in explained:
        rule_of[refusal] = next(
            (r for r in rules if r.refuses(refusal.query or {}, refusal.headers or {})), None
        )
    labels = {s: kind_of[s].label for s in messages}
    running = [
        Running(s.receiver, s.start.seq, s.deliveries[-1].seq)
        for s in streams
        if s.start is not None
    ]
    return _Inferred(
        route,
        expectations,
        closes,
        [(r, rule_of[r]) for r in explained],
        pauses,
        labels,
        running,
    )


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _close_last(actions: list[Action]) -> list[Action]:
    return [a for a in actions if "close" not in a] + [a for a in actions if "close" in a]


def _triggers(clients: Sequence[Client]) -> list[Trigger]:
    triggers: list[Trigger] = []
    for client in clients:
        triggers.append(Trigger("connect", client, client.opened, client.seq))
        for sent in client.sent:
            triggers.append(Trigger("message", client, sent.time, sent.seq, sent))
        if client.closed is not None and client.close_seq is not None:
            triggers.append(Trigger("close", client, client.closed, client.close_seq))
    triggers.sort(key=lambda t: t.seq)
    return triggers


def _identities(
    clients: Sequence[Client], by_trigger: dict[Trigger, list[Effect]], served: bool
) -> dict[Client, str]:
    """Each client's id as the server shows it: a served mock's connection id, or the first
    id-like value of what the proxy's target sent a client as it connected."""
    if served:
        return {c: c.id for c in clients}
    found: dict[Client, str] = {}
    for trigger, effects in by_trigger.items():
        if trigger.kind != "connect":
            continue
        for effect in effects:
            if effect.delivery.receivers != [trigger.client]:
                continue
            value = effect.delivery.payload.value
            leaves = value.values() if isinstance(value, dict) else []
            ids = [v for v in leaves if isinstance(v, str) and is_id_like(v)]
            if ids:
                found.setdefault(trigger.client, ids[0])
    return found


def _echoed(recording: Recording) -> set[str]:
    """The string values clients sent after having received them."""
    received: dict[str, int] = {}
    for delivery in recording.deliveries:
        for leaf in _leaves(delivery.payload.value):
            received.setdefault(leaf, delivery.seq)
    echoed = set()
    for client in recording.clients:
        values = [(client.seq, [*client.path.split("/"), *client.query.values()])]
        values += [(s.seq, s.payload.value) for s in client.sent]
        for seq, value in values:
            for leaf in _leaves(value):
                if received.get(leaf, seq) < seq:
                    echoed.add(leaf)
    return echoed


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)


def _server_closes(
    clients: Sequence[Client], triggers: Sequence[Trigger], window: float
) -> dict[Trigger, ServerClose]:
    """The closes the server made right after a client's message or connect."""
    found: dict[Trigger, ServerClose] = {}
    for client in clients:
        if client.closed is None or client.close_code is None:
            continue
        by_server = client.closed_by == "server" or (
            client.closed_by is None and client.close_code not in _CLIENT_CODES
        )
        if not by_server or client.close_code == 1006:
            continue
        before = [
            t
            for t in triggers
            if t.client is client and t.kind != "close" and t.seq < (client.close_seq or 0)
        ]
        if before and client.closed - before[-1].time <= window:
            found[before[-1]] = ServerClose(before[-1], client.close_code, client.close_reason)
    return found


def _room_name(pattern: str) -> str:
    words = [s for s in pattern.split("/") if s and not s.startswith(":")]
    return words[-1] if words else "room"


def _timers(
    streams: Sequence[Stream],
    kind_of: dict[Sent, Kind],
    identities: dict[Client, str],
    said: dict[Trigger, dict[tuple[Hashable, str], str]],
    recorded: Recorded,
    starts: dict[Kind | None, list[Action]],
    ends: dict[Kind | None, list[Action]],
    expectations: dict[Delivery, Expectation],
    pauses: list[Pause],
    window: float,
) -> None:
    """Every stream started by a client's connect or message, as a timer of that handler
    (``every``), cancelled in the handler of the message that stopped it."""
    groups: dict[tuple[Kind | None, str], list[Stream]] = defaultdict(list)
    for stream in streams:
        if stream.start is None:
            continue
        start = stream.start
        kind = kind_of[start.sent] if start.sent is not None else None
        groups[(kind, stream.shape)].append(stream)
    for (kind, shape), group in groups.items():
        values: list[Any] = []
        contexts: list[Context] = []
        for stream in group:
            assert stream.start is not None
            for count, delivery in enumerate(stream.deliveries, 1):
                values.append(delivery.payload.value)
                context = context_of(stream.start, identities, said)
                context.timer_count = count
                contexts.append(context)
        if any(isinstance(v, bytes) for v in values):
            continue
        excluded = (kind.key_path,) if kind and kind.key_path else ()
        spec = generalize(values, contexts, dataclasses.replace(recorded, excluded=excluded))
        interval = round_interval(statistics.median(s.interval for s in group))
        # Named after what it sends (its type, a word), else "pushes".
        label = shape.split("=", 1)[1] if "=" in shape else ""
        label = label if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", label) else "push"
        name: Any = timer_name(label)
        stop_name: dict[Kind, Any] = {}
        path = _naming_path(group, kind_of)
        if path is not None:
            name = f"{as_template(label)}-${{{path[0]}}}"
            for stop_kind, stop_path in path[1].items():
                stop_name[stop_kind] = f"{as_template(label)}-${{{stop_path}}}"
        body: EveryBody = {
            "interval": nice_duration(interval),
            "as": name,
            "do": [{"send": spec.template()}],
        }
        if all(s.limited for s in group):
            body["times"] = round(statistics.median(len(s.deliveries) for s in group))
        starts[kind].append({"every": body})
        for stream in group:
            for delivery in stream.deliveries[:2]:
                expectations[delivery] = Expectation(
                    spec, {stream.receiver}, stream.interval, stream.receiver
                )
            if stream.stop is not None and stream.stop.sent is not None:
                stop_kind = kind_of[stream.stop.sent]
                cancel: Action = {"cancel": stop_name.get(stop_kind, name)}
                if cancel not in ends[stop_kind]:
                    ends[stop_kind].append(cancel)
                pause = _pause_after(stream, interval, window)
                if pause is not None:
                    pauses.append(pause)


def _route_timers(streams: Sequence[Stream], recorded: Recorded) -> list[RouteTimer]:
    """Streams that started with nothing a client did: the route's own timers, broadcasting
    to every client (the tests expect none of their pushes: when they come depends on when
    the server started)."""
    by_shape: dict[str, list[Delivery]] = defaultdict(list)
    intervals: dict[str, list[float]] = defaultdict(list)
    for stream in streams:
        if stream.start is None:
            known = by_shape[stream.shape]
            known.extend(d for d in stream.deliveries if d not in known)
            intervals[stream.shape].append(stream.interval)
    timers: list[RouteTimer] = []
    for shape, deliveries in by_shape.items():
        deliveries.sort(key=lambda d: d.seq)
        values = [d.payload.value for d in deliveries]
        if any(isinstance(v, bytes) for v in values):
            continue
        contexts = [Context(timer_count=n) for n in range(1, len(values) + 1)]
        spec = generalize(values, contexts, recorded)
        interval = round_interval(statistics.median(intervals[shape]))
        timers.append(
            {
                "interval": nice_duration(interval),
                "do": [{"broadcast": {"data": spec.template()}}],
            }
        )
    return timers


def _naming_path(
    group: Sequence[Stream], kind_of: dict[Sent, Kind]
) -> tuple[str, dict[Kind, str]] | None:
    """When a client ran several streams of a kind at once: the path of the start message
    holding the value that tells them apart, and for each kind of message that stopped one,
    the path of its message holding it. None when one name does."""
    concurrent = any(
        a is not b
        and a.receiver is b.receiver
        and a.deliveries[0].time <= b.deliveries[-1].time
        and b.deliveries[0].time <= a.deliveries[-1].time
        for a in group
        for b in group
    )
    key = group[0].split
    if not concurrent or key is None:
        return None
    common: list[str] | None = None
    stops: dict[Kind, list[str]] = {}
    for stream in group:
        assert stream.start is not None and stream.start.sent is not None
        value = stream.deliveries[0].payload.value.get(key)
        paths = request_paths(stream.start.sent.payload.value, value)
        common = paths if common is None else [p for p in common if p in paths]
        stop = stream.stop
        if stop is not None and stop.sent is not None:
            found = request_paths(stop.sent.payload.value, value)
            kind = kind_of[stop.sent]
            stops[kind] = [p for p in stops.get(kind, found) if p in found]
    if not common:
        return None
    return common[0], {k: v[0] for k, v in stops.items() if v}


def _pause_after(stream: Stream, interval: int, window: float) -> Pause | None:
    """After the reply to the message that stopped a stream, nothing came for 1.5 intervals:
    a test may say so."""
    stop = stream.stop
    assert stop is not None
    receiver = stream.receiver
    replies = [d for d in receiver.received if d.seq > stop.seq and d.time - stop.time <= window]
    if not replies:
        return None
    last = replies[-1]
    period = interval * 1.5
    later = [d for d in receiver.received if d.seq > last.seq]
    if later and later[0].time - last.time <= period:
        return None
    if receiver.closed is not None and receiver.closed - last.time <= period:
        return None
    return Pause(last, receiver, period)

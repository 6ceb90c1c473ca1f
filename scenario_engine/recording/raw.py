"""A recording as it happened, without inference (``record --raw``).

- a route per path, as recorded (no ``:params``);
- ``on connect``: what the first client of the path received before it sent anything;
- a handler per distinct message, in the order first sent: ``where msg == {…}`` for JSON,
  ``where raw == "…"`` for other text, ``binary`` for binary messages (one handler); it sends
  what the sender received after that message's first occurrence and before its next
  message, with a ``wait`` for each pause of 10 ms or more, as they came (pushes included);
  and a ``close`` if the server closed right after. Binary replies are sent only when they
  are the message itself (a scenario cannot write other bytes);
- a test per connection: it connects as the client did, sends what it sent, and expects what
  it received where the mock replays exactly that (the first occurrence of each message).

Every value is the one recorded: ids and times too. Broadcasts to other clients and refused
handshakes are not replayed: that is inference (``infer_scenario``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..language.ir import (
    Action,
    CloseBody,
    ConnectStep,
    Document,
    ExpectStep,
    Handlers,
    MessageHandler,
    Route,
    Test,
    TestStep,
)
from .auth import relevant_headers
from .generalize import as_template, string_literal
from .journal_file import check_events
from .model import Client, Delivery, Sent, build_recording
from .timing import nice_duration

__all__ = ["raw_scenario"]

#: Shorter pauses between two messages are not replayed.
_SHORTEST_WAIT = 10.0


def raw_scenario(
    events: Iterable[dict[str, Any]], *, name: str, hints: list[str] | None = None
) -> Document:
    """The plain sequence of a recording's events; ``name`` starts each test's name."""
    notes = hints if hints is not None else []
    recording = build_recording(check_events(events))
    if not recording.clients:
        notes.append("the recording has no connection: there is nothing to replay")
        return {"routes": []}
    routes: list[Route] = []
    tests: list[Test] = []
    paths = list(dict.fromkeys(c.path for c in recording.clients))
    for path in paths:
        clients = [c for c in recording.clients if c.path == path]
        route, replayed = _route(path, clients, notes)
        routes.append(route)
        for client in clients:
            tests.append(_test(name, client, replayed, len(tests) + 1))
    if recording.refusals:
        notes.append(f"{len(recording.refusals)} refused connection(s) are not replayed by --raw")
    return {"routes": routes, "tests": tests}


def _key(sent: Sent) -> tuple[str, Any]:
    payload = sent.payload
    if payload.data is not None:
        return ("binary", None)
    if payload.is_json:
        return ("json", _frozen(payload.value))
    return ("text", payload.text)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return ("{", tuple((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("[", tuple(_frozen(v) for v in value))
    return (type(value).__name__, value)


def _replies(client: Client, after: int, until: int | None) -> list[Delivery]:
    return [d for d in client.received if d.seq > after and (until is None or d.seq < until)]


def _route(
    path: str, clients: Sequence[Client], notes: list[str]
) -> tuple[Route, dict[tuple[str, Any], list[Delivery]]]:
    """The route of one path, and what it replays after each message (by its key)."""
    first = clients[0]
    replayed: dict[tuple[str, Any], list[Delivery]] = {}
    handlers: list[MessageHandler] = []
    on_connect = _replies(first, first.seq, first.sent[0].seq if first.sent else first.close_seq)
    replayed[("connect", None)] = on_connect
    for client in clients:
        for i, sent in enumerate(client.sent):
            key = _key(sent)
            if key in replayed:
                continue
            following = client.sent[i + 1].seq if i + 1 < len(client.sent) else client.close_seq
            replies = _replies(client, sent.seq, following)
            replayed[key] = replies
            actions = _sends(sent, replies, notes)
            if following == client.close_seq and client.closed_by != "client":
                code = client.close_code
                if (
                    code is not None
                    and (code == 1000 or 3000 <= code <= 4999)
                    and (client.closed_by == "server" or code != 1000)
                ):
                    close: CloseBody = {"code": code}
                    if client.close_reason:
                        close["reason"] = as_template(client.close_reason)
                    actions.append({"close": close})
            handlers.append(_handler(sent, actions))
    route: Route = {"path": path}
    connect_actions = _sends(None, on_connect, notes, since=first.opened)
    on: Handlers = {}
    if connect_actions:
        on["connect"] = connect_actions
    if handlers:
        on["message"] = handlers
    if on:
        route["on"] = on
    return route, replayed


def _handler(sent: Sent, actions: list[Action]) -> MessageHandler:
    payload = sent.payload
    if payload.data is not None:
        return {"binary": True, "do": actions}
    if payload.is_json:
        return {"where": f"msg == {_expression(payload.value)}", "do": actions}
    assert payload.text is not None
    return {"where": f"raw == {string_literal(payload.text)}", "do": actions}


def _sends(
    sent: Sent | None, replies: Sequence[Delivery], notes: list[str], since: float | None = None
) -> list[Action]:
    actions: list[Action] = []
    last = sent.time if sent is not None else (since or 0.0)
    for delivery in replies:
        gap = delivery.time - last
        if gap >= _SHORTEST_WAIT:
            actions.append({"wait": nice_duration(round(gap))})
        last = delivery.time
        payload = delivery.payload
        if payload.data is not None:
            if sent is not None and sent.payload.data == payload.data:
                actions.append({"send": "${raw}"})
            else:
                notes.append("binary messages of the server other than echoes are not replayed")
            continue
        actions.append({"send": as_template(payload.value)})
    return actions


def _test(
    name: str, client: Client, replayed: dict[tuple[str, Any], list[Delivery]], n: int
) -> Test:
    who = "client"
    connect: ConnectStep = {"connect": who, "path": as_template(client.path)}
    if client.query:
        connect["query"] = as_template(client.query)
    headers = relevant_headers(client.headers)
    if headers:
        connect["headers"] = as_template(headers)
    if client.protocols:
        connect["protocols"] = list(client.protocols)
    steps: list[TestStep] = [connect]
    until = client.sent[0].seq if client.sent else client.close_seq
    steps += _expects(
        who, client.opened, _replies(client, client.seq, until), replayed[("connect", None)]
    )
    for i, sent in enumerate(client.sent):
        payload = sent.payload
        if payload.data is not None:
            try:
                steps.append({"client": who, "send": payload.data.decode("utf-8"), "binary": True})
            except UnicodeDecodeError:
                break  # a test cannot send these bytes: the rest would not follow
        elif payload.is_json and isinstance(payload.value, dict | list):
            steps.append({"client": who, "send": as_template(payload.value)})
        else:
            assert payload.text is not None
            steps.append({"client": who, "send": as_template(payload.text)})
        following = client.sent[i + 1].seq if i + 1 < len(client.sent) else client.close_seq
        steps += _expects(
            who, sent.time, _replies(client, sent.seq, following), replayed[_key(sent)], sent
        )
    if client.closed_by == "client" or (client.closed_by is None and client.close_code == 1000):
        steps.append({"client": who, "close": {}})
    return {"name": f"{name}: connection {n} to {client.path}", "steps": steps}


def _expects(
    who: str,
    since: float,
    received: Sequence[Delivery],
    replayed: Sequence[Delivery],
    sent: Sent | None = None,
) -> list[TestStep]:
    """Expect steps for what the client received, when the mock replays exactly that: the
    same texts, and binary messages only as the echo of the binary message ``sent``."""
    if [d.payload.text for d in received] != [d.payload.text for d in replayed]:
        return []
    expected: list[Any] = []
    for delivery in received:
        data = delivery.payload.data
        if data is None:
            expected.append(as_template(delivery.payload.value))
            continue
        if sent is None or sent.payload.data != data:
            return []
        try:
            expected.append(as_template(data.decode("utf-8")))
        except UnicodeDecodeError:
            return []
    steps: list[TestStep] = []
    last = since
    for delivery, value in zip(received, expected, strict=True):
        step: ExpectStep = {"client": who, "expect": value}
        gap = delivery.time - last
        if gap >= _SHORTEST_WAIT:
            step["within"] = nice_duration(round(gap * 1.5 + 500))
        last = delivery.time
        steps.append(step)
    return steps


def _expression(value: Any) -> str:
    """A JSON value as an expression of the language."""
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, dict):
        members = ", ".join(f"{string_literal(k)}: {_expression(v)}" for k, v in value.items())
        return "{ " + members + " }" if members else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_expression(v) for v in value) + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return repr(value)

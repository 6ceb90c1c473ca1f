"""The recorded conversations as tests: one per group of clients that talked to each other.

Clients belong together when one's action reached another (a broadcast, a close announced to
the others) or when one sends back an id another received. Each group becomes a test that
replays it in the recorded order: the clients connect as they did (query, credentials,
subprotocols), send what they sent, and expect what the scenario explains of what they
received (handlers.Expectation) — ids, times and random values matched by shape or ``any``,
ids the server made captured and sent back by name. Each refused handshake the auth rules
explain is a test of its own.

So that a test passes against the mock and against the server it was recorded from:

- tests are not strict: messages the scenario does not explain pass unnoticed;
- two clients' messages in a row with nothing awaited between are 50 ms apart, so that the
  server takes them in the recorded order (a room joined before the next client's message);
- a timer's pushes are expected for their first two runs only, each within one and a half
  intervals; and when a stream was cancelled and nothing else came for that long in the
  recording, the test says that no message comes after the cancel's reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..expr.syntax import keywords
from ..language.ir import CloseBody, ConnectStep, ExpectStep, Test, TestStep
from .auth import AuthRule, relevant_headers
from .generalize import ArraySpec, ObjectSpec, Spec, Varying, as_template, string_literal
from .handlers import Expectation, ServerClose
from .model import Client, Delivery, Refusal, Sent
from .timing import nice_duration, round_interval

__all__ = ["Pause", "Running", "write_tests"]

_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
_NAME_KEYS = ("username", "name", "user", "nick", "nickname", "from")
_WORD = re.compile(r"[a-z][a-z0-9_]{0,15}")
#: Between two clients' messages with nothing awaited in between.
SETTLE = "50ms"
#: A test replays this much of a conversation at most: a test is read by people, and a long
#: recording says the same things many times over.
MAX_STEPS = 300


@dataclass
class Running:
    """A timer of ``client`` ran between these two moments of the recording (``seq``)."""

    client: Client
    start: int
    end: int


@dataclass
class Pause:
    """After ``after`` (a delivery) the client received nothing for ``period`` ms."""

    after: Delivery
    client: Client
    period: float


def write_tests(
    name: str,
    clients: Sequence[Client],
    expectations: dict[Delivery, Expectation],
    closes: dict[Client, ServerClose],
    refusals: Sequence[tuple[Refusal, AuthRule | None]],
    pauses: Sequence[Pause],
    labels: dict[Sent, str],
    running: Sequence[Running] = (),
    notes: list[str] | None = None,
) -> list[Test]:
    """The tests of a recording: its conversations, then its refusals. A conversation cut
    at MAX_STEPS is said in ``notes``."""
    captured = _captured_values(clients, expectations)
    groups = _groups(clients, expectations, captured)
    tests: list[Test] = []
    seen: set[str] = set()
    for group in groups:
        test = _conversation(name, group, expectations, closes, captured, pauses, labels, running)
        if len(test["steps"]) >= MAX_STEPS and notes is not None:
            notes.append(
                f"the test {test['name']!r} replays the first {MAX_STEPS} steps of its "
                "conversation only"
            )
        _add(tests, seen, test)
    for refusal, rule in refusals:
        _add(tests, seen, _refused(name, refusal, rule))
    return tests


def _add(tests: list[Test], seen: set[str], test: Test) -> None:
    """A test, unless one with the same steps is there; a repeated name gets a number."""
    key = repr(test["steps"])
    if key in seen:
        return
    seen.add(key)
    names = {t["name"] for t in tests}
    base, n = test["name"], 2
    while test["name"] in names:
        test["name"] = f"{base} ({n})"
        n += 1
    tests.append(test)


# ---- who belongs with whom --------------------------------------------------------------------


@dataclass
class _Captured:
    """A value the server made, first received by ``client`` in ``delivery`` at ``path``."""

    value: str
    client: Client
    delivery: Delivery
    path: list[str | int]
    name: str = ""
    #: The clients that sent it back.
    users: tuple[Client, ...] = ()


def _captured_values(
    clients: Sequence[Client], expectations: dict[Delivery, Expectation]
) -> dict[str, _Captured]:
    """The fresh values received in expected messages that a client sends back later, or
    that come again in a later expected message (a client's id, announced when it leaves)."""
    first: dict[str, _Captured] = {}
    used: dict[str, _Captured] = {}
    for delivery in sorted(expectations, key=lambda d: d.seq):
        expectation = expectations[delivery]
        receiver = min(expectation.receivers, key=lambda c: c.index)
        for path, value in _fresh_leaves(expectation.spec, delivery.payload.value, []):
            if value in first:
                used[value] = first[value]
            else:
                first[value] = _Captured(value, receiver, delivery, path)
    for client in clients:
        for request in [_connect_values(client), *[(s.seq, s.payload.value) for s in client.sent]]:
            seq, value = request
            for leaf in _strings(value):
                found = first.get(leaf)
                if found is not None and found.delivery.seq < seq:
                    found.users = (*found.users, client)
                    used[leaf] = found
    return used


def _name_captures(captured: dict[str, _Captured], names: dict[Client, str]) -> None:
    """Names for the values a group's clients capture: the key they came under, or the
    client's name and ``Id`` for a bare ``id`` (``aliceId``)."""
    taken = set(names.values())
    for found in sorted(captured.values(), key=lambda c: c.delivery.seq):
        if found.client not in names:
            continue
        base = _capture_name(found.path)
        if base.lower() == "id":
            base = names[found.client] + "Id"
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}{n}", n + 1
        taken.add(candidate)
        found.name = candidate


def _connect_values(client: Client) -> tuple[int, Any]:
    return (client.seq, [*client.path.split("/"), *client.query.values()])


def _fresh_leaves(
    spec: Spec, value: Any, path: list[str | int]
) -> Iterable[tuple[list[str | int], str]]:
    if isinstance(spec, Varying) and spec.capturable and isinstance(value, str):
        yield path, value
    elif isinstance(spec, ObjectSpec) and isinstance(value, dict):
        for key, member in spec.members.items():
            if key in value:
                yield from _fresh_leaves(member, value[key], [*path, key])
    elif isinstance(spec, ArraySpec) and isinstance(value, list):
        for i, item in enumerate(spec.items):
            if i < len(value):
                yield from _fresh_leaves(item, value[i], [*path, i])


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _capture_name(path: Sequence[str | int]) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            word = re.sub(r"[^A-Za-z0-9_]", "_", part)
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word) and word not in _reserved():
                return word
    return "value"


def _reserved() -> frozenset[str]:
    return keywords() | {"msg", "raw", "conn", "any", "matches", "query", "headers"}


def _groups(
    clients: Sequence[Client],
    expectations: dict[Delivery, Expectation],
    captured: dict[str, _Captured],
) -> list[list[Client]]:
    parent = {c: c for c in clients}

    def root(c: Client) -> Client:
        while parent[c] is not c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    def join(a: Client, b: Client) -> None:
        ra, rb = root(a), root(b)
        if ra is not rb:
            if ra.index < rb.index:
                parent[rb] = ra
            else:
                parent[ra] = rb

    for _delivery, expectation in expectations.items():
        receivers = sorted(expectation.receivers, key=lambda c: c.index)
        for receiver in receivers[1:]:
            join(receivers[0], receiver)
        if expectation.cause is not None:
            join(expectation.cause, receivers[0])
    for found in captured.values():
        for user in found.users:
            join(found.client, user)
    groups: dict[Client, list[Client]] = {}
    for client in clients:
        groups.setdefault(root(client), []).append(client)
    return list(groups.values())


# ---- one conversation -------------------------------------------------------------------------


def _conversation(
    name: str,
    group: list[Client],
    expectations: dict[Delivery, Expectation],
    closes: dict[Client, ServerClose],
    captured: dict[str, _Captured],
    pauses: Sequence[Pause],
    labels: dict[Sent, str],
    running: Sequence[Running],
) -> Test:
    names = _client_names(group)
    _name_captures(captured, names)
    by_value = {value: found.name for value, found in captured.items() if found.client in names}
    members = set(group)
    events: list[tuple[int, int, float, Any]] = []
    for client in group:
        events.append((client.seq, 0, client.opened, ("connect", client)))
        for sent in client.sent:
            events.append((sent.seq, 1, sent.time, ("send", sent)))
        if client.close_seq is not None and client.closed is not None:
            events.append((client.close_seq, 3, client.closed, ("close", client)))
    for delivery, expectation in expectations.items():
        for receiver in sorted(expectation.receivers & members, key=lambda c: c.index):
            events.append((delivery.seq, 2, delivery.time, ("expect", delivery, receiver)))
    for pause in pauses:
        if pause.client in members:
            events.append((pause.after.seq, 2, pause.after.time, ("pause", pause)))
    events.sort(key=lambda e: (e[0], e[1]))
    timers = [r for r in running if r.client in members]
    steps: list[TestStep] = []
    waiting_on: Client | None = None  # who sent last, with nothing awaited since
    open_clients: set[Client] = set()
    last_time = events[0][2] if events else 0.0
    for seq, _, time, event in events:
        if len(steps) >= MAX_STEPS:
            break
        what = event[0]
        if what == "connect":
            client = event[1]
            steps.append(_connect_step(names[client], client, by_value))
            open_clients.add(client)
        elif what == "send":
            sent = event[1]
            if sent.client not in open_clients:
                continue
            step = _send_step(names[sent.client], sent, by_value)
            if step is None:
                continue
            gap = time - last_time
            if gap >= 50 and any(r.start < seq <= r.end for r in timers):
                # While a timer runs, a message's moment decides which pushes come before
                # it: as long a pause as recorded keeps them in the recorded order.
                steps.append({"wait": nice_duration(round_interval(gap))})
            elif waiting_on is not None and waiting_on is not sent.client:
                steps.append({"wait": SETTLE})
            steps.append(step)
            waiting_on = sent.client
        elif what == "expect":
            delivery, receiver = event[1], event[2]
            if receiver not in open_clients:
                continue
            step = _expect_step(
                names[receiver], delivery, expectations[delivery], by_value, captured, receiver
            )
            if step is not None:
                steps.append(step)
                waiting_on = None
        elif what == "pause":
            pause = event[1]
            if pause.client in open_clients:
                steps.append(
                    {"client": names[pause.client], "expectNoMessage": f"{round(pause.period)}ms"}
                )
        elif what == "close":
            client = event[1]
            if client not in open_clients:
                continue
            step = _close_step(names[client], client, closes)
            if step is not None:
                steps.append(step)
                waiting_on = None
            open_clients.discard(client)
        last_time = time
    shown = [names[c] for c in group[:3]] + ([f"{len(group) - 3} more"] if len(group) > 3 else [])
    who = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    done: list[str] = []
    for sent in sorted((s for c in group for s in c.sent), key=lambda s: s.seq):
        label = labels.get(sent)
        if label and label not in done:
            done.append(label)
    if done:
        what = f" ({', '.join(done[:5])}{', …' if len(done) > 5 else ''})"
    else:
        # Clients that sent nothing are told apart by where and how they connected.
        first = group[0]
        what = f" connects to {first.path}"
        if first.query:
            what += " with " + "&".join(f"{k}={v}" for k, v in first.query.items())
    return {"name": f"{name}: {who}{what}", "steps": steps}


def _client_names(group: Sequence[Client]) -> dict[Client, str]:
    names: dict[Client, str] = {}
    taken: set[str] = set()
    reserved = _reserved()
    spare = iter(_NAMES)
    for client in group:
        chosen = None
        for sent in client.sent[:3]:
            value = sent.payload.value
            if isinstance(value, dict):
                for key in _NAME_KEYS:
                    word = value.get(key)
                    if isinstance(word, str) and _WORD.fullmatch(word.lower()):
                        chosen = word.lower()
                        break
            if chosen:
                break
        if chosen is None or chosen in taken or chosen in reserved:
            if len(group) == 1:
                chosen = "client"
            else:
                chosen = next((n for n in spare if n not in taken), f"client{client.index + 1}")
        taken.add(chosen)
        names[client] = chosen
    return names


def _substitute(value: Any, by_value: dict[str, str]) -> Any:
    """A recorded value as a test's template: captured values by name, ``${`` escaped."""
    if isinstance(value, str):
        if value in by_value:
            return "${" + by_value[value] + "}"
        return as_template(value)
    if isinstance(value, dict):
        return {k: _substitute(v, by_value) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, by_value) for v in value]
    return value


def _connect_step(name: str, client: Client, by_value: dict[str, str]) -> ConnectStep:
    segments = [
        "${" + by_value[s] + "}" if s in by_value else as_template(s)
        for s in client.path.split("/")
    ]
    step: ConnectStep = {"connect": name, "path": "/".join(segments)}
    if client.query:
        step["query"] = _substitute(client.query, by_value)
    headers = relevant_headers(client.headers)
    if headers:
        step["headers"] = _substitute(headers, by_value)
    if client.protocols:
        step["protocols"] = list(client.protocols)
    return step


def _send_step(name: str, sent: Sent, by_value: dict[str, str]) -> TestStep | None:
    payload = sent.payload
    if payload.data is not None:
        try:
            text = payload.data.decode("utf-8")
        except UnicodeDecodeError:
            return None  # a test sends text as binary; other bytes it cannot write
        return {"client": name, "send": _substitute(text, by_value), "binary": True}
    if payload.is_json and isinstance(payload.value, dict | list):
        return {"client": name, "send": _substitute(payload.value, by_value)}
    assert payload.text is not None
    # Numbers, true, false, null and plain text go as the text recorded.
    return {"client": name, "send": _substitute(payload.text, by_value)}


def _expect_step(
    name: str,
    delivery: Delivery,
    expectation: Expectation,
    by_value: dict[str, str],
    captured: dict[str, _Captured],
    receiver: Client,
) -> TestStep | None:
    payload = delivery.payload
    value = payload.value
    if payload.data is not None:
        try:
            value = payload.data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    # Values made by the server are named once captured, by the client that captured them.
    names = {
        v: n
        for v, n in by_value.items()
        if captured[v].delivery is not delivery or captured[v].client is not receiver
    }
    expected = expectation.spec.expectation(value, names)
    step: ExpectStep = {"client": name, "expect": expected}
    if expectation.within is not None:
        # A timer's push, or one made later than replies: its delay and half as much again.
        step["within"] = f"{_ceil_ms(expectation.within * 1.5 + 200)}ms"
    capture = {
        found.name: "${msg" + "".join(_accessor(p) for p in found.path) + "}"
        for found in captured.values()
        if found.delivery is delivery and found.client is receiver
    }
    if capture:
        step["capture"] = capture
    return step


def _accessor(part: str | int) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
        return "." + part
    return f"[{string_literal(part)}]"


def _close_step(name: str, client: Client, closes: dict[Client, ServerClose]) -> TestStep | None:
    server = closes.get(client)
    if server is not None:
        body: CloseBody = {"code": server.code}
        if server.reason:
            body["reason"] = as_template(server.reason)
        return {"client": name, "expectClose": body}
    if client.closed_by == "server" or client.close_code in (None, 1006):
        return None
    code = client.close_code
    if code == 1000 or (code is not None and 3000 <= code <= 4999):
        if code == 1000:
            return {"client": name, "close": {}}
        body = {"code": code}
        if client.close_reason:
            body["reason"] = as_template(client.close_reason)
        return {"client": name, "close": body}
    return {"client": name, "close": {}}


def _ceil_ms(milliseconds: float) -> int:
    step = 50 if milliseconds < 1000 else 100
    return int(-(-milliseconds // step) * step)


def _refused(name: str, refusal: Refusal, rule: AuthRule | None) -> Test:
    client = "refused"
    step: ConnectStep = {"connect": client, "path": as_template(refusal.path)}
    if refusal.query:
        step["query"] = _substitute(refusal.query, {})
    headers = relevant_headers(refusal.headers or {})
    if headers:
        step["headers"] = _substitute(headers, {})
    steps: list[TestStep] = [step]
    if refusal.status is not None:
        step["expectReject"] = refusal.status
        how = f"HTTP {refusal.status}"
    else:
        expected: CloseBody = {}
        if refusal.code is not None:
            expected["code"] = refusal.code
        if refusal.reason:
            expected["reason"] = as_template(refusal.reason)
        steps.append({"client": client, "expectClose": expected})
        how = f"closed {refusal.code}"
    why = ""
    if rule is not None:
        source, key = rule.feature
        sent = (refusal.query if source == "query" else refusal.headers) or {}
        why = (
            f" without {rule.expression}"
            if not sent.get(key)
            else f" with an unknown {rule.expression}"
        )
    return {"name": f"{name}: refused{why}, {how}", "steps": steps}

"""Authentication from refused handshakes: what the refused clients sent that the accepted
ones did not.

Each way of refusing (an HTTP status, or a close code right after the handshake, with its
reason) becomes a ``reject`` step whose condition tells its refused clients from every
accepted one, on one query parameter or header (``authorization``, ``cookie``, ``x-…``):

- ``unless query.token`` when the refused lacked it and every accepted client had it;
- ``unless query.token in ["alice-token", "bob-token"]`` (``== "…"`` for one) when the
  refused had other values than the accepted clients.

Steps on presence come first, so that a missing token and a wrong one may be refused alike or
differently, as recorded. The steps are kept only if, run in order, they give every recorded
client its recorded outcome. A refusal without its query and headers (a served mock's journal
before they were recorded) says nothing about the condition: it is left out, with a hint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..language.ir import AuthStep, RejectBody
from .generalize import as_template, string_literal
from .model import Client, Refusal

__all__ = ["AuthRule", "infer_auth", "relevant_headers"]

#: Headers an application reads to authenticate (the others are the browser's or the
#: protocol's, and differ for reasons of their own).
_AUTH_HEADERS = ("authorization", "cookie")


def relevant_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers of a handshake a test sends again: credentials and custom ones."""
    return {
        name: value
        for name, value in headers.items()
        if name in _AUTH_HEADERS or name == "origin" or name.startswith("x-")
    }


@dataclass(frozen=True)
class AuthRule:
    """One reject step: refusals with ``status`` or ``code`` and ``reason`` when ``feature``
    (``("query", "token")``, ``("headers", "authorization")``) is missing (``allowed`` None)
    or not one of ``allowed``."""

    status: int | None
    code: int | None
    reason: str
    feature: tuple[str, str]
    allowed: tuple[str, ...] | None

    @property
    def expression(self) -> str:
        """``query.token``, ``headers["x-api-key"]``."""
        source, key = self.feature
        return f"{source}.{key}" if key.isidentifier() else f"{source}[{string_literal(key)}]"

    def step(self) -> AuthStep:
        if self.allowed is None:
            condition = self.expression
        elif len(self.allowed) == 1:
            condition = f"{self.expression} == {string_literal(self.allowed[0])}"
        else:
            listed = ", ".join(string_literal(v) for v in self.allowed)
            condition = f"{self.expression} in [{listed}]"
        body: RejectBody = {"reason": as_template(self.reason), "unless": condition}
        if self.status is not None:
            body["status"] = self.status
        elif self.code is not None:
            body["code"] = self.code
        return {"reject": body}

    def refuses(self, query: dict[str, str], headers: dict[str, str]) -> bool:
        value = _feature_value(self.feature, query, headers)
        if self.allowed is None:
            return not value
        return value not in self.allowed


def infer_auth(
    refusals: Sequence[Refusal], accepted: Sequence[Client]
) -> tuple[list[AuthRule], list[Refusal]]:
    """The reject rules of a route, and the refusals they explain (tests are written for
    those); refusals they cannot explain are left out."""
    known = [r for r in refusals if r.query is not None and _is_auth(r)]
    outcomes: dict[tuple[int | None, int | None, str], list[Refusal]] = {}
    for refusal in known:
        outcomes.setdefault((refusal.status, refusal.code, refusal.reason), []).append(refusal)
    presence: list[AuthRule] = []
    values: list[AuthRule] = []
    for (status, code, reason), refused in outcomes.items():
        rule = _rule(status, code, reason, refused, accepted)
        if rule is not None:
            (presence if rule.allowed is None else values).append(rule)
    rules = presence + values
    explained = [r for r in known if _outcome(rules, r) == (r.status, r.code, r.reason)]
    if any(_outcome(rules, c) is not None for c in accepted) or len(explained) < len(known):
        # The steps together refuse an accepted client or misjudge a refusal: keep the
        # rules that misjudge nothing on their own.
        rules = [
            rule for rule in rules if not any(rule.refuses(c.query, c.headers) for c in accepted)
        ]
        explained = [r for r in known if _outcome(rules, r) == (r.status, r.code, r.reason)]
    return rules, explained


def _is_auth(refusal: Refusal) -> bool:
    """A refusal by the application: a close code, or a status other than no route (404),
    a forbidden origin (403) or a full server (503)."""
    if refusal.code is not None:
        return True
    return refusal.status is not None and refusal.status not in (403, 404, 503)


def _rule(
    status: int | None,
    code: int | None,
    reason: str,
    refused: Sequence[Refusal],
    accepted: Sequence[Client],
) -> AuthRule | None:
    if not accepted:
        return None
    features: list[tuple[str, str]] = []
    requests = [(c.query, c.headers) for c in accepted] + [
        (r.query or {}, r.headers or {}) for r in refused
    ]
    for query, _ in requests:
        for key in query:
            if ("query", key) not in features:
                features.append(("query", key))
    for _, headers in requests:
        for name in relevant_headers(headers):
            if name != "origin" and ("headers", name) not in features:
                features.append(("headers", name))
    for feature in features:
        had = [_feature_value(feature, c.query, c.headers) for c in accepted]
        if not all(had):
            continue
        got = [_feature_value(feature, r.query or {}, r.headers or {}) for r in refused]
        if not any(got):
            return AuthRule(status, code, reason, feature, None)
    for feature in features:
        had = [_feature_value(feature, c.query, c.headers) for c in accepted]
        if not all(had):
            continue
        allowed = tuple(dict.fromkeys(v for v in had if v is not None))
        got = [_feature_value(feature, r.query or {}, r.headers or {}) for r in refused]
        if all(v not in allowed for v in got):
            return AuthRule(status, code, reason, feature, allowed)
    return None


def _outcome(
    rules: Sequence[AuthRule], request: Client | Refusal
) -> tuple[int | None, int | None, str] | None:
    for rule in rules:
        if rule.refuses(request.query or {}, request.headers or {}):
            return (rule.status, rule.code, rule.reason)
    return None


def _feature_value(
    feature: tuple[str, str], query: dict[str, str], headers: dict[str, str]
) -> str | None:
    source, key = feature
    return (query if source == "query" else headers).get(key)

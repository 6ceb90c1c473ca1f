"""Kinds of client messages: what a handler of the scenario is for.

JSON objects are told apart by one key, the one whose values split the messages into groups
with consistent replies: every message of a group got the same kinds of reply. Among keys
that split as well, the usual names win (``type``, then ``event``, ``op``, ``action`` …),
then the one making fewer groups. Objects without that key, and JSON that is not an object,
are the leftovers of a catch-all handler.

Text that is not JSON is told apart by its first token (``42`` of ``42["chat",…]``, ``PING``,
``SUBSCRIBE``): a handler ``where raw == "ping"`` when all its messages are that text, else
``where startsWith(raw, "42")``. Binary messages are one kind (``on message binary``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from .generalize import string_literal
from .model import Sent
from .timing import text_token

__all__ = ["Kind", "classify"]

#: Keys that name a message's kind in common protocols, most usual first.
USUAL_KEYS = ("type", "event", "op", "action", "kind", "method", "cmd", "command", "t")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Kind:
    """One handler's share of the messages."""

    #: A short word for it, for names (a test's, a timer's): the type, the token.
    label: str
    #: ``on message type "x"``.
    type: str | None = None
    #: ``on message where …``.
    where: str | None = None
    binary: bool = False
    #: The path of ``msg`` that makes the kind (a reply takes no value from it).
    key_path: str | None = None
    #: Tried after the others (a catch-all, a prefix other prefixes start with).
    late: bool = False


def classify(
    messages: Sequence[Sent], signature: Callable[[Sent], Hashable]
) -> tuple[list[Kind], dict[Sent, Kind]]:
    """The kinds of ``messages`` in the order their handlers are tried (first seen, a
    catch-all last), and each message's kind. ``signature(sent)`` is what the server did
    in reply, to judge which key splits the messages consistently."""
    objects = [s for s in messages if s.payload.is_object]
    key = _discriminator(objects, signature)
    kinds: dict[Sent, Kind] = {}
    texts: dict[str, list[Sent]] = defaultdict(list)
    for sent in messages:
        payload = sent.payload
        if payload.binary:
            kinds[sent] = Kind("binary", binary=True)
        elif key is not None and payload.is_object and isinstance(payload.value.get(key), str):
            kinds[sent] = _keyed(key, payload.value[key])
        elif payload.is_object:
            kinds[sent] = Kind("message", late=True)
        else:
            # Text, and JSON that is not an object (``40`` of Socket.IO is a number): by the
            # text, as text protocols are.
            assert payload.text is not None
            texts[text_token(payload.text)].append(sent)
    for token, sents in texts.items():
        same = {s.payload.text or "" for s in sents}
        label = token if _NAME.fullmatch(token) else "text"
        if len(same) == 1:
            (text,) = same
            kind = Kind(label, where=f"raw == {string_literal(text)}")
        else:
            # A prefix that another kind's prefix starts with is tried after it.
            overlaps = any(t != token and t.startswith(token) for t in texts)
            kind = Kind(label, where=f"startsWith(raw, {string_literal(token)})", late=overlaps)
        for sent in sents:
            kinds[sent] = kind
    # One object per kind, so that kinds compare by identity too.
    interned: dict[Kind, Kind] = {}
    for sent in messages:
        kinds[sent] = interned.setdefault(kinds[sent], kinds[sent])
    order = list(interned)
    # Tried last: prefixes other prefixes start with, then the catch-all.
    order.sort(key=lambda k: (k.late, k.where is None and k.type is None and not k.binary))
    return order, kinds


def _keyed(key: str, value: str) -> Kind:
    if key == "type":
        return Kind(value, type=value, key_path="msg.type")
    path = f"msg.{key}" if _NAME.fullmatch(key) else f"msg[{string_literal(key)}]"
    return Kind(value, where=f"{path} == {string_literal(value)}", key_path=path)


def _discriminator(objects: Sequence[Sent], signature: Callable[[Sent], Hashable]) -> str | None:
    if not objects:
        return None
    counts: Counter[str] = Counter()
    for sent in objects:
        counts.update(k for k, v in sent.payload.value.items() if isinstance(v, str))
    # Keys with a string value in half the objects or more (the others: leftovers).
    candidates = [k for k, n in counts.items() if n * 2 >= len(objects)]
    if not candidates:
        return None
    scored = []
    for key in candidates:
        groups: dict[str, list[Hashable]] = defaultdict(list)
        for sent in objects:
            value = sent.payload.value.get(key)
            if isinstance(value, str):
                groups[value].append(signature(sent))
        consistent = sum(Counter(sigs).most_common(1)[0][1] for sigs in groups.values()) / len(
            objects
        )
        usual = USUAL_KEYS.index(key) if key in USUAL_KEYS else len(USUAL_KEYS)
        # A key with a value per message names things, not kinds (unless it is all there is).
        naming = len(groups) == len(objects) and len(objects) > 2
        scored.append((round(consistent, 1), not naming, -usual, -len(groups), key))
    return max(scored)[-1]

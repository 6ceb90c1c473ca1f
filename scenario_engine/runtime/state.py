"""``session`` and ``state``: JSON data a scenario reads by name and writes with set and unset.

``session`` belongs to one connection and is gone when it closes; ``state`` belongs to a
scenario file, shared by all its routes and connections. Both are objects whose size, as JSON,
is capped (a connection's session by the route's ``max session``, a file's state by the value
cap): a ``set`` that would pass the cap fails at its line and changes nothing.

Writes copy what they store, so that two places of the data never share a value (a later write
through one must not change the other). The size of each object is kept up to date write by
write, so a write costs what it touches, not what the whole object holds.

The file's ``state`` is kept behind the ``StateStore`` interface, so that a store shared by
several processes can replace the in-memory one without touching the language or the compiler.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ..errors import EvaluationError
from ..expr.values import MAX_STRING, measure, to_text, type_name

__all__ = ["JsonObject", "MemoryState", "StateStore", "assign", "plain", "remove"]


class JsonObject:
    """An object that set and unset write into: its data, and about how many characters of
    JSON it takes (kept within ``limit``). ``label`` names it in messages (session, state)."""

    __slots__ = ("data", "label", "limit", "size")

    def __init__(self, label: str, limit: int, value: Mapping[str, Any] | None = None) -> None:
        self.label = label
        self.limit = limit
        self.data: dict[str, Any] = {}
        self.size = 2
        if value:
            replace_all(self, value)


def plain(value: Any) -> Any:
    """A copy of ``value`` as plain JSON data (objects, arrays, strings, numbers, booleans,
    null), sharing nothing with it."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise EvaluationError(f"cannot store {type_name(value)}")


def replace_all(target: JsonObject, value: Any) -> None:
    """Make ``value`` (an object) the whole of ``target``, keeping its identity (every
    expression context holds it by reference)."""
    if not isinstance(value, Mapping):
        raise EvaluationError(f"{target.label} is an object, not {type_name(value)}")
    size = measure(value, target.limit)
    if size < 0:
        raise _too_large(target)
    copied = plain(value)
    target.data.clear()
    target.data.update(copied)
    target.size = size


def assign(target: JsonObject, keys: list[Any], value: Any) -> None:
    """``set TARGET.k1[k2]... = value``: objects are created on the way; an array index may
    replace an item or add one at the end."""
    if not keys:
        replace_all(target, value)
        return
    if len(keys) == 1 and type(keys[0]) is str and type(value) in _SCALARS:
        _assign_scalar(target, keys[0], value)  # set session.n = 3: most sets, kept cheap
        return
    cost = measure(value, target.limit)
    if cost < 0:
        raise _too_large(target)
    container: Any = target.data
    created: list[Any] = []  # the keys whose objects this write creates, outermost first
    for depth in range(len(keys)):
        last = depth == len(keys) - 1
        if created:
            created.append(_key(target, keys, depth, container=None))
            continue
        slot = _slot(target, keys, depth, container)
        if last:
            break
        inner = container.get(slot) if isinstance(container, dict) else _item(container, slot)
        if inner is None:
            created.append(slot)
        elif isinstance(inner, dict | list):
            container = inner
        else:
            raise EvaluationError(
                f"cannot set {_path(target, keys, depth + 1)}: "
                f"{_path(target, keys, depth)} is {type_name(inner)}"
            )
    old_cost = 0
    if created:
        # Each object made on the way adds its braces, and each key its quotes and colon.
        cost += sum(len(to_text(k)) + 5 for k in created)
        final_key = created[0]
    else:
        final_key = _slot(target, keys, len(keys) - 1, container)
        cost += len(to_text(final_key)) + 4
        if isinstance(container, dict):
            if final_key in container:
                old_cost = measure(container[final_key], MAX_STRING) + len(final_key) + 4
        elif final_key < len(container):
            old_cost = measure(container[final_key], MAX_STRING) + len(to_text(final_key)) + 4
    if target.size + cost - old_cost > target.limit:
        raise _too_large(target)
    stored = plain(value)
    for key in reversed(created[1:]):
        stored = {key: stored}
    if isinstance(container, dict):
        container[final_key] = stored
    elif final_key == len(container):
        container.append(stored)
    else:
        container[final_key] = stored
    target.size += cost - old_cost


#: Values stored as they are (nothing inside them to copy or walk).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _assign_scalar(target: JsonObject, key: str, value: str | float | bool | None) -> None:
    """``assign`` of a scalar at a top-level key: its size is known without a walk."""
    data = target.data
    cost = len(key) + 4 + (len(value) + 2 if isinstance(value, str) else 8)
    old_cost = measure(data[key], MAX_STRING) + len(key) + 4 if key in data else 0
    if target.size + cost - old_cost > target.limit:
        raise _too_large(target)
    data[key] = value
    target.size += cost - old_cost


def remove(target: JsonObject, keys: Iterable[Any]) -> None:
    """``unset TARGET.k1[k2]...``: the key (or array item) goes; nothing happens when the path
    leads nowhere."""
    path = list(keys)
    container: Any = target.data
    for depth in range(len(path) - 1):
        slot = _slot(target, path, depth, container)
        container = container.get(slot) if isinstance(container, dict) else _item(container, slot)
        if not isinstance(container, dict | list):
            return
    slot = _slot(target, path, len(path) - 1, container)
    if isinstance(container, dict):
        if slot in container:
            old = container.pop(slot)
            target.size -= measure(old, MAX_STRING) + len(slot) + 4
    elif isinstance(slot, int) and 0 <= slot < len(container):
        old = container.pop(slot)
        target.size -= measure(old, MAX_STRING) + 1


def _slot(target: JsonObject, keys: list[Any], depth: int, container: Any) -> Any:
    """The key at ``depth`` as ``container`` takes it: a string for an object, a whole number
    (up to the length: one past the end adds an item) for an array."""
    key = keys[depth]
    if isinstance(container, list):
        if not isinstance(key, int | float) or isinstance(key, bool) or int(key) != key:
            raise EvaluationError(
                f"{_path(target, keys, depth)} is an array: its index must be a whole number"
            )
        index = int(key)
        if not 0 <= index <= len(container):
            raise EvaluationError(
                f"index {index} is out of {_path(target, keys, depth)}, which has "
                f"{len(container)} items"
            )
        return index
    return _key(target, keys, depth, container)


def _key(target: JsonObject, keys: list[Any], depth: int, container: Any) -> str:
    key = keys[depth]
    if isinstance(key, str):
        return key
    if isinstance(key, int | float) and not isinstance(key, bool):
        return to_text(key)
    raise EvaluationError(
        f"a key of {_path(target, keys, depth)} must be a string, not {type_name(key)}"
    )


def _item(items: list[Any], index: Any) -> Any:
    return items[index] if isinstance(index, int) and 0 <= index < len(items) else None


def _path(target: JsonObject, keys: list[Any], depth: int) -> str:
    text = target.label
    for key in keys[:depth]:
        text += f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{to_text(key)}]"
    return text


def _too_large(target: JsonObject) -> EvaluationError:
    return EvaluationError(
        f"{target.label} would be larger than its {target.limit:,} characters of JSON"
    )


class StateStore(Protocol):
    """Each scenario file's ``state`` (``scope`` is the file's name as served)."""

    def data(self, scope: str) -> dict[str, Any]:
        """The state itself, as expressions read it (``state.highest``)."""
        ...

    def write(self, scope: str, keys: list[Any], value: Any) -> None:
        """``set state.k... = value``; EvaluationError when it cannot be done."""
        ...

    def remove(self, scope: str, keys: list[Any]) -> None:
        """``unset state.k...``."""
        ...

    def replace(self, scope: str, value: Any) -> None:
        """Make ``value`` (an object) the whole state; EvaluationError if it cannot be."""
        ...

    def reset(self, scope: str) -> None:
        """Back to the file's initial state."""
        ...

    def define(self, scope: str, initial: Mapping[str, Any]) -> None:
        """The file's initial state is now ``initial`` (a reload changed its state block): it
        becomes the state, and what ``reset`` goes back to."""
        ...

    def scopes(self) -> list[str]:
        """The files that have a state."""
        ...


class MemoryState:
    """The states of the files in this process's memory."""

    def __init__(self, initial: Mapping[str, Mapping[str, Any]], limit: int = MAX_STRING) -> None:
        self._initial = {scope: copy.deepcopy(dict(value)) for scope, value in initial.items()}
        self._objects = {
            scope: JsonObject("state", limit, value) for scope, value in self._initial.items()
        }
        self._limit = limit

    def _object(self, scope: str) -> JsonObject:
        found = self._objects.get(scope)
        if found is None:
            found = self._objects[scope] = JsonObject("state", self._limit)
        return found

    def data(self, scope: str) -> dict[str, Any]:
        return self._object(scope).data

    def write(self, scope: str, keys: list[Any], value: Any) -> None:
        assign(self._object(scope), keys, value)

    def remove(self, scope: str, keys: list[Any]) -> None:
        remove(self._object(scope), keys)

    def replace(self, scope: str, value: Any) -> None:
        replace_all(self._object(scope), value)

    def reset(self, scope: str) -> None:
        replace_all(self._object(scope), self._initial.get(scope, {}))

    def define(self, scope: str, initial: Mapping[str, Any]) -> None:
        self._initial[scope] = copy.deepcopy(dict(initial))
        self.reset(scope)

    def scopes(self) -> list[str]:
        return list(self._objects)

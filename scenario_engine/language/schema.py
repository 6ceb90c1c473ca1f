"""The JSON Schema of the scenario IR, and its violations as positioned ScenarioErrors.

The schema ships inside the package (``language/scenario.schema.json``) and is read through
``importlib.resources``, so it is found in an installed wheel as well as in a source tree.

jsonschema reports where a violation is (a JSON path) and which keyword failed; this module turns
each failure into a short message a person can act on (``unknown key 'heartbeet' in route``,
``did you mean 'heartbeat'?``) and places it at ``file:line:col`` through the source map. Two
non-standard keywords of the schema are shared with editors: ``patternErrorMessage`` and
``errorMessage`` are what VS Code shows, and what the messages here are built from.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from ..errors import ScenarioError, did_you_mean
from .source import Source, SourceMap, Span, escape_pointer, locate

__all__ = ["ACTION_NAMES", "SCHEMA", "schema_errors", "schema_text"]

_SCHEMA_TEXT = (resources.files("scenario_engine.language") / "scenario.schema.json").read_text(
    encoding="utf-8"
)

#: The JSON Schema (Draft 2020-12) every scenario IR must satisfy.
SCHEMA: dict[str, Any] = json.loads(_SCHEMA_TEXT)


def _without_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` in which every local ``$ref`` is replaced by the schema it names,
    and key dispatches are rewritten for speed (``_dispatch_by_key``).

    jsonschema resolves a ``$ref`` anew each time it meets one, and that resolution was half
    the cost of validating a large scenario. Here each ``{"$ref": …, "title": …}`` object is
    filled in place with its target's keywords, so shared and
    recursive definitions become shared and cyclic Python objects, which jsonschema follows
    without any lookup.
    """
    copy: dict[str, Any] = json.loads(json.dumps(schema))
    defs = copy.pop("$defs", {})
    seen: set[int] = set()
    stack: list[Any] = [copy, *defs.values()]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = defs[ref.removeprefix("#/$defs/")]
            del node["$ref"]
            # The target's own words win: messages name the definition (its title), as they
            # did when jsonschema reported errors from inside the $ref.
            node.update(target)
            node["x-ref"] = ref  # what the error messages see as the schema's $ref
        _dispatch_by_key(node)
        stack.extend(node.values())
    return copy


def _dispatch_by_key(node: dict[str, Any]) -> None:
    """``allOf: [{if: {required: [K]}, then: S}, …]`` rewritten as ``dependentSchemas: {K:
    S, …}``, which means the same for objects.

    The shipped schema says it with if/then, which editors on draft-07 understand; but the
    validator then tries every ``if`` of every test step (nine), which made ``check`` of a
    file with many tests half schema time. dependentSchemas looks up the keys present.
    """
    branches = node.get("allOf")
    if not isinstance(branches, list) or "dependentSchemas" in node:
        return
    keys = [_only_required_key(b) for b in branches]
    if not branches or None in keys or len(set(keys)) != len(keys):
        return
    del node["allOf"]
    node["dependentSchemas"] = {key: b["then"] for key, b in zip(keys, branches, strict=True)}


def _only_required_key(branch: Any) -> str | None:
    """K when ``branch`` is exactly ``{if: {required: [K]}, then: …}``."""
    if not isinstance(branch, dict) or set(branch) != {"if", "then"}:
        return None
    condition = branch["if"]
    if set(condition) != {"required"} or len(condition["required"]) != 1:
        return None
    key: str = condition["required"][0]
    return key


# Built once, from the schema with its references resolved and its key dispatches rewritten.
_RESOLVED = _without_refs(SCHEMA)
_VALIDATOR = Draft202012Validator(_RESOLVED)
# Routes and tests, most of a large scenario, are validated one by one, and an item's problems
# are remembered by its text: an editor checks the file again at each change, and a change
# touches one item. So the document is validated without looking into those lists, and each
# item against its own schema.
_LISTS = ("routes", "tests")
_DOCUMENT_VALIDATOR = Draft202012Validator(
    {
        **_RESOLVED,
        "properties": {
            **_RESOLVED["properties"],
            **{name: {**_RESOLVED["properties"][name], "items": {}} for name in _LISTS},
        },
    }
)
_ITEM_VALIDATORS = {
    name: Draft202012Validator(_RESOLVED["properties"][name]["items"]) for name in _LISTS
}

#: The names of the actions (the keys of an action object but an if action's).
ACTION_NAMES: tuple[str, ...] = tuple(
    name for name in SCHEMA["$defs"]["action"]["properties"] if name not in ("if", "then", "else")
)
_BARE_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")


def schema_text() -> str:
    """The schema as pretty JSON text, as shipped (what ``scenario-engine schema`` prints)."""
    return _SCHEMA_TEXT.rstrip("\n") + "\n"


def schema_errors(ir: object, source: Source, source_map: SourceMap) -> list[ScenarioError]:
    """Every schema violation of ``ir``, each placed at the node it is about, in file order."""
    problems = list(_problems(ir))

    errors: list[ScenarioError] = []
    seen_keys: set[str] = set()
    seen: set[ScenarioError] = set()
    for problem in problems:
        # Several keywords can reject the same key (an unknown key of an if action fails both
        # additionalProperties and propertyNames): the first, most general message is enough.
        if problem.about_key:
            if problem.places[0] in seen_keys:
                continue
            seen_keys.add(problem.places[0])
        error = source.error_at(_locate(problem, source_map), problem.message, problem.hint)
        if error not in seen:
            seen.add(error)
            errors.append(error)
    errors.sort(key=ScenarioError.sort_key)
    return errors


def _problems(ir: object) -> Iterator[_Problem]:
    if not isinstance(ir, dict) or not all(isinstance(ir.get(name, []), list) for name in _LISTS):
        for error in _VALIDATOR.iter_errors(ir):
            yield from _explain(error)
        return
    for error in _DOCUMENT_VALIDATOR.iter_errors(ir):
        yield from _explain(error)
    for name in _LISTS:
        for index, item in enumerate(ir.get(name, [])):
            prefix = f"/{name}/{index}"
            for problem in _problems_of(name, item):
                yield _Problem(
                    prefix + problem.pointer,
                    tuple(prefix + place for place in problem.places),
                    problem.message,
                    problem.hint,
                    problem.about_key,
                )


def _problems_of(name: str, item: object) -> tuple[_Problem, ...]:
    try:
        text = json.dumps(item)  # key order included: messages list keys in it
    except (TypeError, ValueError):  # not JSON (a front end's bug): checked as it is
        return tuple(
            problem
            for error in _ITEM_VALIDATORS[name].iter_errors(item)
            for problem in _explain(error)
        )
    return _item_problems(name, text)


@functools.lru_cache(maxsize=4096)
def _item_problems(name: str, item: str) -> tuple[_Problem, ...]:
    """The problems of one item of the list ``name`` (its IR as JSON text), at pointers within
    the item."""
    return tuple(
        problem
        for error in _ITEM_VALIDATORS[name].iter_errors(json.loads(item))
        for problem in _explain(error)
    )


@dataclass(frozen=True)
class _Problem:
    """A message and where to report it: the first of ``places`` found in the source map wins,
    then the nearest ancestor of ``pointer`` (the node the failing keyword looked at).
    ``about_key``: the problem is the key at ``places[0]`` itself (unknown, misnamed)."""

    pointer: str
    places: tuple[str, ...]
    message: str
    hint: str | None = None
    about_key: bool = False


def _explain(error: ValidationError) -> Iterator[_Problem]:
    path = list(error.absolute_path)
    pointer = _pointer(path)
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    # jsonschema types these as "maybe unset"; every error iter_errors yields has them set.
    instance: Any = error.instance
    wanted: Any = error.validator_value
    noun = _noun(schema, path)
    keyword = error.validator

    if "propertyNames" in error.schema_path:
        # The failing instance is a key of the object at ``path``, not a value.
        yield _key_problem(error, pointer, str(instance))
        return

    if keyword == "additionalProperties" and isinstance(instance, Mapping):
        known = list(schema.get("properties", {}))
        for key in instance:
            if key not in known:
                yield _unknown_key(pointer, str(key), noun, known)
    elif keyword == "required" and isinstance(instance, Mapping):
        for key in wanted:
            if key not in instance:
                yield _Problem(
                    pointer,
                    (pointer + "#key", pointer),
                    f"missing required key '{key}' in {noun}",
                    _example_hint(noun, key, schema.get("properties", {}).get(key)),
                )
    elif keyword == "type":
        yield _type_problem(error, pointer, path, schema)
    elif keyword == "pattern" and isinstance(instance, str):
        yield _Problem(
            pointer,
            (pointer,),
            f"{_label(path)} {schema.get('patternErrorMessage', 'has the wrong form')}, "
            f"not {_show(instance)}",
            _pattern_hint(schema, instance),
        )
    elif keyword == "minLength":
        yield _Problem(pointer, (pointer,), f"{_label(path)} must not be empty")
    elif keyword == "minItems":
        item = _noun(_resolve(schema.get("items", {})), [])
        count = "one" if wanted == 1 else str(wanted)
        yield _Problem(
            pointer,
            (pointer, pointer + "#key"),
            f"{_label(path)} must list at least {count} {item}{'' if wanted == 1 else 's'}",
        )
    elif keyword == "minProperties":
        # 'then' and 'else' only go with 'if': they are not a way to fill an empty action.
        names = ", ".join(k for k in schema.get("properties", {}) if k not in {"then", "else"})
        yield _Problem(
            pointer, (pointer + "#key", pointer), f"empty {noun}", f"write one of: {names}"
        )
    elif keyword == "maxProperties" and isinstance(instance, Mapping):
        keys = list(instance)
        shown = _quoted(keys, ",")
        yield _Problem(
            pointer,
            (_child(pointer, keys[-1]) + "#key", pointer),
            f"{_article(noun)} {noun} has one key, got {len(keys)}: {shown}",
            f"write each {noun} as its own list item",
        )
    elif keyword == "dependentRequired" and isinstance(instance, Mapping):
        for key, needed in wanted.items():
            for other in needed:
                if key in instance and other not in instance:
                    yield _Problem(
                        pointer,
                        (_child(pointer, key) + "#key", pointer),
                        f"'{key}' without '{other}' in {noun}",
                        _together_hint(schema, key, other),
                    )
    elif keyword == "not" and "required" in wanted:
        keys = list(wanted["required"])
        yield _Problem(
            pointer,
            (_child(pointer, keys[-1]) + "#key", pointer),
            f"{_quoted(keys, 'and')} cannot be used together in {noun}",
            "keep one of them",
        )
    elif "errorMessage" in schema and keyword in {"anyOf", "oneOf", "minimum", "maximum"}:
        yield _Problem(
            pointer,
            (pointer,),
            f"{noun} {_show(instance)} is not allowed here: {schema['errorMessage']}",
        )
    elif keyword in {"anyOf", "oneOf"} and error.context:
        missing = _missing_alternatives(error.context)
        if missing:
            yield _Problem(
                pointer,
                (pointer + "#key", pointer),
                f"missing required key {_quoted(missing, 'or')} in {noun}",
            )
        else:
            best = best_match(error.context)
            if best is not None:
                yield from _explain(best)
    elif keyword in {"minimum", "maximum"}:
        bound = "at least" if keyword == "minimum" else "at most"
        yield _Problem(
            pointer, (pointer,), f"{_label(path)} must be {bound} {wanted}, not {_show(instance)}"
        )
    elif keyword in {"enum", "const"}:
        allowed = wanted if keyword == "enum" else [wanted]
        yield _Problem(
            pointer,
            (pointer,),
            f"{_label(path)} must be {' or '.join(_show(a) for a in allowed)}, "
            f"not {_show(instance)}",
        )
    else:
        # Not produced by the shipped schema; kept so that a schema change never loses an error.
        yield _Problem(pointer, (pointer,), f"{_label(path)} is not valid here: {keyword}")


def _key_problem(error: ValidationError, pointer: str, key: str) -> _Problem:
    """A key of the object at ``pointer`` failed its ``propertyNames`` schema."""
    places = (_child(pointer, key) + "#key", _child(pointer, key))
    noun = _noun(error.schema if isinstance(error.schema, Mapping) else {}, [])
    if error.validator == "pattern":
        hint = "use letters, digits and '_', not starting with a digit" if noun == "name" else None
        return _Problem(pointer, places, f"'{key}' is not a valid {noun}", hint, about_key=True)
    if noun == "if action" and key in ACTION_NAMES:
        return _Problem(
            pointer,
            places,
            f"'{key}' cannot share an action with 'if'",
            f"move '{key}' into 'then' or 'else', or into a list item of its own",
            about_key=True,
        )
    allowed: Any = error.validator_value if error.validator == "enum" else []
    return _Problem(
        pointer,
        places,
        f"unknown key '{key}' in {noun}",
        did_you_mean(key, allowed),
        about_key=True,
    )


def _unknown_key(pointer: str, key: str, noun: str, known: Sequence[str]) -> _Problem:
    places = (_child(pointer, key) + "#key", _child(pointer, key))
    hint = did_you_mean(key, known)
    if noun in {"action", "auth step"}:
        # Only an if action has more than one key: its 'then' and 'else' are not action names.
        names = [k for k in known if k not in {"then", "else"}]
        return _Problem(
            pointer,
            places,
            f"unknown {noun} '{key}'",
            hint or f"{noun}s are: {', '.join(names)}",
            about_key=True,
        )
    return _Problem(
        pointer,
        places,
        f"unknown key '{key}' in {noun}",
        hint or f"allowed keys: {', '.join(known)}",
        about_key=True,
    )


def _type_problem(
    error: ValidationError, pointer: str, path: Sequence[object], schema: Mapping[str, Any]
) -> _Problem:
    instance = error.instance
    # An empty YAML value ('connect:') has no text of its own: point at its key.
    places = (pointer + "#key", pointer) if instance is None else (pointer, pointer + "#key")
    if "patternErrorMessage" in schema and instance is not None:
        return _Problem(
            pointer,
            places,
            f"{_label(path)} {schema['patternErrorMessage']}, not {_show(instance)}",
            _pattern_hint(schema, instance),
        )
    expected = _expected(schema)
    return _Problem(
        pointer,
        places,
        f"expected {expected}, got {_kind(instance)}",
        _type_hint(path, schema, instance),
    )


def _expected(schema: Mapping[str, Any]) -> str:
    types = schema.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    described = []
    for name in names:
        if name == "object" and "title" in schema:
            noun = _noun(schema, [])
            described.append(f"{_article(noun)} {noun} object")
        elif name == "array":
            items = _resolve(schema.get("items", {}))
            title = items.get("title")
            if title and title != "Template":
                described.append(f"a list of {_noun(items, [])}s")
            else:
                described.append("a list")
        elif name == "string" and schema.get("title") == "Expression":
            described.append("an expression (a string)")
        else:
            described.append(_TYPE_NAMES.get(name, name))
    return " or ".join(described)


_TYPE_NAMES = {
    "object": "an object",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _type_hint(path: Sequence[object], schema: Mapping[str, Any], instance: object) -> str | None:
    key = path[-1] if path else None
    expected = schema.get("type")
    if instance is None and isinstance(key, str):
        if expected == "object" and not schema.get("required"):
            return f"'{key}' has no value: write '{key}: {{}}'"
        return f"'{key}' has no value"
    if expected == "array":
        items = _resolve(schema.get("items", {}))
        if isinstance(instance, Mapping):
            return "write it as a list: put '- ' in front of each item"
        if items.get("type") == "object":
            noun = _noun(items, [])
            return f"write a list of {noun}s, each item starting with '- '"
        if isinstance(key, str) and isinstance(instance, (str, int, float)):
            return f"write a list: '{key}: [{_flow(instance)}]'"
        return None
    if expected == "boolean" and isinstance(instance, str):
        # The YAML loader keeps yes/no/on/off as words (YAML 1.2): say what to write instead.
        word = instance.lower()
        if word in {"yes", "no", "on", "off", "y", "n"}:
            meant = "true" if word in {"yes", "on", "y"} else "false"
            return f"write {meant}: '{instance}' is text, not a boolean"
    if expected != "object":
        return None
    title = schema.get("title")
    properties: Mapping[str, Any] = schema.get("properties", {})
    if title in {"Action", "Auth step"} and isinstance(instance, str) and instance in properties:
        target = _resolve(properties[instance])
        if target.get("type") == "object" and not target.get("required"):
            return f"write '{instance}: {{}}'"
        return f"'{instance}' needs a value: write '{instance}: …'"
    if title in {"Action", "Auth step"}:
        return f"{_article(_noun(schema, []))} {_noun(schema, [])} is an object with one key"
    if title == "Broadcast":
        return "put the message under 'data': 'broadcast: {data: …}'"
    if title == "Close" and isinstance(instance, int) and not isinstance(instance, bool):
        return f"write 'close: {{code: {instance}}}'"
    if title == "Compression" and isinstance(instance, (bool, str)):
        enabled = str(instance).lower() not in {"false", "off", "no", "n", "none", "disabled"}
        return f"write 'compression: {{enabled: {'true' if enabled else 'false'}}}'"
    return None


def _pattern_hint(schema: Mapping[str, Any], value: object) -> str | None:
    title = schema.get("title")
    if title in {"Duration", "Delay", "Size"} and _BARE_NUMBER.fullmatch(str(value)):
        units = ("KB", "MB") if title == "Size" else ("s", "ms")
        return f"add a unit, e.g. '{value}{units[0]}' or '{value}{units[1]}'"
    if title in {"Path", "Prefix"} and isinstance(value, str):
        segments = [s for s in value.strip().split("/") if s]
        fixed = "/" + "/".join(segments)
        if title == "Prefix" and not segments:
            return "leave the prefix out"
        if fixed != value and not any(c.isspace() for c in fixed):
            return f"did you mean '{fixed}'?"
    return None


def _example_hint(noun: str, key: str, prop: object) -> str | None:
    if noun == "broadcast" and key == "data":
        return "put the message under 'data': 'broadcast: {data: {…}, to: [room]}'"
    if not isinstance(prop, Mapping):
        return None
    # A template's examples say nothing about this key: only more specific ones are shown.
    target = _resolve(prop)
    examples = prop.get("examples") or (
        target.get("examples") if target.get("title") != "Template" else None
    )
    if examples and isinstance(examples[0], (str, int, float)):
        return f"for example '{key}: {_flow(examples[0])}'"
    return None


def _together_hint(schema: Mapping[str, Any], key: str, other: str) -> str | None:
    """An example of the schema's in which ``key`` comes with ``other``, as a hint."""
    for example in schema.get("examples", []):
        if isinstance(example, Mapping) and key in example and other in example:
            shown = ", ".join(f"{k}: {_flow(v)}" for k, v in example.items())
            return f"'{key}' goes with '{other}', e.g. '{{{shown}}}'"
    return None


def _missing_alternatives(context: Iterable[ValidationError]) -> list[str]:
    """The keys of an anyOf/oneOf whose branches each only require one more key, else []."""
    keys: list[str] = []
    for sub in context:
        if sub.validator != "required" or sub.relative_path:
            return []
        wanted: Any = sub.validator_value
        keys.extend(k for k in wanted if k not in keys)
    return keys


def _locate(problem: _Problem, source_map: SourceMap) -> Span:
    for place in problem.places:
        span = source_map.get(place)
        if span is not None:
            return span
    return locate(source_map, problem.pointer)


def _pointer(path: Iterable[object]) -> str:
    """The JSON pointer (RFC 6901) of a jsonschema path."""
    return "".join("/" + escape_pointer(str(part)) for part in path)


def _child(pointer: str, key: str) -> str:
    return pointer + "/" + escape_pointer(key)


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The $defs entry a local ``$ref`` names, or the schema itself."""
    ref = schema.get("$ref", schema.get("x-ref"))
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target: Mapping[str, Any] = SCHEMA["$defs"][ref.removeprefix("#/$defs/")]
        return target
    return schema


def _noun(schema: Mapping[str, Any], path: Sequence[object]) -> str:
    """What the schema describes, as a noun in a sentence ('route', 'message handler')."""
    title = schema.get("title")
    if not isinstance(title, str):
        named = [p for p in path if isinstance(p, str)]
        return named[-1] if named else "scenario"
    # 'HTTP status' keeps its capitals; 'Message handler' becomes 'message handler'.
    return title if title[:2].isupper() else title[:1].lower() + title[1:]


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


def _label(path: Sequence[object]) -> str:
    if path and isinstance(path[-1], str):
        return f"'{path[-1]}'"
    return "the value"


def _quoted(words: Iterable[object], joiner: str) -> str:
    """``'a', 'b'`` (joiner ``,``) or ``'a' or 'b'``."""
    separator = ", " if joiner == "," else f" {joiner} "
    return separator.join(f"'{w}'" for w in words)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _show(value: object) -> str:
    text = f"'{value}'" if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def _flow(value: object) -> str:
    """``value`` as written in YAML flow style (strings bare when that is unambiguous)."""
    return value if isinstance(value, str) else json.dumps(value)

"""YAML scenario text → IR value + source map, with every problem as a positioned ScenarioError.

PyYAML composes the node graph (with line and column marks); the JSON value and the source map
are built here from the nodes, so that every IR node — and every mapping key, under
``POINTER#key`` — can be traced back to ``file:line:col``.

How YAML values become JSON values (PyYAML's YAML 1.1 resolution, with its traps closed):

* Keys are always strings, and a plain key is kept exactly as written: ``on:`` is the key
  ``"on"`` (YAML 1.1 would make it the boolean true), ``1:`` is ``"1"``. A key that is a list,
  a mapping or carries a non-string tag is an error.
* Plain ``yes``, ``no``, ``on``, ``off``, ``y``, ``n`` values, in any case, are **strings**, as in
  YAML 1.2 and in editors (the VS Code YAML extension reads YAML 1.2). Only ``true`` and ``false``
  (``True``, ``TRUE``, …) are booleans. An explicit ``!!bool yes`` is still true.
* ``1e3`` and ``1.0e3`` are numbers (JSON's syntax; PyYAML would keep them as text).
* Values YAML 1.1 reads differently from what most people mean are errors with a hint to quote
  them: dates and timestamps (``2024-01-01``), base-60 numbers (``1:30`` = 90), leading-zero
  octals (``0755`` = 493). ``.inf`` and ``.nan`` are errors too: JSON has no such numbers.
* Tags other than the JSON ones (``!!str !!int !!float !!bool !!null !!seq !!map``) are errors:
  ``!!binary``, ``!!set``, ``!!omap``, ``!!timestamp``, local tags.
* Anchors, aliases and merge keys (``<<: *defaults``) work. A document that expands to more than
  ``MAX_NODES`` values (the "billion laughs") or nests deeper than ``MAX_DEPTH`` lists and
  mappings is refused before anything is built.

When the text is a YAML document, its value is returned even if errors were found (an offending
scalar is kept as its text, an offending key dropped) so that the caller can report further
errors in the same run; a value that came with errors must never be run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Protocol, cast

import yaml
from yaml.constructor import SafeConstructor
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import Reader, ReaderError

from ..errors import ScenarioError
from .source import Source, SourceMap, Span, escape_pointer

__all__ = ["MAX_DEPTH", "MAX_NODES", "load_yaml"]

#: Lists and mappings nested deeper than this are refused (a scenario needs about a dozen).
MAX_DEPTH = 100
#: A document whose value, aliases expanded, holds more nodes than this is refused.
MAX_NODES = 1_000_000

_TAG = "tag:yaml.org,2002:"
_STR, _NULL, _BOOL, _INT, _FLOAT = (_TAG + t for t in ("str", "null", "bool", "int", "float"))
_SEQ, _MAP, _MERGE, _TIMESTAMP = (_TAG + t for t in ("seq", "map", "merge", "timestamp"))

# YAML 1.1 booleans that YAML 1.2 (and nearly every reader of a scenario) takes as words.
_WORD_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_LEADING_ZERO_OCTAL = re.compile(r"[-+]?0[0-7_]+")


def load_yaml(source: Source) -> tuple[object | None, SourceMap, list[ScenarioError]]:
    """The IR value of a YAML scenario, its source map, and every error found.

    The value is None when the text is not a usable YAML document (syntax error, empty file,
    too deep, too large); see the module docstring for how YAML values become JSON.
    """
    source_map: SourceMap = {}
    try:
        root, explicit = _compose(source.text)
    except _Refused as refused:
        return None, source_map, [refused.error(source)]
    except MarkedYAMLError as err:
        return None, source_map, [_syntax_error(source, err)]
    except ReaderError as err:
        return None, source_map, [_reader_error(source, err)]
    except RecursionError:
        return None, source_map, [source.error(1, 1, "nesting too deep", _DEEP_HINT)]
    except yaml.YAMLError as err:
        return None, source_map, [source.error(1, 1, f"not a YAML document: {err}")]

    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL and not root.value):
        hint = "a scenario is a mapping with a list of 'routes', e.g. 'routes: [{path: /ws}]'"
        return None, source_map, [source.error(1, 1, "empty scenario file", hint)]

    problem = _measure(root)
    if problem is not None:
        return None, source_map, [problem.error(source)]

    builder = _Builder(source, source_map, explicit)
    value = builder.value(root, "")
    if not isinstance(value, dict):
        kind = "a list" if isinstance(value, list) else f"the scalar {_shown(root)}"
        builder.fail(root, f"a scenario must be a mapping of keys such as 'routes', not {kind}")
    return value, source_map, builder.errors


# --- composing ------------------------------------------------------------------------------


class _Position(Protocol):
    """A mark of PyYAML's Python or C parser: 0-based line and column."""

    line: int
    column: int


class _Refused(Exception):
    """The document is refused before it is built: too deep, too large, or self-containing."""

    def __init__(self, mark: _Position | None, message: str, hint: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message
        self.hint = hint

    def error(self, source: Source) -> ScenarioError:
        if self.mark is None:
            return source.error(1, 1, self.message, self.hint)
        return source.error(self.mark.line + 1, self.mark.column + 1, self.message, self.hint)


_DEEP_HINT = f"lists and mappings may nest at most {MAX_DEPTH} levels deep; is a bracket unclosed?"


class _Composer(yaml.SafeLoader):
    """PyYAML's safe composer, refusing deep nesting before its recursion can overflow, and
    remembering which nodes carry an explicit tag (the composed node no longer tells)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.explicit: set[int] = set()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            return super().compose_node(parent, index)
        collection = self.check_event(CollectionStartEvent)
        # check_event() has peeked at the event: it is the node's first, with its tag and mark.
        event: NodeEvent = self.current_event
        if collection:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _Refused(event.start_mark, "nesting too deep", _DEEP_HINT)
        try:
            node = super().compose_node(parent, index)
        finally:
            if collection:
                self.depth -= 1
        if getattr(event, "tag", None) not in (None, "!") and node is not None:
            self.explicit.add(id(node))
        return node


def _compose(text: str) -> tuple[Node | None, set[int]]:
    loader = _Composer(text)
    try:
        return loader.get_single_node(), loader.explicit
    finally:
        loader.dispose()


def _children(node: Node) -> Iterator[Node]:
    if isinstance(node, SequenceNode):
        yield from node.value
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _measure(root: Node) -> _Refused | None:
    """Refuse a graph whose expansion is too large or too deep, or that contains itself.

    Aliases make the node graph a DAG whose expansion can be exponentially larger than the text
    (the "billion laughs"); sizes and heights are computed once per node, without recursion.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = list(_children(node))
            size[key] = 1 + sum(size[id(k)] for k in kids)
            below = max((height[id(k)] for k in kids), default=0)
            height[key] = below + (0 if isinstance(node, ScalarNode) else 1)
            in_progress.discard(key)
            continue
        if key in size:
            continue
        if key in in_progress:
            # Reached again before it was finished: the node contains an alias to itself.
            return _Refused(
                node.start_mark,
                "an alias refers to a node that contains it",
                "a recursive structure cannot be a JSON value",
            )
        in_progress.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)

    if size[id(root)] > MAX_NODES:
        return _Refused(
            root.start_mark,
            f"too many nodes: with its aliases expanded, the document has "
            f"{size[id(root)]:,} nodes (the limit is {MAX_NODES:,})",
            "each use of an alias (*name) copies everything its anchor holds",
        )
    if height[id(root)] > MAX_DEPTH:
        # Only aliases can get here (the composer refuses deep text): find where it gets deep.
        node, depth = root, 1
        while depth <= MAX_DEPTH:
            node = max(_children(node), key=lambda k: height[id(k)])
            depth += 0 if isinstance(node, ScalarNode) else 1
        return _Refused(node.start_mark, "nesting too deep", _DEEP_HINT)
    return None


# --- building the value and the source map ---------------------------------------------------


class _Builder:
    def __init__(self, source: Source, source_map: SourceMap, explicit: set[int]) -> None:
        self.source = source
        self.source_map = source_map
        self.explicit = explicit
        self.errors: list[ScenarioError] = []
        self.reported: set[ScenarioError] = set()
        # Used only for its constructors of the JSON tags (ints in any base, floats, booleans).
        self.constructor = SafeConstructor()

    def fail(self, node: Node, message: str, hint: str | None = None) -> None:
        error = self.source.error_at(self.span(node), message, hint)
        if error not in self.reported:  # an anchored node is built once per alias
            self.reported.add(error)
            self.errors.append(error)

    def span(self, node: Node) -> Span:
        start, end = node.start_mark, node.end_mark
        origin = None
        if isinstance(node, ScalarNode) and start.line == end.line:
            text = self.source.text[start.index : end.index]
            if node.style is None and text == node.value:
                origin = (start.line + 1, start.column + 1)
            elif node.style in ("'", '"') and text[1:-1] == node.value:
                origin = (start.line + 1, start.column + 2)
        return Span(start.line + 1, start.column + 1, end.line + 1, end.column + 1, origin)

    def value(self, node: Node, pointer: str) -> object:
        self.source_map[pointer] = self.span(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self.unsupported_tag(node)
            return [self.value(item, f"{pointer}/{i}") for i, item in enumerate(node.value)]
        if node.tag != _MAP:
            self.unsupported_tag(node)
        return self.mapping(cast(MappingNode, node), pointer)

    def mapping(self, node: MappingNode, pointer: str) -> dict[str, object]:
        own: list[tuple[str, Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        first: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if self.is_merge_key(key_node):
                merged.extend(self.merged_pairs(value_node))
                continue
            key = self.key(key_node)
            if key is None:
                continue
            if key in first:
                line = first[key].start_mark.line + 1
                self.fail(
                    key_node, f"duplicate key '{key}'", f"'{key}' is already set on line {line}"
                )
                continue
            first[key] = key_node
            own.append((key, key_node, value_node))

        # YAML's merge-key rule: merged keys are defaults; own keys win over all of them, and of
        # the merged mappings the first wins. Merged keys come first, as PyYAML orders them.
        entries: list[tuple[str, Node, Node]] = []
        taken = set(first)
        for key_node, value_node in merged:
            key = self.key(key_node)
            if key is not None and key not in taken:
                taken.add(key)
                entries.append((key, key_node, value_node))

        result: dict[str, object] = {}
        for key, key_node, value_node in entries + own:
            child = f"{pointer}/{escape_pointer(key)}"
            self.source_map[child + "#key"] = self.span(key_node)
            result[key] = self.value(value_node, child)
        return result

    def is_merge_key(self, node: Node) -> bool:
        return (
            isinstance(node, ScalarNode)
            and node.tag == _MERGE
            and node.style is None
            and id(node) not in self.explicit
        )

    def merged_pairs(self, node: Node) -> list[tuple[Node, Node]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[tuple[Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                self.fail(
                    source, "'<<' merges mappings only", "write '<<: *name' or '<<: [*a, *b]'"
                )
                continue
            # A merged mapping may itself merge others; its own keys win over those.
            inner_own = [(k, v) for k, v in source.value if not self.is_merge_key(k)]
            inner_merged = [
                p for k, v in source.value if self.is_merge_key(k) for p in self.merged_pairs(v)
            ]
            pairs += inner_own + inner_merged
        return pairs

    def key(self, node: Node) -> str | None:
        if isinstance(node, ScalarNode):
            explicit = id(node) in self.explicit
            # A plain key is its text: 'on', 'yes', '1' and '2024-01-01' stay what was typed.
            if (node.style is None and not explicit) or node.tag == _STR:
                return str(node.value)
            self.fail(node, f"a key must be a string, not {_short_tag(node.tag)}", "remove the tag")
            return None
        kind = "a list" if isinstance(node, SequenceNode) else "a mapping"
        self.fail(
            node,
            f"a key must be a string, not {kind}",
            "complex keys ('? [a, b]') have no JSON equivalent",
        )
        return None

    def scalar(self, node: ScalarNode) -> object:
        tag, text = node.tag, str(node.value)
        explicit = id(node) in self.explicit
        plain = node.style is None and not explicit
        if tag == _STR:
            if plain and _JSON_NUMBER.fullmatch(text):
                return float(text)  # '1e3': a number in JSON and YAML 1.2, text in PyYAML
            return text
        if tag == _NULL:
            return None
        if tag == _BOOL and plain and text.lower() in _WORD_BOOLEANS:
            return text
        if tag == _TIMESTAMP and plain:
            self.fail(
                node,
                f"YAML reads '{text}' as a date, which is not a JSON value",
                f'quote it to keep the text: "{text}"',
            )
            return text
        if tag in (_BOOL, _INT, _FLOAT):
            return self.number_or_bool(node, plain)
        if tag.startswith(_TAG) and tag[len(_TAG) :] in ("merge", "value") and plain:
            return text  # '<<' and '=' mean something only as keys
        self.unsupported_tag(node)
        return text

    def number_or_bool(self, node: ScalarNode, plain: bool) -> object:
        text = str(node.value)
        construct = {
            _BOOL: self.constructor.construct_yaml_bool,
            _INT: self.constructor.construct_yaml_int,
            _FLOAT: self.constructor.construct_yaml_float,
        }[node.tag]
        try:
            value: object = construct(node)
        except Exception:
            # The constructors trust the resolver's patterns; an explicit tag ('!!float x',
            # '!!int') bypasses them, and then they fail in many ways (IndexError, KeyError, …).
            self.fail(node, f"'{text}' is not a valid {_short_tag(node.tag)} value")
            return text
        if isinstance(value, float) and not math.isfinite(value):
            meaning = "not-a-number" if math.isnan(value) else "infinity"
            self.fail(
                node,
                f"YAML reads '{text}' as {meaning}, which is not a JSON number",
                f'quote it to keep the text: "{text}"',
            )
            return text
        if plain and ":" in text:
            self.fail(
                node,
                f"YAML 1.1 reads '{text}' as the base-60 number {value}",
                f'quote it to keep the text: "{text}", or write {value}',
            )
            return text
        if plain and node.tag == _INT and _LEADING_ZERO_OCTAL.fullmatch(text):
            self.fail(
                node,
                f"YAML 1.1 reads '{text}' as the octal number {value}",
                f'quote it to keep the text: "{text}", or write {value}',
            )
            return text
        return value

    def unsupported_tag(self, node: Node) -> None:
        tag = _short_tag(node.tag)
        self.fail(
            node,
            f"unsupported tag '{tag}'",
            "a scenario holds JSON values only: strings, numbers, booleans, null, "
            "lists and mappings",
        )


# --- syntax errors ----------------------------------------------------------------------------

_TOKENS = {
    "'<stream end>'": "the end of the file",
    "'<block end>'": "the end of the block",
    "'<block mapping start>'": "a new mapping",
    "'<block sequence start>'": "a new list",
    "'<document start>'": "'---'",
    "'?'": "a key",
}


def _syntax_error(source: Source, err: MarkedYAMLError) -> ScenarioError:
    problem = err.problem or err.context or "invalid YAML"
    context = err.context or ""
    at = err.problem_mark or err.context_mark
    opened = err.context_mark

    def here(message: str, hint: str | None = None, mark: Mark | None = at) -> ScenarioError:
        if mark is None:
            return source.error(1, 1, message, hint)
        return source.error(mark.line + 1, mark.column + 1, message, hint)

    found = re.search(r"found character '(.+)' that cannot start any token", problem)
    if found and found.group(1) == "\\t":
        return here(
            "tab character where YAML expects spaces",
            "indent with spaces: YAML does not allow tabs for indentation",
        )
    if found:
        char = found.group(1)
        return here(f"a value cannot start with '{char}'", f'quote the value: "{char}…"')
    if "quoted scalar" in context and ("end of stream" in problem or "document" in problem):
        quote = _char_at(source, opened) or '"'
        return here("unclosed quoted string", f"add the closing {quote}", opened)
    escape = re.search(r"found unknown escape character '(.+)'", problem)
    if escape:
        return here(
            f"unknown escape '\\{escape.group(1)}' in a double-quoted string",
            "write '\\\\' for a backslash, or use single quotes",
        )
    flow = re.search(r"expected ',' or '([\]}])', but got (.+)", problem)
    if flow and "stream end" in flow.group(2):
        bracket = "[" if flow.group(1) == "]" else "{"
        return here(f"unclosed '{bracket}'", f"add the closing '{flow.group(1)}'", opened)
    if flow:
        return here(
            f"expected ',' or '{flow.group(1)}', found {_readable(flow.group(2))}",
            _opened_at(opened, "the list or mapping"),
        )
    if "mapping values are not allowed here" in problem:
        return here(
            "unexpected ':'",
            "quote a value that contains ': ' (\"a: b\"), or check the indentation",
        )
    if "could not find expected ':'" in problem:
        return here("expected ':' after a key", "a mapping entry is written 'key: value'", opened)
    if problem.startswith("expected <block end>, but found '-'"):
        return here(
            "a list item where a key was expected",
            "indent the list under its key, or remove the '-'",
        )
    if problem.startswith("expected <block end>"):
        return here(
            "bad indentation",
            _opened_at(opened, "the block that starts", "this line does not line up with"),
        )
    alias = re.search(r"found undefined alias '(.+)'", problem)
    if alias:
        name = alias.group(1)
        return here(f"unknown alias '*{name}'", f"define it first with '&{name}'")
    if "found duplicate anchor" in context:
        anchor = re.search(r"anchor '(.+)'", context)
        name = anchor.group(1) if anchor else ""
        return here(f"duplicate anchor '&{name}'", _opened_at(opened, "the first one"))
    if "expected a single document" in context:
        return here(
            "more than one document in the file",
            "a scenario file holds one YAML document: remove the '---' line",
        )
    node = re.search(r"expected the node content, but found (.+)", problem)
    if node:
        return here(f"expected a value, found {_readable(node.group(1))}")
    hint = f"{context} (line {opened.line + 1})" if context and opened is not None else None
    return here(_readable(problem), hint)


def _reader_error(source: Source, err: ReaderError) -> ScenarioError:
    position = err.position if isinstance(err.position, int) else 0
    text = source.text
    line = text.count("\n", 0, position) + 1
    col = position - (text.rfind("\n", 0, position) + 1) + 1
    char = err.character if isinstance(err.character, int) else 0
    # One stray control character is a typo; several (or a NUL) mean the file is not text.
    if char == 0 or len(Reader.NON_PRINTABLE.findall(text, 0, 4096)) > 1:
        hint = "scenario files are UTF-8 text; is this a binary file?"
    else:
        hint = f'remove it, or write it as the escape "\\u{char:04x}" in a double-quoted string'
    return source.error(line, col, f"control character U+{char:04X} is not allowed in YAML", hint)


def _readable(text: str) -> str:
    for token, words in _TOKENS.items():
        text = text.replace(token, words)
    return text.replace("but got", "found").replace("but found", "found")


def _opened_at(mark: Mark | None, what: str, lead: str = "see") -> str | None:
    if mark is None:
        return None
    return f"{lead} {what} on line {mark.line + 1}"


def _char_at(source: Source, mark: Mark | None) -> str | None:
    if mark is None or not 0 <= mark.index < len(source.text):
        return None
    return source.text[mark.index]


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _shown(node: Node) -> str:
    text = str(node.value) if isinstance(node, ScalarNode) else ""
    return f"'{text}'" if len(text) <= 40 else f"'{text[:39]}…'"

"""yaml_loader: YAML text → IR value + source map, and every problem as a positioned error."""

from __future__ import annotations

import random
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from support import UNIT

from scenario_engine.errors import ScenarioError
from scenario_engine.language.schema import schema_errors
from scenario_engine.language.source import Source, Span
from scenario_engine.language.yaml_frontend import MAX_DEPTH, load_yaml

CHAT_YAML = """\
# The reference's chat application, as in scenarios/chat.mock.
prefix: /api
routes:
  - path: /ws/chat
    on:
      connect:
        - send: { type: connected, id: "${conn.id}" }
      message:
        - type: join
          do:
            - join: chat
            - broadcast:
                data: { type: user-joined, username: "${msg.username}" }
                to: [chat]
        - type: message
          do:
            - broadcast:
                data:
                  type: chat-message
                  username: "${msg.username}"
                  message: "${msg.message}"
                  timestamp: "${now()}"
                to: [chat]
                includeSelf: true
        - type: typing
          do:
            - broadcast: { data: { type: typing, username: "${msg.username}" } }
      close:
        - broadcast: { data: { type: user-left, userId: "${conn.id}" } }
"""

CHAT_IR = {
    "prefix": "/api",
    "routes": [
        {
            "path": "/ws/chat",
            "on": {
                "connect": [{"send": {"type": "connected", "id": "${conn.id}"}}],
                "message": [
                    {
                        "type": "join",
                        "do": [
                            {"join": "chat"},
                            {
                                "broadcast": {
                                    "data": {"type": "user-joined", "username": "${msg.username}"},
                                    "to": ["chat"],
                                }
                            },
                        ],
                    },
                    {
                        "type": "message",
                        "do": [
                            {
                                "broadcast": {
                                    "data": {
                                        "type": "chat-message",
                                        "username": "${msg.username}",
                                        "message": "${msg.message}",
                                        "timestamp": "${now()}",
                                    },
                                    "to": ["chat"],
                                    "includeSelf": True,
                                }
                            }
                        ],
                    },
                    {
                        "type": "typing",
                        "do": [
                            {
                                "broadcast": {
                                    "data": {"type": "typing", "username": "${msg.username}"}
                                }
                            }
                        ],
                    },
                ],
                "close": [{"broadcast": {"data": {"type": "user-left", "userId": "${conn.id}"}}}],
            },
        }
    ],
}


def load(text: str, name: str = "s.yaml") -> tuple[object, dict[str, Span], list[ScenarioError]]:
    return load_yaml(Source(name, text))


def only_error(text: str) -> str:
    _, _, errors = load(text)
    assert len(errors) == 1, [e.format_text() for e in errors]
    return errors[0].format_text()


# --- a valid scenario ---------------------------------------------------------------------------


def test_chat_example_loads_and_passes_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "chat.scenario.yaml"
    path.write_text(CHAT_YAML, encoding="utf-8")
    source = Source(str(path), path.read_text(encoding="utf-8"))
    value, source_map, errors = load_yaml(source)
    assert errors == []
    assert value == CHAT_IR
    assert schema_errors(value, source, source_map) == []


def test_source_map_has_a_span_for_every_node_and_key() -> None:
    _, source_map, _ = load(CHAT_YAML)
    assert source_map[""].line == 2
    assert source_map["/prefix"] == Span(2, 9, 2, 13, origin=(2, 9))
    assert source_map["/prefix#key"] == Span(2, 1, 2, 7, origin=(2, 1))
    assert source_map["/routes/0/on#key"].line == 5
    send = "/routes/0/on/connect/0/send"
    assert source_map[send + "#key"] == Span(7, 11, 7, 15, origin=(7, 11))
    assert source_map[send + "/id"] == Span(7, 40, 7, 52, origin=(7, 41))
    assert source_map["/routes/0/on/message/1/do/0/broadcast/includeSelf#key"].line == 24


def test_key_pointers_escape_slash_and_tilde() -> None:
    value, source_map, errors = load("a/b: 1\nc~d: 2\n")
    assert errors == []
    assert value == {"a/b": 1, "c~d": 2}
    assert {"/a~1b", "/a~1b#key", "/c~0d", "/c~0d#key"} <= set(source_map)


def test_origin_only_where_the_value_is_a_verbatim_copy_of_one_line() -> None:
    text = (
        "a: plain text\nb: \"no escapes\"\nc: \"tab\\there\"\nd: 'it''s'\n"
        "e: |\n  block\nf: folded\n  plain\ng: 'single'\n"
    )
    value, source_map, errors = load(text)
    assert errors == []
    assert value == {
        "a": "plain text",
        "b": "no escapes",
        "c": "tab\there",
        "d": "it's",
        "e": "block\n",
        "f": "folded plain",
        "g": "single",
    }
    assert source_map["/a"].origin == (1, 4)
    assert source_map["/b"].origin == (2, 5)
    assert source_map["/g"].origin == (9, 5)
    for transformed in ("/c", "/d", "/e", "/f"):
        assert source_map[transformed].origin is None, transformed
    # origin lets a position inside the string be found in the file.
    assert source_map["/b"].at_offset(3, "no escapes") == (2, 8)


# --- YAML 1.1 traps -----------------------------------------------------------------------------


def test_the_on_key_stays_the_string_on() -> None:
    value, source_map, errors = load("routes:\n  - path: /ws\n    on:\n      connect: []\n")
    assert errors == []
    assert value == {"routes": [{"path": "/ws", "on": {"connect": []}}]}
    assert source_map["/routes/0/on#key"] == Span(3, 5, 3, 7, origin=(3, 5))


def test_plain_keys_are_kept_as_written() -> None:
    value, _, errors = load("on: 1\nyes: 2\n1: 3\nnull: 4\n2024-01-01: 5\n'q': 6\n")
    assert errors == []
    assert value == {"on": 1, "yes": 2, "1": 3, "null": 4, "2024-01-01": 5, "q": 6}


def test_yes_no_on_off_values_are_strings_true_false_are_booleans() -> None:
    words = ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF", "Y", "N"]
    text = "".join(f"w{i}: {w}\n" for i, w in enumerate(words))
    text += "t: true\nf: False\nT: TRUE\nexplicit: !!bool yes\n"
    value, _, errors = load(text)
    assert errors == []
    assert isinstance(value, dict)
    assert [value[f"w{i}"] for i in range(len(words))] == words
    assert (value["t"], value["f"], value["T"], value["explicit"]) == (True, False, True, True)


def test_numbers_and_nulls() -> None:
    text = "a: 1e3\nb: 1.0e3\nc: 0x1F\nd: 1_000\ne: -0.5\nf: ~\ng:\nh: null\ni: '12'\nj: !!str 12\n"
    value, _, errors = load(text)
    assert errors == []
    assert value == {
        "a": 1000.0,
        "b": 1000.0,
        "c": 31,
        "d": 1000,
        "e": -0.5,
        "f": None,
        "g": None,
        "h": None,
        "i": "12",
        "j": "12",
    }


def test_values_that_are_not_json_are_reported() -> None:
    assert only_error("when: 2024-01-01\n") == (
        "s.yaml:1:7: error: YAML reads '2024-01-01' as a date, which is not a JSON value\n"
        "    1 | when: 2024-01-01\n"
        "      |       ^^^^^^^^^^\n"
        '  hint: quote it to keep the text: "2024-01-01"'
    )
    assert only_error("x: .inf\n").startswith(
        "s.yaml:1:4: error: YAML reads '.inf' as infinity, which is not a JSON number"
    )
    assert "as not-a-number" in only_error("x: .nan\n")
    assert only_error("t: 1:30\n").splitlines()[0] == (
        "s.yaml:1:4: error: YAML 1.1 reads '1:30' as the base-60 number 90"
    )
    assert only_error("pin: 0755\n").splitlines()[-1] == (
        '  hint: quote it to keep the text: "0755", or write 493'
    )


def test_unsupported_tags_are_reported() -> None:
    for text, tag in [
        ("x: !!binary aGVsbG8=\n", "!!binary"),
        ("x: !!set {a, b}\n", "!!set"),
        ("x: !!omap [a: 1]\n", "!!omap"),
        ("x: !local thing\n", "!local"),
        ("x: !!python/object:os.system rm\n", "!!python/object:os.system"),
    ]:
        assert only_error(text).splitlines()[0] == f"s.yaml:1:4: error: unsupported tag '{tag}'"


def test_keys_that_are_not_strings_are_reported() -> None:
    value, _, errors = load("? [a, b]\n: 1\n!!int 3: x\nok: 2\n")
    assert value == {"ok": 2}
    assert [str(e) for e in errors] == [
        "s.yaml:1:3: error: a key must be a string, not a list",
        "s.yaml:3:1: error: a key must be a string, not !!int",
    ]


def test_duplicate_keys_are_reported_at_the_second() -> None:
    text = "routes: []\nprefix: /a\nroutes:\n  - path: /b\n"
    value, _, errors = load(text)
    assert value == {"routes": [], "prefix": "/a"}
    assert [e.format_text() for e in errors] == [
        "s.yaml:3:1: error: duplicate key 'routes'\n"
        "    3 | routes:\n"
        "      | ^^^^^^\n"
        "  hint: 'routes' is already set on line 1"
    ]


def test_anchors_aliases_and_merge_keys() -> None:
    text = (
        "let:\n"
        "  base: &b {x: 1, y: 2}\n"
        "  copy: *b\n"
        "  over: {<<: *b, y: 3}\n"
        "  many: {<<: [*b, {w: 0}], x: 9}\n"
    )
    value, source_map, errors = load(text)
    assert errors == []
    assert value == {
        "let": {
            "base": {"x": 1, "y": 2},
            "copy": {"x": 1, "y": 2},
            "over": {"x": 1, "y": 3},
            "many": {"y": 2, "w": 0, "x": 9},
        }
    }
    # A merged key is reported where it is written: in the anchored mapping.
    assert source_map["/let/over/x#key"].line == 2
    assert source_map["/let/over/y#key"].line == 4


# --- refused documents --------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    for text in ["", "\n\n", "# only a comment\n# and another\n", "---\n"]:
        path = tmp_path / "empty.yaml"
        path.write_text(text, encoding="utf-8")
        value, _, errors = load_yaml(Source(str(path), path.read_text(encoding="utf-8")))
        assert value is None
        assert [e.message for e in errors] == ["empty scenario file"]
        assert (errors[0].line, errors[0].col) == (1, 1)
    assert only_error("").splitlines()[-1] == (
        "  hint: a scenario is a mapping with a list of 'routes', e.g. 'routes: [{path: /ws}]'"
    )


def test_top_level_value_must_be_a_mapping() -> None:
    assert only_error("- path: /ws\n").splitlines()[0] == (
        "s.yaml:1:1: error: a scenario must be a mapping of keys such as 'routes', not a list"
    )
    assert str(load("hello\n")[2][0]) == (
        "s.yaml:1:1: error: a scenario must be a mapping of keys such as 'routes', "
        "not the scalar 'hello'"
    )


def test_more_than_one_document() -> None:
    assert only_error("routes: []\n---\nroutes: []\n") == (
        "s.yaml:2:1: error: more than one document in the file\n"
        "    2 | ---\n"
        "      | ^\n"
        "  hint: a scenario file holds one YAML document: remove the '---' line"
    )


def test_ten_thousand_nested_brackets() -> None:
    started = time.monotonic()
    value, source_map, errors = load("x: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert value is None
    assert source_map == {}
    # The mapping is level 1: the bracket at level MAX_DEPTH + 1 is the one reported.
    assert [str(e) for e in errors] == [f"s.yaml:1:{3 + MAX_DEPTH}: error: nesting too deep"]
    assert errors[0].hint is not None and "100 levels" in errors[0].hint
    assert time.monotonic() - started < 5 * UNIT


def test_deep_block_mappings() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(300))
    value, _, errors = load(text)
    assert value is None
    assert [(e.line, e.message) for e in errors] == [(MAX_DEPTH + 1, "nesting too deep")]


def test_depth_at_the_limit_is_fine() -> None:
    value, _, errors = load("x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n")
    assert errors == []
    assert value is not None


def test_aliases_cannot_nest_past_the_limit() -> None:
    inner = "[" * 90 + "1" + "]" * 90
    value, _, errors = load(f"a: &a {inner}\nb: {'[' * 20}*a{']' * 20}\n")
    assert value is None
    assert [e.message for e in errors] == ["nesting too deep"]


def test_billion_laughs() -> None:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    started = time.monotonic()
    value, _, errors = load(text)
    assert value is None
    assert len(errors) == 1
    assert errors[0].message.startswith("too many nodes: with its aliases expanded")
    assert errors[0].hint == "each use of an alias (*name) copies everything its anchor holds"
    assert time.monotonic() - started < 5 * UNIT


def test_recursive_alias() -> None:
    for text in ["a: &a [*a]\n", "a: &a {b: *a}\n"]:
        value, _, errors = load(text)
        assert value is None
        assert [str(e) for e in errors] == [
            "s.yaml:1:4: error: an alias refers to a node that contains it"
        ]


# --- syntax errors ------------------------------------------------------------------------------


def test_tab_indentation() -> None:
    assert only_error("routes:\n\t- path: /ws\n") == (
        "s.yaml:2:1: error: tab character where YAML expects spaces\n"
        "    2 |  - path: /ws\n"
        "      | ^\n"
        "  hint: indent with spaces: YAML does not allow tabs for indentation"
    )


def test_unclosed_quote_is_reported_where_it_opens() -> None:
    assert only_error('prefix: "/api\nroutes: []\n') == (
        "s.yaml:1:9: error: unclosed quoted string\n"
        '    1 | prefix: "/api\n'
        "      |         ^\n"
        '  hint: add the closing "'
    )
    assert only_error("prefix: '/api\n").splitlines()[-1] == "  hint: add the closing '"


def test_unclosed_bracket_is_reported_where_it_opens() -> None:
    assert only_error("routes: [{path: /a}\n") == (
        "s.yaml:1:9: error: unclosed '['\n"
        "    1 | routes: [{path: /a}\n"
        "      |         ^\n"
        "  hint: add the closing ']'"
    )
    assert str(load("x: {a: 1\n")[2][0]) == "s.yaml:1:4: error: unclosed '{'"


def test_other_syntax_errors() -> None:
    cases = {
        "a: b: c\n": "s.yaml:1:5: error: unexpected ':'",
        "routes:\n  - path: /a\n   on: {}\n": "s.yaml:3:4: error: bad indentation",
        "a: 1\nb\nc: 2\n": "s.yaml:2:1: error: expected ':' after a key",
        "a: 1\n- b\n": "s.yaml:2:1: error: a list item where a key was expected",
        "a: *nope\n": "s.yaml:1:4: error: unknown alias '*nope'",
        "a: &x 1\nb: &x 2\n": "s.yaml:2:4: error: duplicate anchor '&x'",
        "a: @x\n": "s.yaml:1:4: error: a value cannot start with '@'",
        'a: "\\q"\n': "s.yaml:1:6: error: unknown escape '\\q' in a double-quoted string",
        "a: ]\n": "s.yaml:1:4: error: expected a value, found ']'",
        "a: [1 2: 3 }\n": "s.yaml:1:12: error: expected ',' or ']', found '}'",
    }
    for text, expected in cases.items():
        value, _, errors = load(text)
        assert value is None
        assert [str(e) for e in errors] == [expected], text


def test_control_characters_and_binary_garbage(tmp_path: Path) -> None:
    assert only_error("a: 1\nb: \x07\n").splitlines()[0] == (
        "s.yaml:2:4: error: control character U+0007 is not allowed in YAML"
    )
    path = tmp_path / "garbage.yaml"
    path.write_bytes(random.Random(1).randbytes(4096))
    text = path.read_bytes().decode("latin-1")
    value, _, errors = load_yaml(Source(str(path), text))
    assert value is None
    assert len(errors) == 1
    assert errors[0].hint == "scenario files are UTF-8 text; is this a binary file?"
    nul = load("routes: []\x00\n")[2][0]
    assert (nul.line, nul.col, nul.message) == (
        1,
        11,
        "control character U+0000 is not allowed in YAML",
    )


# --- no input makes it crash --------------------------------------------------------------------

_YAML_CHARS = st.sampled_from([*"abc01:-[]{},'\"!&*#|>?%@`\\ \t\n\r.~<=", "on", "yes", "\x00"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_YAML_CHARS, max_size=60).map("".join))
def test_any_yaml_like_text_gives_a_value_or_errors(text: str) -> None:
    source = Source("fuzz.yaml", text)
    value, source_map, errors = load_yaml(source)
    assert all(isinstance(e, ScenarioError) and e.line >= 1 and e.col >= 1 for e in errors)
    if value is None:
        assert errors
    else:
        schema_errors(value, source, source_map)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_gives_a_value_or_errors(text: str) -> None:
    value, _, errors = load_yaml(Source("fuzz.yaml", text))
    assert value is not None or errors

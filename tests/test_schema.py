"""schema: the shipped JSON Schema, and its violations as positioned, readable errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from scenario_engine.errors import ScenarioError
from scenario_engine.expr.syntax import name_regex
from scenario_engine.language.schema import SCHEMA, schema_errors, schema_text
from scenario_engine.language.source import Source, Span
from scenario_engine.language.yaml_frontend import load_yaml

FULL_IR: dict[str, Any] = {
    "prefix": "/api",
    "let": {"users": {"alice-token": {"name": "Alice", "role": "admin"}}},
    "routes": [
        {
            "path": "/ws/game/:gameId",
            "heartbeat": "10s",
            "compression": {"enabled": True, "threshold": "1KB"},
            "maxMessage": "1MB",
            "auth": [
                {"reject": {"code": 4001, "reason": "No token provided", "unless": "query.token"}},
                {"reject": {"code": 4003, "reason": "Banned", "if": "query.token == 'x'"}},
                {"reject": {"status": 401, "reason": "Invalid", "unless": "query.token in users"}},
                {"reject": {"status": 503}},
                {"let": {"name": "user", "value": "${users[query.token]}"}},
                {"accept": {"user": "${user}"}},
            ],
            "on": {
                "connect": [{"join": "lobby"}, {"send": {"type": "joined-lobby"}}],
                "message": [
                    {
                        "type": "create-game",
                        "do": [
                            {"let": {"name": "gameId", "value": "${id('game')}"}},
                            {"join": "${gameId}"},
                            {"send": {"type": "game-created", "gameId": "${gameId}"}},
                        ],
                    },
                    {"where": "msg.room != null", "binary": False, "do": [{"leave": "x"}]},
                    {"binary": True, "do": [{"ping": {}}, {"pong": {"data": "x"}}]},
                    {
                        "do": [
                            {"if": "msg.count > 3", "then": [{"close": {}}]},
                            {
                                "if": "msg.ok",
                                "then": [{"log": "ok ${msg.count}"}],
                                "else": [{"close": {"code": 4000, "reason": "bye"}}],
                            },
                            {"broadcast": {"data": 1, "to": ["a", "${msg.rooms}"]}},
                            {"broadcast": {"data": None, "includeSelf": False}},
                            {"ping": {"data": [1, 2]}},
                            {"close": {"code": 1000}},
                        ]
                    },
                ],
                "close": [{"log": "bye"}],
                "error": [],
            },
        },
        {"path": "/"},
    ],
}


def yaml_errors(text: str, name: str = "s.yaml") -> list[ScenarioError]:
    source = Source(name, text)
    value, source_map, errors = load_yaml(source)
    assert errors == [], [e.format_text() for e in errors]
    return schema_errors(value, source, source_map)


def only_error(text: str) -> str:
    errors = yaml_errors(text)
    assert len(errors) == 1, [e.format_text() for e in errors]
    return errors[0].format_text()


def route(body: str) -> str:
    """A scenario with one route; ``body`` is the route's text, indented by four spaces."""
    return "routes:\n  - path: /ws\n" + body


# --- the schema itself --------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["$id"] == "https://scenario-engine.dev/schema/scenario.schema.json"
    assert SCHEMA["title"] and SCHEMA["description"]


def _subschemas(schema: Any, where: str = "#") -> Iterator[tuple[str, Any]]:
    """Every (location, schema) below ``schema`` that is a property or a $defs entry."""
    if not isinstance(schema, dict):
        return
    for keyword in ("properties", "$defs"):
        for name, sub in schema.get(keyword, {}).items():
            yield f"{where}/{keyword}/{name}", sub
    for keyword, sub in schema.items():
        if keyword in ("properties", "$defs"):
            for name, inner in sub.items():
                yield from _subschemas(inner, f"{where}/{keyword}/{name}")
        elif keyword in ("items", "additionalProperties", "propertyNames", "then", "else", "not"):
            yield from _subschemas(sub, f"{where}/{keyword}")
        elif keyword in ("anyOf", "oneOf", "allOf"):
            for i, inner in enumerate(sub):
                yield from _subschemas(inner, f"{where}/{keyword}/{i}")


def test_every_property_and_definition_has_a_title_and_a_description() -> None:
    found = list(_subschemas(SCHEMA))
    assert len(found) > 50
    for where, sub in found:
        assert isinstance(sub, dict), where
        assert isinstance(sub.get("title"), str) and sub["title"], where
        assert isinstance(sub.get("description"), str) and sub["description"], where


def test_fixed_key_objects_are_closed() -> None:
    for where, sub in _subschemas(SCHEMA):
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, where


_DRAFT_7_KEYWORDS = {
    "$schema", "$id", "$ref", "title", "description", "examples", "default", "type", "enum",
    "const", "pattern", "minLength", "minimum", "maximum", "minProperties", "maxProperties",
    "minItems",
    "required", "properties", "additionalProperties", "propertyNames", "items", "anyOf", "allOf",
    "not", "if", "then", "else",
}  # fmt: skip
# '$defs' is only a place that '#/$defs/…' pointers resolve into; the two messages are VS Code's.
_NOT_DRAFT_7 = {"$defs", "dependentRequired", "errorMessage", "patternErrorMessage"}


def _keywords(schema: Any, found: set[str]) -> set[str]:
    if isinstance(schema, dict):
        for keyword, sub in schema.items():
            found.add(keyword)
            if keyword in ("properties", "$defs"):
                for inner in sub.values():
                    _keywords(inner, found)
            elif keyword not in (
                "examples",
                "default",
                "enum",
                "const",
                "required",
                "dependentRequired",
            ):  # these hold data and key names
                _keywords(sub, found)
    elif isinstance(schema, list):
        for inner in schema:
            _keywords(inner, found)
    return found


def test_editors_with_an_older_draft_lose_only_dependent_required() -> None:
    """docs/editors.md promises this: most editors' YAML servers implement draft-07."""
    assert _keywords(SCHEMA, set()) <= _DRAFT_7_KEYWORDS | _NOT_DRAFT_7
    for where, sub in _subschemas(SCHEMA):
        if "$ref" in sub:
            # Draft-07 ignores the siblings of $ref: they may only be annotations.
            assert set(sub) <= {"$ref", "title", "description", "examples", "default"}, where


def test_schema_is_shipped_as_package_data_and_printed_as_is() -> None:
    shipped = resources.files("scenario_engine.language") / "scenario.schema.json"
    assert json.loads(shipped.read_text(encoding="utf-8")) == SCHEMA
    text = schema_text()
    assert text.endswith("}\n")
    assert json.loads(text) == SCHEMA


def test_a_scenario_using_every_construct_is_valid() -> None:
    assert list(Draft202012Validator(SCHEMA).iter_errors(FULL_IR)) == []
    assert schema_errors(FULL_IR, Source("full.json", ""), {}) == []


def test_chat_example_file_validates_in_both_directions(tmp_path: Path) -> None:
    path = tmp_path / "chat.scenario.yaml"
    path.write_text(
        "prefix: /api\nroutes:\n  - path: /ws/chat\n    on:\n      connect:\n"
        '        - send: { type: connected, id: "${conn.id}" }\n',
        encoding="utf-8",
    )
    source = Source(str(path), path.read_text(encoding="utf-8"))
    value, source_map, errors = load_yaml(source)
    assert errors == []
    assert schema_errors(value, source, source_map) == []


# --- messages -----------------------------------------------------------------------------------


def test_unknown_key_is_reported_at_the_key_with_a_suggestion() -> None:
    assert only_error(route("    heartbeet: 10s\n")) == (
        "s.yaml:3:5: error: unknown key 'heartbeet' in route\n"
        "    3 |     heartbeet: 10s\n"
        "      |     ^^^^^^^^^\n"
        "  hint: did you mean 'heartbeat'?"
    )


def test_unknown_key_without_a_close_match_lists_the_allowed_keys() -> None:
    assert only_error(route("    on:\n      message:\n        - zzz: 1\n          do: []\n")) == (
        "s.yaml:5:11: error: unknown key 'zzz' in message handler\n"
        "    5 |         - zzz: 1\n"
        "      |           ^^^\n"
        "  hint: allowed keys: type, where, binary, do"
    )


def test_missing_required_key() -> None:
    assert only_error("routes:\n  - heartbeat: 10s\n") == (
        "s.yaml:2:5: error: missing required key 'path' in route\n"
        "    2 |   - heartbeat: 10s\n"
        "      |     ^\n"
        "  hint: for example 'path: /ws/chat'"
    )
    assert str(yaml_errors("prefix: /api\n")[0]) == (
        "s.yaml:1:1: error: missing required key 'routes' or 'tests' in scenario"
    )


def test_size_and_duration() -> None:
    assert only_error(route("    maxMessage: 10x\n")) == (
        "s.yaml:3:17: error: 'maxMessage' must be a size such as '64KB' or '1MB', not '10x'\n"
        "    3 |     maxMessage: 10x\n"
        "      |                 ^^^"
    )
    assert only_error(route("    heartbeat: 10\n")) == (
        "s.yaml:3:16: error: 'heartbeat' must be a duration such as '30s' or '500ms', not 10\n"
        "    3 |     heartbeat: 10\n"
        "      |                ^^\n"
        "  hint: add a unit, e.g. '10s' or '10ms'"
    )


def test_unknown_action() -> None:
    assert only_error(route("    on:\n      connect:\n        - brodcast: {data: 1}\n")) == (
        "s.yaml:5:11: error: unknown action 'brodcast'\n"
        "    5 |         - brodcast: {data: 1}\n"
        "      |           ^^^^^^^^\n"
        "  hint: did you mean 'broadcast'?"
    )
    assert only_error(route("    on:\n      connect:\n        - shout: 1\n")).endswith(
        "  hint: actions are: send, broadcast, join, leave, close, ping, pong, let, log, every, "
        "after, cancel, wait, set, unset, drop, if"
    )


def test_unknown_auth_step() -> None:
    assert only_error(route("    auth:\n      - acept: {}\n")).splitlines()[::3] == [
        "s.yaml:4:9: error: unknown auth step 'acept'",
        "  hint: did you mean 'accept'?",
    ]


def test_expected_a_list_of_actions() -> None:
    assert only_error(route("    on:\n      connect: hello\n")) == (
        "s.yaml:4:16: error: expected a list of actions, got a string\n"
        "    4 |       connect: hello\n"
        "      |                ^^^^^\n"
        "  hint: write a list of actions, each item starting with '- '"
    )
    # An empty value has no text of its own: the error points at its key.
    assert only_error(route("    on:\n      close:\n")) == (
        "s.yaml:4:7: error: expected a list of actions, got null\n"
        "    4 |       close:\n"
        "      |       ^^^^^\n"
        "  hint: 'close' has no value"
    )


def test_close_codes() -> None:
    assert only_error(route("    on:\n      close:\n        - close: {code: 1006}\n")) == (
        "s.yaml:5:25: error: close code 1006 is not allowed here: use 1000\u20131003, "
        "1007\u20131014 or 3000\u20134999 (1004\u20131006 and 1015 never go on the wire)\n"
        "    5 |         - close: {code: 1006}\n"
        "      |                         ^^^^"
    )
    ok = (
        "    on:\n      close:\n        - close: {code: 1000}\n        - close: {code: 3000}\n"
        "        - close: {code: 1011}\n        - close: {code: 1003}\n"
    )
    assert yaml_errors(route(ok)) == []
    assert str(yaml_errors(route("    auth:\n      - reject: {code: 1000}\n"))[0]) == (
        "s.yaml:4:24: error: close code 1000 is not allowed here: use 4000\u20134999"
    )
    assert str(yaml_errors(route("    auth:\n      - reject: {status: 200}\n"))[0]) == (
        "s.yaml:4:26: error: HTTP status 200 is not allowed here: use 400\u2013599"
    )


def test_reject_needs_exactly_one_of_code_and_status() -> None:
    assert [str(e) for e in yaml_errors(route("    auth:\n      - reject: {reason: x}\n"))] == [
        "s.yaml:4:9: error: missing required key 'code' or 'status' in reject"
    ]
    both = "    auth:\n      - reject: {code: 4001, status: 401, if: a, unless: b}\n"
    assert [(e.col, e.message, e.hint) for e in yaml_errors(route(both))] == [
        (30, "'code' and 'status' cannot be used together in reject", "keep one of them"),
        (50, "'if' and 'unless' cannot be used together in reject", "keep one of them"),
    ]


def test_actions_have_one_key() -> None:
    assert only_error(route("    on:\n      connect:\n        - send: 1\n          log: 2\n")) == (
        "s.yaml:6:11: error: an action has one key, got 2: 'send', 'log'\n"
        "    6 |           log: 2\n"
        "      |           ^^^\n"
        "  hint: write each action as its own list item"
    )
    assert str(yaml_errors(route("    on:\n      connect:\n        - {}\n"))[0]) == (
        "s.yaml:5:11: error: empty action"
    )


def test_if_actions() -> None:
    lonely_then = route("    on:\n      connect:\n        - then: []\n")
    assert [str(e) for e in yaml_errors(lonely_then)] == [
        "s.yaml:5:11: error: 'then' without 'if' in action"
    ]
    mixed = route(
        "    on:\n      connect:\n        - if: x\n          then: []\n          send: 1\n"
    )
    assert [e.format_text() for e in yaml_errors(mixed)] == [
        "s.yaml:7:11: error: 'send' cannot share an action with 'if'\n"
        "    7 |           send: 1\n"
        "      |           ^^^^\n"
        "  hint: move 'send' into 'then' or 'else', or into a list item of its own"
    ]
    no_then = route("    on:\n      connect:\n        - if: x\n")
    assert [str(e) for e in yaml_errors(no_then)] == [
        "s.yaml:5:11: error: missing required key 'then' in if action"
    ]


def test_broadcast_hints() -> None:
    errors = yaml_errors(
        route("    on:\n      connect:\n        - broadcast: {data: 1, to: chat}\n")
    )
    assert [e.format_text() for e in errors] == [
        "s.yaml:5:36: error: expected a list, got a string\n"
        "    5 |         - broadcast: {data: 1, to: chat}\n"
        "      |                                    ^^^^\n"
        "  hint: write a list: 'to: [chat]'"
    ]
    errors = yaml_errors(route("    on:\n      connect:\n        - broadcast: {type: x}\n"))
    assert [(e.message, e.hint) for e in errors] == [
        (
            "missing required key 'data' in broadcast",
            "put the message under 'data': 'broadcast: {data: {…}, to: [room]}'",
        ),
        ("unknown key 'type' in broadcast", "allowed keys: data, to, includeSelf"),
    ]


def test_paths_prefix_and_names() -> None:
    errors = yaml_errors("prefix: api/\nlet:\n  my-var: 1\nroutes:\n  - path: ws/chat\n")
    assert [e.format_text() for e in errors] == [
        "s.yaml:1:9: error: 'prefix' must be a path such as '/api' (starting with '/', "
        "no trailing '/'), not 'api/'\n"
        "    1 | prefix: api/\n"
        "      |         ^^^^\n"
        "  hint: did you mean '/api'?",
        "s.yaml:3:3: error: 'my-var' is not a valid name\n"
        "    3 |   my-var: 1\n"
        "      |   ^^^^^^\n"
        "  hint: use letters, digits and '_', not starting with a digit",
        "s.yaml:5:11: error: 'path' must be a path starting with '/', such as '/ws/chat', "
        "not 'ws/chat'\n"
        "    5 |   - path: ws/chat\n"
        "      |           ^^^^^^^\n"
        "  hint: did you mean '/ws/chat'?",
    ]
    assert yaml_errors("prefix: ''\nroutes: []\n") == []


def test_type_hints_for_common_slips() -> None:
    cases = {
        "    compression: off\n": "write 'compression: {enabled: false}'",
        "    on:\n      connect:\n        - ping\n": "write 'ping: {}'",
        "    on:\n      connect:\n        - close: 4000\n": "write 'close: {code: 4000}'",
        "    compression: {enabled: no}\n": "write false: 'no' is text, not a boolean",
        "    on:\n      connect:\n        - broadcast: hi\n": (
            "put the message under 'data': 'broadcast: {data: …}'"
        ),
    }
    for body, hint in cases.items():
        errors = yaml_errors(route(body))
        assert [e.hint for e in errors] == [hint], body


def test_every_error_is_reported_in_file_order() -> None:
    text = route(
        "    heartbeet: 10s\n"
        "    maxMessage: 10x\n"
        "    on:\n"
        "      connect:\n"
        "        - brodcast: {data: 1}\n"
        "      message:\n"
        "        - type: join\n"
    )
    assert [(e.line, e.message) for e in yaml_errors(text)] == [
        (3, "unknown key 'heartbeet' in route"),
        (4, "'maxMessage' must be a size such as '64KB' or '1MB', not '10x'"),
        (7, "unknown action 'brodcast'"),
        (9, "missing required key 'do' in message handler"),
    ]


# --- positions without YAML (the .mock front end's source maps) ---------------------------------


def test_position_falls_back_from_key_to_value_to_ancestor() -> None:
    source = Source("chat.mock", "route /ws {\n  heartbeet 10s\n}\n")
    ir = {"routes": [{"path": "/ws", "heartbeet": "10s"}]}
    value_span = Span(2, 13, 2, 16)
    key_span = Span(2, 3, 2, 12)
    route_span = Span(1, 1, 3, 2)
    with_key = {"/routes/0": route_span, "/routes/0/heartbeet": value_span}
    with_key["/routes/0/heartbeet#key"] = key_span
    assert [(e.line, e.col) for e in schema_errors(ir, source, with_key)] == [(2, 3)]
    without_key = {"/routes/0": route_span, "/routes/0/heartbeet": value_span}
    assert [(e.line, e.col) for e in schema_errors(ir, source, without_key)] == [(2, 13)]
    assert [(e.line, e.col) for e in schema_errors(ir, source, {"/routes/0": route_span})] == [
        (1, 1)
    ]
    assert [(e.line, e.col) for e in schema_errors(ir, source, {})] == [(1, 1)]


def test_pointers_escape_keys() -> None:
    ir = {"let": {"a/b~c": 1}, "routes": []}
    spans = {"/let/a~1b~0c#key": Span(3, 7, 3, 12)}
    errors = schema_errors(ir, Source("x.mock", ""), spans)
    assert [(e.line, e.col, e.message) for e in errors] == [(3, 7, "'a/b~c' is not a valid name")]


# --- no IR makes it crash ------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "routes",
                    "path",
                    "on",
                    "connect",
                    "message",
                    "do",
                    "send",
                    "if",
                    "then",
                    "auth",
                    "reject",
                    "code",
                    "status",
                    "broadcast",
                    "to",
                    "let",
                    "name",
                    "value",
                    "x",
                    "a/b",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_any_json_value_gives_positioned_errors(ir: object) -> None:
    errors = schema_errors(ir, Source("fuzz.json", "{}"), {"": Span(1, 1, 1, 3)})
    assert all(e.line == 1 and e.message and not e.message.endswith(".") for e in errors)
    valid = Draft202012Validator(SCHEMA).is_valid(ir)
    assert valid == (errors == [])


def test_an_empty_origins_list_says_what_it_needs() -> None:
    assert only_error(route("    origins: []\n")) == (
        "s.yaml:3:14: error: 'origins' must list at least one origin\n"
        "    3 |     origins: []\n"
        "      |              ^^"
    )


def test_an_expected_close_reason_needs_its_code() -> None:
    text = (
        "routes:\n  - path: /ws\ntests:\n  - name: t\n    steps:\n"
        "      - {connect: a, path: /ws}\n      - client: a\n"
        "        expectClose: {reason: bye}\n"
    )
    assert only_error(text) == (
        "s.yaml:8:23: error: 'reason' without 'code' in expect close\n"
        "    8 |         expectClose: {reason: bye}\n"
        "      |                       ^^^^^^\n"
        "  hint: 'reason' goes with 'code', e.g. '{code: 4001, reason: No token provided}'"
    )


def test_the_schemas_name_is_the_grammars() -> None:
    assert SCHEMA["$defs"]["name"]["pattern"] == f"^{name_regex().pattern}$"


def test_the_validator_says_what_the_shipped_schema_says_about_test_steps() -> None:
    """schema.py rewrites the steps' if/then key dispatch for speed: same verdicts."""
    from scenario_engine.language.schema import _VALIDATOR

    shipped = Draft202012Validator(SCHEMA)
    steps: list[Any] = [
        {"connect": "a", "path": "/x"},
        {"connect": "a"},
        {"connect": "a", "path": "/x", "zz": 1},
        {"client": "a"},
        {"client": "a", "send": 1},
        {"client": "a", "send": 1, "expect": 1},
        {"client": "a", "expectClose": {"reason": "r"}},
        {"wait": "1s", "client": "a"},
        {"let": {"name": "x", "value": 1}},
        {"send": 1},
        {},
        [],
        "step",
    ]
    for step in steps:
        document = {"tests": [{"name": "t", "steps": [step]}]}
        mine = sorted(e.message for e in _VALIDATOR.iter_errors(document))
        theirs = sorted(e.message for e in shipped.iter_errors(document))
        assert bool(mine) == bool(theirs), (step, mine, theirs)
    assert (
        "dependentSchemas"
        in _VALIDATOR.schema["properties"]["tests"]["items"]["properties"]["steps"]["items"]
    )


def test_an_item_checked_again_is_reported_where_it_now_is() -> None:
    # Routes and tests are validated one by one and their problems remembered by their text:
    # the same faulty route, met again at another index and line, is reported there.
    bad = "  - path: /bad\n    heartbeat: soon\n"
    good = "  - path: /good\n"
    first = yaml_errors("routes:\n" + bad)
    moved = yaml_errors("routes:\n" + good + good.replace("good", "fine") + bad)
    assert [(e.line, e.message) for e in first] == [(3, first[0].message)]
    assert [(e.line, e.message) for e in moved] == [(5, first[0].message)]

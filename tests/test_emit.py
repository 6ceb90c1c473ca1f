"""IR → `.mock` / YAML emitters: everything they write reads back as the same IR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import ir_documents, open_parts
from support import SCENARIOS

from scenario_engine.errors import EmitError
from scenario_engine.language.emit import emit_mock, emit_yaml
from scenario_engine.language.mock_frontend import parse_mock
from scenario_engine.language.source import Source

MOCK_FILES = sorted(SCENARIOS.glob("*.mock"))

# Every construct of the language (the sample the brief names, plus the corners).
SAMPLES = {
    "all-constructs": """\
prefix /api
let users = { "alice-token": { name: "Alice" } }
route /ws/chat/:id {
  heartbeat 10s
  compression threshold 1KB
  max message 1MB
  auth {
    reject 4001 "No token provided" unless query.token
    reject http 401 "nope" if !(query.token in users)
    accept { user: users[query.token] }
  }
  on connect { send { type: "connected", id: conn.id } }
  on message type "join" { join "chat" broadcast { type: "user-joined" } to "chat" include self }
  on message where msg.a > 1 && msg.type == 'x' { close 4000 "bye" }
  on message binary { send msg }
  on close { if x ?? 1 { log "a" } else if y { ping } else { pong "x" } }
}
""",
    "settings-and-corners": """\
let a = 1
let b = [a, "x", null, true, false, 2.5, 1e3]
route "/odd path" {
  heartbeat 0.5s
  compression off
  auth {}
  on error {}
}
route /on { compression on max message 64KB }
route /empty {}
route /ws/a/:b/* {
  auth { reject 4000 reject http 500 unless ok let user = users[query.token] accept user }
  on message binary type "t\\"q" where msg.x {
    close
    close 4001
    close 1000 "why ${msg.a}"
    ping
    pong
    ping msg
    let n = len(msg.items) + 1
    broadcast msg to [r1, "r2"]
    broadcast msg to []
    broadcast msg to [[a, b]]
    leave "room"
    if a { } else { }
    if b { if c { if d { log "deep" } } }
  }
  on connect {
    send "${1}"
    send '${msg.a == "x"}'
    send "${ msg.a }"
    send "cost: \\${price} and $5 and ${msg.price}"
    send { if: 1, on: 2, "a-b": 3, "": 4, "ключ": 5, "\\u0000": 6 }
    send "tab\\tnew\\nline \\\\ \\" é 😀"
    send "invisible: \\u2028 \\u00a0 \\u007f \\u0000"
    ping "${send}"
    close 4000 "${unless.x}"
  }
}
""",
}


def _strict(value: Any) -> str:
    """JSON with types kept apart (True == 1 in Python, not in JSON) and key order ignored."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _parse(text: str) -> dict[str, Any]:
    ir, _, errors = parse_mock(Source("emitted.mock", text))
    assert not errors, "\n".join(str(e) for e in errors) + "\n--- text ---\n" + text
    assert ir is not None
    return ir


def _assert_round_trips(ir: dict[str, Any]) -> None:
    text = emit_mock(ir)
    back = _parse(text)
    assert back == ir, text
    assert _strict(back) == _strict(ir), text
    assert emit_mock(back) == text  # canonical: a second pass changes nothing
    loaded = yaml.safe_load(emit_yaml(ir))
    assert loaded == ir
    assert _strict(loaded) == _strict(ir)


# ---- round trips of real scenarios --------------------------------------------------------


@pytest.mark.parametrize("path", MOCK_FILES, ids=[p.name for p in MOCK_FILES])
def test_scenario_files_round_trip(path: Path) -> None:
    _assert_round_trips(_parse(path.read_text("utf-8")))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_round_trip(name: str) -> None:
    _assert_round_trips(_parse(SAMPLES[name]))


def test_yaml_scenarios_round_trip_through_mock() -> None:
    yaml_loader = pytest.importorskip("scenario_engine.language.yaml_frontend")
    files = sorted(SCENARIOS.glob("*.y*ml"))
    for path in files:
        ir, _, errors = yaml_loader.load_yaml(Source(path.name, path.read_text("utf-8")))
        assert not errors and isinstance(ir, dict)
        _assert_round_trips(ir)


# ---- formatting ---------------------------------------------------------------------------


def test_canonical_layout() -> None:
    text = emit_mock(_parse(SAMPLES["all-constructs"]))
    assert (
        text
        == """\
prefix /api

let users = { "alice-token": { name: "Alice" } }

route /ws/chat/:id {
  heartbeat 10s
  compression threshold 1KB
  max message 1MB

  auth {
    reject 4001 "No token provided" unless query.token
    reject http 401 "nope" if !(query.token in users)
    accept { user: users[query.token] }
  }

  on connect {
    send { type: "connected", id: conn.id }
  }

  on message type "join" {
    join "chat"
    broadcast { type: "user-joined" } to "chat" include self
  }

  on message where msg.a > 1 && msg.type == 'x' {
    close 4000 "bye"
  }

  on message binary {
    send msg
  }

  on close {
    if x ?? 1 {
      log "a"
    } else if y {
      ping
    } else {
      pong "x"
    }
  }
}
"""
    )


def test_long_objects_are_broken_across_lines() -> None:
    ir = {
        "routes": [
            {
                "path": "/x",
                "on": {
                    "connect": [
                        {
                            "send": {
                                "type": "chat-message",
                                "username": "${msg.username}",
                                "message": "${msg.message}",
                                "meta": {
                                    "timestamp": "${now()}",
                                    "room": "${msg.room}",
                                    "tags": ["a", "b"],
                                },
                            }
                        }
                    ]
                },
            }
        ]
    }
    text = emit_mock(ir)
    assert all(len(line) <= 90 for line in text.splitlines()), text
    assert '    send {\n      type: "chat-message",\n' in text
    assert _parse(text) == ir


def test_deep_templates_are_written_in_linear_time() -> None:
    # Every level too long for one line: deciding where to break must not re-render subtrees.
    value: Any = "${msg.leaf}"
    for depth in range(80):
        value = {f"key_{depth}_{'x' * 20}": value, "other": [depth, "${conn.id}"]}
    ir = {"routes": [{"path": "/x", "on": {"connect": [{"send": value}]}}]}
    text = emit_mock(ir)
    assert _parse(text) == ir


@pytest.mark.parametrize(
    ("template", "written"),
    [
        ("${conn.id}", "conn.id"),
        ("${(a)}", "(a)"),  # parentheses in the IR are kept, not added
        ("${5}", '"${5}"'),  # bare, 5 would read back as the number
        ("${[1, 2]}", '"${[1, 2]}"'),
        ("${ msg.a }", '"${ msg.a }"'),  # blanks are part of the IR text
        ('${msg.a == "x"}', 'msg.a == "x"'),
        ('${"x"}', "'${\"x\"}'"),  # a " in the expression: the single-quoted literal
        ('a ${msg.a == "x"}', "'a ${msg.a == \"x\"}'"),
        ("Hello ${msg.name}!", '"Hello ${msg.name}!"'),
        ("$${literal} $5", '"\\${literal} $5"'),
        ("a \"q\" ${b == 'c'}", '"a \\"q\\" ${b == \'c\'}"'),
        ('x ${a == "it\'s"}', '"x " + (a == "it\'s")'),  # no literal can hold both quotes
        ("${a}${b}", '"${a}${b}"'),
    ],
)
def test_template_strings(template: str, written: str) -> None:
    ir = {"routes": [{"path": "/x", "on": {"connect": [{"send": template}]}}]}
    assert f"    send {written}\n" in emit_mock(ir)


@pytest.mark.parametrize("template", ["${send}", "${close.x}", "${if}", "${unless}"])
def test_keywords_in_optional_slots_are_quoted(template: str) -> None:
    # `ping send` would be a ping followed by a send.
    ir = {
        "routes": [
            {
                "path": "/x",
                "on": {
                    "connect": [
                        {"ping": {"data": template}},
                        {"close": {"code": 4000, "reason": template}},
                    ]
                },
                "auth": [{"reject": {"code": 4001, "reason": template}}],
            }
        ]
    }
    text = emit_mock(ir)
    assert f'ping "{template}"' in text
    assert _parse(text) == ir


def test_values_and_blocks_named_in_expand_are_written_open() -> None:
    text = (
        "let short = { a: [1, 2], b: {} }\n\n"
        "route /a {\n  on connect {}\n\n  on message {\n"
        "    if msg.a {\n      send 1\n    } else if msg.b {\n      send 2\n    }\n"
        '    broadcast 1 to "room"\n  }\n}\n'
    )
    ir = _parse(text)
    assert emit_mock(ir) == text
    handler = "/routes/0/on/message/0/do"
    expand = {
        "/let/short",
        "/let/short/a",
        "/let/short/b",
        "/routes/0/on/connect",
        f"{handler}/0/else",
        f"{handler}/1/broadcast/to",
    }
    opened = emit_mock(ir, expand)
    assert opened == (
        "let short = {\n  a: [\n    1,\n    2,\n  ],\n  b: {\n  },\n}\n\n"
        "route /a {\n  on connect {\n  }\n\n  on message {\n"
        "    if msg.a {\n      send 1\n    } else {\n      if msg.b {\n        send 2\n"
        "      }\n    }\n"
        '    broadcast 1 to [\n      "room",\n    ]\n  }\n}\n'
    )
    assert _parse(opened) == ir


def test_single_room_that_is_a_list_keeps_its_brackets() -> None:
    ir = {
        "routes": [
            {
                "path": "/x",
                "on": {
                    "connect": [
                        {"broadcast": {"data": 1, "to": [["a", "b"]]}},
                        {"broadcast": {"data": 1, "to": ["${rooms}"]}},
                    ]
                },
            }
        ]
    }
    text = emit_mock(ir)
    assert 'to [["a", "b"]]' in text and "to rooms\n" in text
    assert _parse(text) == ir


def test_unspellable_forms_keep_their_meaning() -> None:
    ir = {
        "routes": [
            {
                "path": "/x",
                "compression": {"enabled": True, "threshold": "2KB"},
                "on": {
                    "connect": [
                        {"close": {"reason": "bye"}},
                        {"send": -5},
                        {"send": "a\n${b &&\nc}"},
                    ],
                    "message": [{"binary": False, "do": []}],
                },
            }
        ]
    }
    text = emit_mock(ir)
    assert "compression threshold 2KB" in text
    assert 'close 1000 "bye"' in text
    assert "send -5" in text
    assert 'send "a\\n" + (b &&\nc)' in text
    back = _parse(text)
    assert back["routes"][0]["on"]["connect"][0] == {"close": {"code": 1000, "reason": "bye"}}
    assert back["routes"][0]["on"]["connect"][1] == {"send": -5}


def test_negative_numbers_are_numbers_and_a_negated_expression_stays_one() -> None:
    ir = {
        "routes": [
            {
                "path": "/x",
                "on": {"connect": [{"send": -5}, {"send": "${-5}"}, {"send": "${-msg.n}"}]},
            }
        ]
    }
    assert _parse(emit_mock(ir)) == ir


def test_a_negated_boolean_is_an_expression_written_bare() -> None:
    # Only a negated number literal is a JSON number (parse and emit share that rule).
    ir = {"routes": [{"path": "/x", "on": {"connect": [{"send": "${-true}"}]}}]}
    text = emit_mock(ir)
    assert "send -true" in text
    assert _parse(text) == ir


def _test_ir(*steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "routes": [{"path": "/x"}],
        "tests": [{"name": "t", "steps": [{"connect": "a", "path": "/x"}, *steps]}],
    }


def test_a_test_close_reason_without_a_code_is_written_with_1000() -> None:
    text = emit_mock(_test_ir({"client": "a", "close": {"reason": "bye"}}))
    assert 'a close 1000 "bye"' in text
    assert _parse(text)["tests"][0]["steps"][1] == {
        "client": "a",
        "close": {"code": 1000, "reason": "bye"},
    }


@pytest.mark.parametrize(
    ("step", "pointer"),
    [
        # An expected reason is checked against the code too: 1000 would change the test.
        ({"client": "a", "expectClose": {"reason": "bye"}}, "/tests/0/steps/1/expectClose"),
        # A test's close reason is a string literal, and none can hold both quotes in a ${…}.
        (
            {"client": "a", "close": {"code": 4000, "reason": "${\"'\" + '\"'}"}},
            "/tests/0/steps/1/close/reason",
        ),
        # Malformed templates are EmitErrors, not a StringSyntaxError from inside.
        (
            {"client": "a", "close": {"code": 4000, "reason": "${unclosed"}},
            "/tests/0/steps/1/close/reason",
        ),
        ({"connect": "b", "path": "/x?${unclosed"}, "/tests/0/steps/1/path"),
    ],
)
def test_test_steps_without_a_mock_spelling_are_refused_at_their_pointer(
    step: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(EmitError) as info:
        emit_mock(_test_ir(step))
    assert info.value.pointer == pointer


def test_a_dollar_before_an_interpolation_keeps_both() -> None:
    ir = {"routes": [{"path": "/x", "on": {"connect": [{"send": 'US${"$"}${conn.id}'}]}}]}
    assert _parse(emit_mock(ir)) == ir


@pytest.mark.parametrize(
    "ir",
    [
        {"routes": [{"path": "/x", "heartbeat": "ten seconds"}]},
        {"routes": [{"path": "/x", "on": {"connect": [{"shout": 1}]}}]},
        {"routes": [{"path": "/x", "on": {"connect": [{"if": "a b", "then": []}]}}]},
        {"routes": [{"path": "/x", "on": {"connect": [{"send": "${unclosed"}]}}]},
        {"routes": [{"path": "/x", "on": {"connect": [{"send": float("nan")}]}}]},
        {"routes": [{"path": "/x", "on": {"restart": []}}]},
        {"routes": [{"path": "/x", "auth": [{"reject": {"reason": "no code"}}]}]},
        {"let": {"not a name": 1}, "routes": []},
        {"routes": [{"path": "/x", "heartbeet": "10s"}]},  # unknown keys are not dropped silently
        {"routes": [{"path": "/x", "on": {"connect": [{"close": {"code": 4000, "why": "x"}}]}}]},
    ],
)
def test_malformed_ir_is_refused(ir: dict[str, Any]) -> None:
    with pytest.raises(EmitError):
        emit_mock(ir)


# ---- YAML ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "on",
        "off",
        "yes",
        "no",
        "y",
        "n",
        "Y",
        "true",
        "null",
        "~",
        "",
        "1",
        "1e3",
        "0o17",
        "0x1F",
        ".5",
        "1:30",
        "2024-01-01",
        "${msg}",
        "{x",
        "[x",
        "*x",
        "&x",
        "!x",
        "%x",
        "@x",
        "`x`",
        "<<",
        "=",
        "- x",
        "a: b",
        "a #b",
        " lead",
        "trail ",
        "multi\nline\n",
        "x\n\n",
        " \n x",
        "tab\tx",
        "\u2028",
        "\x85",
        "é ✓ 😀",
    ],
)
def test_yaml_strings_load_back_as_strings(value: str) -> None:
    ir = {"let": {value or "k": value, "on": [value]}, "routes": []}
    text = emit_yaml(ir)
    assert yaml.safe_load(text) == ir, text


def test_yaml_quotes_what_other_readers_would_misread() -> None:
    text = emit_yaml(
        {"let": {k: k for k in ("y", "n", "1e3", "0o17", "${msg}", "on")}, "routes": []}
    )
    for word in ("y", "n", "1e3", "0o17", "${msg}", "on"):
        assert f"  '{word}': '{word}'\n" in text, text


def test_yaml_layout() -> None:
    text = emit_yaml(_parse(SAMPLES["all-constructs"]))
    assert text.startswith(
        "prefix: /api\nlet:\n  users:\n    alice-token:\n      name: Alice\n"
        "routes:\n  - path: /ws/chat/:id\n    heartbeat: 10s\n"
    )
    assert "    'on':\n      connect:\n        - send:\n            type: connected\n" in text


def test_yaml_has_no_aliases() -> None:
    shared = {"type": "x"}
    ir = {"routes": [{"path": "/x", "on": {"connect": [{"send": shared}, {"send": shared}]}}]}
    text = emit_yaml(ir)
    assert "&" not in text and "*" not in text
    assert yaml.safe_load(text) == ir


def test_yaml_loads_with_the_scenario_loader() -> None:
    yaml_loader = pytest.importorskip("scenario_engine.language.yaml_frontend")
    for text in SAMPLES.values():
        ir = _parse(text)
        loaded, _, errors = yaml_loader.load_yaml(Source("emitted.yaml", emit_yaml(ir)))
        assert not errors
        assert _strict(loaded) == _strict(ir)


# ---- properties ---------------------------------------------------------------------------

_PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.slow
@_PROPERTY
@given(ir_documents())
def test_mock_round_trip_property(ir: dict[str, Any]) -> None:
    text = emit_mock(ir)
    back = _parse(text)
    assert back == ir, text
    assert _strict(back) == _strict(ir), text
    assert emit_mock(back) == text


@pytest.mark.slow
@settings(_PROPERTY, max_examples=150)
@given(st.data())
def test_values_and_blocks_written_open_round_trip(data: st.DataObject) -> None:
    ir = data.draw(ir_documents())
    expand = data.draw(open_parts(ir))
    text = emit_mock(ir, expand)
    assert _parse(text) == ir, text


@pytest.mark.slow
@_PROPERTY
@given(ir_documents())
def test_yaml_round_trip_property(ir: dict[str, Any]) -> None:
    text = emit_yaml(ir)
    loaded = yaml.safe_load(text)
    assert loaded == ir, text
    assert _strict(loaded) == _strict(ir), text

"""The .mock front end: IR shape, source map, positions inside expressions, recovery."""

from __future__ import annotations

from lark import Lark

from scenario_engine.expr.syntax import grammar_text, parser
from scenario_engine.language.mock_frontend import parse_mock
from scenario_engine.language.source import Source


def parse(text: str) -> tuple[object, dict[str, object], list[str]]:
    ir, source_map, errors = parse_mock(Source("t.mock", text))
    return ir, dict(source_map), [e.format_text() for e in errors]


def test_grammar_builds_strictly_without_the_cache() -> None:
    # strict=True: no shift/reduce conflict and no colliding terminals.
    fresh = Lark(grammar_text(), parser="lalr", strict=True, start=["start", "expr"])
    assert fresh.parse("a + b * c", start="expr") is not None
    assert parser(cache=False) is not parser()


def test_expressions_become_templates_and_literals_stay_literal() -> None:
    ir, _, errors = parse(
        "route /ws { on connect { send { id: conn.id, n: 1, "
        's: "x ${a} \\${b}", l: [true, null], e: 1 + 2 } } }'
    )
    assert errors == []
    assert ir == {
        "routes": [
            {
                "path": "/ws",
                "on": {
                    "connect": [
                        {
                            "send": {
                                "id": "${conn.id}",
                                "n": 1,
                                "s": "x ${a} $${b}",
                                "l": [True, None],
                                "e": "${1 + 2}",
                            }
                        }
                    ]
                },
            }
        ]
    }


def test_source_map_points_at_each_node() -> None:
    text = (
        'prefix /api\nroute /ws {\n  on message type "x" where msg.n > 1 {\n    send msg\n  }\n}\n'
    )
    _, source_map, errors = parse(text)
    assert errors == []
    span = source_map["/routes/0/on/message/0/where"]
    assert (span.line, span.col, span.end_col) == (3, 29, 38)  # type: ignore[attr-defined]
    span = source_map["/routes/0/on/message/0/do/0/send"]
    assert (span.line, span.col) == (4, 10)  # type: ignore[attr-defined]
    # A position inside an embedded expression maps back to the file.
    assert span.at_offset(2, "${msg}") == (4, 10)  # type: ignore[attr-defined]


def test_positions_inside_interpolated_strings_map_back() -> None:
    text = 'route /ws {\n  on connect {\n    send "Hello ${nope}!"\n  }\n}\n'
    _, source_map, _ = parse(text)
    value = "Hello ${nope}!"
    span = source_map["/routes/0/on/connect/0/send"]
    assert span.at_offset(value.index("nope"), value) == (3, 19)  # type: ignore[attr-defined]


def test_else_if_chains_and_broadcast_options() -> None:
    ir, _, errors = parse(
        'route /ws { on message { if a { ping } else if b { pong "x" } '
        'else { close 4000 "r" } broadcast msg to [r1, "r2"] include self } }'
    )
    assert errors == []
    (handler,) = ir["routes"][0]["on"]["message"]  # type: ignore[index]
    assert handler["do"] == [
        {
            "if": "a",
            "then": [{"ping": {}}],
            "else": [
                {
                    "if": "b",
                    "then": [{"pong": {"data": "x"}}],
                    "else": [{"close": {"code": 4000, "reason": "r"}}],
                }
            ],
        },
        {"broadcast": {"data": "${msg}", "to": ["${r1}", "r2"], "includeSelf": True}},
    ]


def test_recovery_reports_errors_of_several_lines() -> None:
    _, _, errors = parse(
        "route /ws {\n  on connect {\n    sned 1\n    send 2\n    jion 3\n  }\n}\n"
    )
    assert [e.splitlines()[0] for e in errors] == [
        "t.mock:3:5: error: unknown action 'sned'",
        "t.mock:5:5: error: unknown action 'jion'",
    ]


def test_duplicate_handlers_settings_and_keys_are_errors() -> None:
    _, _, errors = parse(
        "route /ws {\n  heartbeat 1s\n  heartbeat 2s\n  on connect { }\n"
        "  on connect { }\n  on message { send { a: 1, a: 2 } }\n}\n"
    )
    firsts = [e.splitlines()[0] for e in errors]
    assert firsts == [
        "t.mock:3:3: error: 'heartbeat' is given twice in this route",
        "t.mock:5:3: error: 'on connect' is given twice in this route",
        "t.mock:6:29: error: key 'a' appears twice in this object",
    ]


def test_sizes_without_unit_are_bytes_and_durations_need_one() -> None:
    ir, _, errors = parse("route /ws { max message 2048 }")
    assert errors == [] and ir["routes"][0]["maxMessage"] == "2048B"  # type: ignore[index]
    _, _, errors = parse("route /ws { heartbeat 10 }")
    assert errors[0].splitlines()[0] == "t.mock:1:23: error: a duration needs a unit"


def test_keywords_are_names_where_a_name_is_expected() -> None:
    ir, _, errors = parse(
        'route /ws { on message type "type" { send { type: msg.type, on: msg.on, message: 1 } } }'
    )
    assert errors == []
    handler = ir["routes"][0]["on"]["message"][0]  # type: ignore[index]
    assert handler["do"][0]["send"] == {"type": "${msg.type}", "on": "${msg.on}", "message": 1}


def test_recovery_skips_brackets_inside_strings_and_comments() -> None:
    # The line blanked to recover must balance its brackets; those of strings and comments
    # are text, so `sned "{"` can be blanked and the next error is found too.
    _, _, errors = parse('route /ws {\n  on connect {\n    sned "{"  # ) [\n    jion 3\n  }\n}\n')
    assert [e.splitlines()[0] for e in errors] == [
        "t.mock:3:5: error: unknown action 'sned'",
        "t.mock:4:5: error: unknown action 'jion'",
    ]


def test_a_connection_limit_that_is_not_whole_says_so() -> None:
    _, _, errors = parse("route /ws { max connections 2.5 }")
    assert errors[0].splitlines()[0] == "t.mock:1:29: error: '2.5' is not a whole number"
    assert errors[0].splitlines()[-1] == ("  hint: a connection limit is a whole number like 100")
    _, _, errors = parse("route /ws { auth { reject 4001.5 } }")
    assert errors[0].splitlines()[-1] == "  hint: codes are whole numbers like 4001"


def test_misspelt_settings_and_statements_get_a_did_you_mean() -> None:
    _, _, errors = parse('route /ws {\n  orgins ["https://a.example"]\n}\ntset "t" {}\n')
    assert [(e.splitlines()[0], e.splitlines()[-1]) for e in errors] == [
        (
            "t.mock:2:3: error: unknown route setting or handler 'orgins'",
            "  hint: did you mean 'origins'?",
        ),
        ("t.mock:4:1: error: unknown top-level statement 'tset'", "  hint: did you mean 'test'?"),
    ]


def test_misspelt_test_steps_get_a_did_you_mean() -> None:
    # A step starting with an unknown word reads as a client step (`alice send …`): the
    # error is at the word after it, and the hint is about the word itself.
    _, _, errors = parse(
        'route /x {}\ntest "t" {\n  conect alice to /x\n  wiat 1s\n'
        '  lett x = 1\n  connect bob to /x\n  bob sned "x"\n}\n'
    )
    assert [(e.splitlines()[0], e.splitlines()[-1]) for e in errors] == [
        (
            "t.mock:3:10: error: unexpected 'alice'; expected 'close', 'expect' or 'send'",
            "  hint: did you mean 'connect'?",
        ),
        (
            "t.mock:4:8: error: unexpected '1s'; expected 'close', 'expect' or 'send'",
            "  hint: did you mean 'wait'?",
        ),
        (
            "t.mock:5:8: error: unexpected 'x'; expected 'close', 'expect' or 'send'",
            "  hint: did you mean 'let'?",
        ),
        (
            "t.mock:7:7: error: unexpected 'sned'; expected 'close', 'expect' or 'send'",
            "  hint: did you mean 'send'?",
        ),
    ]


def test_an_unquoted_close_reason_in_a_test_is_reported_where_it_is() -> None:
    for step in ("alice expect close 4000 bye", "alice close 4000 bye"):
        _, _, errors = parse(
            f'route /x {{}}\ntest "t" {{\n  connect alice to /x\n  {step}\n  alice send "x"\n}}\n'
        )
        assert len(errors) == 1, errors
        column = step.index("bye") + 3
        assert errors[0].splitlines()[0] == (
            f"t.mock:4:{column}: error: unexpected 'bye' after the close code"
        )
        assert errors[0].splitlines()[-1] == (
            '  hint: a close reason in a test is a quoted string: "bye"'
        )


def test_positions_inside_strings_with_escapes_inside_expressions_map_back() -> None:
    # The IR string is the literal's text: a backslash inside ${…} is the expression's.
    text = "route /ws {\n  on connect {\n    send \"${'\\t'} ${nope}\"\n  }\n}\n"
    ir, source_map, errors = parse(text)
    assert errors == []
    value = "${'\\t'} ${nope}"
    assert ir["routes"][0]["on"]["connect"][0]["send"] == value  # type: ignore[index]
    span = source_map["/routes/0/on/connect/0/send"]
    assert span.at_offset(value.index("nope"), value) == (3, 21)  # type: ignore[attr-defined]

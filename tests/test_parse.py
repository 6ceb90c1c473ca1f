"""The .mock front end: IR shape, source map, positions inside expressions, recovery."""

from __future__ import annotations

from lark import Lark

from scenario_engine.parse import parse_mock
from scenario_engine.source import Source
from scenario_engine.syntax import grammar_text, parser


def parse(text: str) -> tuple[object, dict[str, object], list[str]]:
    ir, source_map, errors = parse_mock(Source("t.mock", text))
    return ir, dict(source_map), [e.format_text() for e in errors]


def test_grammar_builds_strictly_without_the_cache() -> None:
    # strict=True: no shift/reduce conflict and no colliding terminals.
    fresh = Lark(grammar_text(), parser="lalr", strict=True, start=["start", "expr"])
    assert fresh.parse("a + b * c", start="expr") is not None
    assert parser(cache=False) is not parser()


def test_expressions_become_templates_and_literals_stay_literal() -> None:
    ir, _, errors = parse('route /ws { on connect { send { id: conn.id, n: 1, '
                          's: "x ${a} \\${b}", l: [true, null], e: 1 + 2 } } }')
    assert errors == []
    assert ir == {"routes": [{"path": "/ws", "on": {"connect": [{"send": {
        "id": "${conn.id}", "n": 1, "s": "x ${a} $${b}", "l": [True, None],
        "e": "${1 + 2}"}}]}}]}


def test_source_map_points_at_each_node() -> None:
    text = ('prefix /api\nroute /ws {\n  on message type "x" where msg.n > 1 {\n'
            '    send msg\n  }\n}\n')
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
    ir, _, errors = parse('route /ws { on message { if a { ping } else if b { pong "x" } '
                          'else { close 4000 "r" } broadcast msg to [r1, "r2"] include self } }')
    assert errors == []
    (handler,) = ir["routes"][0]["on"]["message"]  # type: ignore[index]
    assert handler["do"] == [
        {"if": "a", "then": [{"ping": {}}],
         "else": [{"if": "b", "then": [{"pong": {"data": "x"}}],
                   "else": [{"close": {"code": 4000, "reason": "r"}}]}]},
        {"broadcast": {"data": "${msg}", "to": ["${r1}", "r2"], "includeSelf": True}}]


def test_recovery_reports_errors_of_several_lines() -> None:
    _, _, errors = parse("route /ws {\n  on connect {\n    sned 1\n    send 2\n    jion 3\n"
                         "  }\n}\n")
    assert [e.splitlines()[0] for e in errors] == [
        "t.mock:3:5: error: unknown action 'sned'", "t.mock:5:5: error: unknown action 'jion'"]


def test_duplicate_handlers_settings_and_keys_are_errors() -> None:
    _, _, errors = parse("route /ws {\n  heartbeat 1s\n  heartbeat 2s\n  on connect { }\n"
                         "  on connect { }\n  on message { send { a: 1, a: 2 } }\n}\n")
    firsts = [e.splitlines()[0] for e in errors]
    assert firsts == [
        "t.mock:3:3: error: 'heartbeat' is given twice in this route",
        "t.mock:5:3: error: 'on connect' is given twice in this route",
        "t.mock:6:29: error: key 'a' appears twice in this object"]


def test_sizes_without_unit_are_bytes_and_durations_need_one() -> None:
    ir, _, errors = parse("route /ws { max message 2048 }")
    assert errors == [] and ir["routes"][0]["maxMessage"] == "2048B"  # type: ignore[index]
    _, _, errors = parse("route /ws { heartbeat 10 }")
    assert errors[0].splitlines()[0] == "t.mock:1:23: error: a duration needs a unit"


def test_keywords_are_names_where_a_name_is_expected() -> None:
    ir, _, errors = parse('route /ws { on message type "type" { send { type: msg.type, '
                          'on: msg.on, message: 1 } } }')
    assert errors == []
    handler = ir["routes"][0]["on"]["message"][0]  # type: ignore[index]
    assert handler["do"][0]["send"] == {"type": "${msg.type}", "on": "${msg.on}",
                                        "message": 1}

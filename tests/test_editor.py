"""language/editor.py: what the language server answers, over text and a position."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ROOT

from scenario_engine.errors import ScenarioError
from scenario_engine.expr.functions import FUNCTIONS
from scenario_engine.language.editor import (
    Analysis,
    complete,
    definition,
    diagnostics,
    hover,
    references,
    symbols,
)
from scenario_engine.language.loader import load_paths, read_source
from scenario_engine.language.source import Span
from scenario_engine.language.validate import CONN_FIELDS

TEXT = """\
let users = { "alice-token": { name: "Alice" } }
let greeting = "hello"

route /ws/game/:gameId {
  max message 1KB

  auth {
    reject 4001 "No token" unless query.token

  }

  on connect {
    join "lobby"
    every 500ms as "tick" {
      log timer.count

    }
    send { text: "${greeting} ${conn.id}" }
  }

  on message type "move" {
    broadcast { move: msg.move } to "lobby"
    cancel "tick"

  }

  on error {
    log error.message
  }
}

test "moves are broadcast" {
  connect alice to /api/ws/game/1
  connect bob to /api/ws/game/1
  alice send { type: "move", move: 1 }

}
"""


def at(text: str, marker: str, plus: int = 0) -> tuple[int, int]:
    """1-based line and column of ``marker`` (plus ``plus`` characters) in ``text``."""
    offset = text.index(marker) + plus
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def labels(text: str, marker: str, plus: int = 0, name: str = "game.mock") -> list[str]:
    return [c.label for c in complete(Analysis(name, text), *at(text, marker, plus))]


def blank_line_after(marker: str) -> tuple[str, str, int]:
    """(text, marker, plus) placing the cursor on the blank line after ``marker``'s line."""
    offset = TEXT.index(marker)
    end = TEXT.index("\n", offset)
    return TEXT, TEXT[offset : end + 1], end - offset + 1


# ---- completion ------------------------------------------------------------------------------


def test_at_the_top_level_the_items_of_a_file() -> None:
    assert labels(TEXT + "\n", "\n", len(TEXT)) == ["prefix", "let", "state", "route", "test"]


def test_in_a_route_its_settings_and_handlers() -> None:
    text = TEXT.replace("  max message 1KB\n", "  max message 1KB\n  \n")
    found = labels(text, "  max message 1KB\n  \n", len("  max message 1KB\n  "))
    assert found == [
        "heartbeat",
        "compression",
        "max",
        "origins",
        "subprotocols",
        "latency",
        "auth",
        "on",
        "every",
    ]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("on ", ["connect", "message", "close", "error"]),
        ("max ", ["message", "connections", "rooms", "timers", "session"]),
        ("compression ", ["off", "on", "threshold"]),
        ("on message ", ["binary", "type", "where"]),
    ],
)
def test_after_a_keyword_the_words_the_grammar_allows(typed: str, expected: list[str]) -> None:
    text = TEXT.replace("  max message 1KB\n", f"  max message 1KB\n  {typed}\n")
    assert labels(text, f"  {typed}\n", 2 + len(typed))[: len(expected)] == expected


def test_in_auth_its_steps() -> None:
    text, marker, plus = blank_line_after('reject 4001 "No token"')
    assert labels(text, marker, plus) == ["reject", "accept", "let", "wait"]


def test_in_a_handler_the_actions() -> None:
    text, marker, plus = blank_line_after('broadcast { move: msg.move } to "lobby"\n    cancel')
    found = labels(text, marker, plus)
    assert found[:4] == ["send", "broadcast", "join", "leave"]
    assert {"every", "after", "cancel", "wait", "set", "unset", "drop", "if"} <= set(found)


def test_in_a_test_its_steps_and_its_clients() -> None:
    text, marker, plus = blank_line_after("alice send")
    assert labels(text, marker, plus) == ["connect", "wait", "let", "alice", "bob"]


def test_after_a_client_what_it_may_do() -> None:
    text = TEXT.replace("  alice send {", "  bob \n  alice send {")
    assert labels(text, "  bob \n", len("  bob ")) == ["send", "expect", "close"]


def test_conn_has_the_checkers_properties() -> None:
    assert labels(TEXT, "conn.id", len("conn.")) == list(CONN_FIELDS)


def test_error_and_timer_have_theirs() -> None:
    assert labels(TEXT, "error.message", len("error.")) == ["message", "location"]
    assert labels(TEXT, "timer.count", len("timer.")) == ["count"]


def test_a_constants_properties_once_checked() -> None:
    a = Analysis("game.mock", TEXT, {"users": {"alice-token": {"name": "Alice"}}})
    text = TEXT.replace("log timer.count", "log users.")
    a = Analysis("game.mock", text, {"users": {"alice-token": {"name": "Alice"}}})
    found = complete(a, *at(text, "users.", len("users.")))
    assert [c.label for c in found] == ["alice-token"]


def test_in_an_expression_the_names_of_its_handler_and_the_functions() -> None:
    in_message = labels(TEXT, "msg.move")
    assert {"msg", "raw", "conn", "session", "state", "users", "greeting"} <= set(in_message)
    assert set(FUNCTIONS) <= set(in_message)
    in_auth = labels(TEXT, "query.token")
    assert "msg" not in in_auth and "session" not in in_auth
    assert "query" in in_auth
    in_timer = labels(TEXT, "timer.count")
    assert "timer" in in_timer and "msg" not in in_timer


def test_functions_come_with_their_signatures() -> None:
    a = Analysis("game.mock", TEXT)
    found = {c.label: c for c in complete(a, *at(TEXT, "msg.move"))}
    assert found["len"].detail == FUNCTIONS["len"].usage
    assert found["len"].documentation == f"{FUNCTIONS['len'].doc} (1 argument)"


def test_rooms_and_timers_used_elsewhere_in_the_file() -> None:
    text = TEXT.replace('    cancel "tick"', '    leave \n    cancel "tick"')
    a = Analysis("game.mock", text)
    found = complete(a, *at(text, "leave \n", len("leave ")))
    rooms = [c for c in found if c.kind == "room"]
    assert [(c.label, c.insert) for c in rooms] == [("lobby", '"lobby"')]
    text = TEXT.replace('    cancel "tick"', "    cancel ")
    found = complete(Analysis("game.mock", text), *at(text, "cancel ", len("cancel ")))
    assert [c.label for c in found if c.kind == "timer"] == ["tick"]


def test_nothing_inside_a_string_nor_for_yaml() -> None:
    assert labels(TEXT, '"No token"', 3) == []
    assert labels("routes: []\n", "routes", name="game.yaml") == []


# ---- hover -----------------------------------------------------------------------------------


def hovered(marker: str, plus: int = 1, constants: dict[str, object] | None = None) -> str | None:
    return hover(Analysis("game.mock", TEXT, constants), *at(TEXT, marker, plus))


def test_hover_on_a_keyword_gives_the_schemas_description() -> None:
    text = hovered("max message")
    assert text is not None
    assert text.startswith("**max message** — Maximum message size")
    assert "1009" in text
    on = hovered("on connect")
    assert on is not None and on.startswith("**on connect** — On connect")
    join = hovered('join "lobby"')
    assert join is not None and "Join a room" in join
    assert 'Example (IR): `"chat"`' in join


def test_hover_on_a_function_gives_its_signature() -> None:
    text = TEXT.replace("log timer.count", "log len(users)")
    found = hover(Analysis("game.mock", text), *at(text, "len(", 1))
    assert found == f"```\n{FUNCTIONS['len'].usage}\n```\n{FUNCTIONS['len'].doc} (1 argument)"


def test_hover_on_a_constant_gives_its_value() -> None:
    assert hovered("greeting}", 2) == 'constant `greeting`\n```\n"hello"\n```'
    assert (
        hovered("greeting}", 2, {"greeting": "hello"}) == 'constant `greeting`\n```\n"hello"\n```'
    )


def test_hover_on_a_quantity_says_it_in_words() -> None:
    assert hovered("500ms") == "500 milliseconds (0.5 s)"
    assert hovered("1KB") == "1,024 bytes"


def test_hover_on_a_name_says_what_it_is() -> None:
    found = hovered("msg.move")
    assert found is not None and found.startswith("`msg`: the message being handled")


# ---- definitions, references, outline --------------------------------------------------------


def spans_at(function: object, marker: str, plus: int = 1) -> list[tuple[int, int]]:
    a = Analysis("game.mock", TEXT)
    found: list[Span] = function(a, *at(TEXT, marker, plus))  # type: ignore[operator]
    return [(s.line, s.col) for s in found]


def test_definition_and_references_of_a_let_name_even_inside_a_template() -> None:
    assert spans_at(definition, "greeting}", 2) == [at(TEXT, "greeting")]
    assert spans_at(references, "greeting =") == [at(TEXT, "greeting"), at(TEXT, "greeting}")]


def test_definition_and_references_of_a_room_and_a_timer() -> None:
    assert spans_at(definition, 'to "lobby"', 4) == [at(TEXT, '"lobby"')]
    assert spans_at(references, '"lobby"') == [at(TEXT, '"lobby"'), at(TEXT, 'to "lobby"', 3)]
    assert spans_at(definition, 'cancel "tick"', 8) == [at(TEXT, '"tick"')]


def test_definition_of_a_client_of_a_test() -> None:
    assert spans_at(definition, "alice send") == [at(TEXT, "alice to")]


def test_symbols_outline_routes_handlers_tests_constants() -> None:
    outline = [
        (s.kind, s.name, [c.name for c in s.children]) for s in symbols(Analysis("g.mock", TEXT))
    ]
    assert outline == [
        ("constant", "users", []),
        ("constant", "greeting", []),
        ("route", "/ws/game/:gameId", ["on connect", 'on message type "move"', "on error"]),
        ("test", "moves are broadcast", []),
    ]


# ---- diagnostics -----------------------------------------------------------------------------


def test_a_diagnostic_covers_the_whole_word() -> None:
    text = TEXT.replace("broadcast {", "brodcast {")
    (error,), constants = diagnostics("game.mock", text)
    assert (error.line, error.col, error.end_col) == (
        *at(text, "brodcast"),
        at(text, "brodcast")[1] + 8,
    )
    assert error.message == "unknown action 'brodcast'"
    assert error.hint == "did you mean 'broadcast'?"
    assert constants is None


def test_a_position_only_error_is_widened_to_its_token() -> None:
    text = TEXT.replace("on message type", "on mesage type")
    (error,), _ = diagnostics("game.mock", text)
    assert error.end_col == error.col + len("mesage")


def test_a_valid_file_has_no_diagnostics_and_its_constants() -> None:
    found, constants = diagnostics("game.mock", TEXT)
    assert found == []
    assert constants == {"users": {"alice-token": {"name": "Alice"}}, "greeting": "hello"}


def test_a_route_defined_twice_in_the_file_as_check_reports_it() -> None:
    text = "route /a {\n}\nroute /a {\n}\n"
    (error,), _ = diagnostics("twice.mock", text)
    assert (error.line, error.col, error.end_col) == (3, 7, 9)
    assert error.message == "route '/a' is already defined"
    assert error.hint == "the first definition is at line 1"


def _text_golden_files() -> list[Path]:
    # The golden files that are text: an editor has no document for the others (binary
    # garbage), which check reports as unreadable before any parsing.
    return sorted(
        p
        for p in (ROOT / "tests" / "golden" / "errors").iterdir()
        if p.suffix != ".expected" and not isinstance(read_source(p), ScenarioError)
    )


@pytest.mark.parametrize("path", _text_golden_files(), ids=lambda p: p.name)
def test_the_same_findings_as_check_for_every_golden_error_file(path: Path) -> None:
    loaded, errors, _ = load_paths([path])
    expected = sorted(
        {*errors, *(w for one in loaded for w in one.warnings)}, key=ScenarioError.sort_key
    )
    source = read_source(path)
    assert not isinstance(source, ScenarioError)
    found, _ = diagnostics(str(path), source.text)
    shown = sorted(found, key=ScenarioError.sort_key)
    assert [(e.line, e.col, e.message, e.hint, e.severity) for e in shown] == [
        (e.line, e.col, e.message, e.hint, e.severity) for e in expected
    ]
    assert all(e.end_col is not None and e.end_col > e.col for e in shown)

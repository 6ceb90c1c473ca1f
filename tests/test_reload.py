"""runtime/reload.py and ``Engine.reload``, without sockets: what counts as a changed route,
and what a reload does to connections, rooms, sessions, timers and state.

The same text compiled twice gives two Programs, as a reload does; the engine's effects say
what the server would carry out.
"""

from __future__ import annotations

import json
from pathlib import Path

from support import engine_connect, frames, line_of

from scenario_engine.language.ir import Loaded
from scenario_engine.language.loader import load_paths, load_source
from scenario_engine.language.source import Source
from scenario_engine.runtime.compiler import compile_program
from scenario_engine.runtime.connection import Connection
from scenario_engine.runtime.effects import Close, Effect, Log, StartTimer, StopTimer
from scenario_engine.runtime.engine import Engine
from scenario_engine.runtime.program import Program, Route
from scenario_engine.runtime.reload import Changes, compare


def program(*files: tuple[str, str], previous: Program | None = None) -> Program:
    """The files (name, text) compiled together, as ``serve`` loads them."""
    loaded = []
    for name, text in files:
        one, errors = load_source(Source(name, text))
        assert errors == [], [e.format_text() for e in errors]
        assert one is not None
        loaded.append(one)
    return compile_program(loaded, previous)


def route_of(served: Program, path: str) -> Route:
    return next(route for route in served.routes if route.path == path)


def closes(effects: list[Effect]) -> list[tuple[Connection, int, str]]:
    return [(e.conn, e.code, e.reason) for e in effects if isinstance(e, Close)]


TWO_ROUTES = """
let greeting = "hello"

route /a {
  on connect { send { to: "a", greeting: greeting } }
}

route /b {
  on connect { send { to: "b" } }
}
"""

OTHER = """
route /other {
  on connect { send { type: "other" } }
}
"""


# ---- what changed ----------------------------------------------------------------------------


def test_the_same_text_again_keeps_every_route() -> None:
    old = program(("app.mock", TWO_ROUTES))
    changes = compare(old, program(("app.mock", TWO_ROUTES)))
    assert changes == Changes(kept=("/a", "/b"))
    assert changes.describe() == "no route changed"


def test_comments_and_blank_lines_do_not_change_a_route() -> None:
    moved = "# a comment above everything\n\n\n" + TWO_ROUTES.replace("route /b", "\n# b\nroute /b")
    changes = compare(program(("app.mock", TWO_ROUTES)), program(("app.mock", moved)))
    assert changes.kept == ("/a", "/b") and not changes.changed


def test_an_edited_route_is_changed_and_the_others_are_kept() -> None:
    edited = TWO_ROUTES.replace('to: "b"', 'to: "B"')
    changes = compare(program(("app.mock", TWO_ROUTES)), program(("app.mock", edited)))
    assert changes.changed == ("/b",) and changes.kept == ("/a",)
    assert changes.describe() == "changed /b"


def test_a_constant_changes_every_route_of_its_file_and_no_other() -> None:
    """/b does not read the constant; the cautious answer still restarts it."""
    edited = TWO_ROUTES.replace('"hello"', '"bonjour"')
    old = program(("app.mock", TWO_ROUTES), ("other.mock", OTHER))
    new = program(("app.mock", edited), ("other.mock", OTHER))
    changes = compare(old, new)
    assert changes.changed == ("/a", "/b") and changes.kept == ("/other",)


def test_a_new_prefix_removes_the_routes_and_adds_others() -> None:
    changes = compare(
        program(("app.mock", TWO_ROUTES)), program(("app.mock", "prefix /v2\n" + TWO_ROUTES))
    )
    assert changes.removed == ("/a", "/b") and changes.added == ("/v2/a", "/v2/b")
    assert changes.describe() == "added /v2/a, /v2/b; removed /a, /b"


def test_the_order_of_keys_in_a_payload_is_part_of_a_route() -> None:
    """The keys are sent in the order written: another order is another frame."""
    swapped = TWO_ROUTES.replace('to: "a", greeting: greeting', 'greeting: greeting, to: "a"')
    changes = compare(program(("app.mock", TWO_ROUTES)), program(("app.mock", swapped)))
    assert changes.changed == ("/a",)


def test_tests_of_a_file_are_not_part_of_its_routes() -> None:
    with_test = TWO_ROUTES + '\ntest "a greets" {\n  connect x to /a\n  x expect { to: "a" }\n}\n'
    changes = compare(program(("app.mock", TWO_ROUTES)), program(("app.mock", with_test)))
    assert changes.kept == ("/a", "/b") and not changes.changed


def test_a_route_moved_to_another_file_is_changed() -> None:
    """Its file is the scope of its state and constants."""
    only_a = TWO_ROUTES.split("route /b")[0]
    b_alone = "route /b" + TWO_ROUTES.split("route /b")[1]
    old = program(("app.mock", TWO_ROUTES))
    changes = compare(old, program(("app.mock", only_a), ("b.mock", b_alone)))
    assert changes.kept == ("/a",) and changes.changed == ("/b",)


COUNTER = """
state { count: 0 }

route /count {
  on message type "add" {
    set state.count = state.count + 1
    send { count: state.count }
  }
}

route /peek {
  on connect { send { count: state.count } }
}
"""


def test_a_state_kept_when_only_a_handler_changed() -> None:
    edited = COUNTER.replace("send { count: state.count }\n  }", "send { n: state.count }\n  }")
    changes = compare(program(("count.mock", COUNTER)), program(("count.mock", edited)))
    assert changes.changed == ("/count",) and changes.kept == ("/peek",)
    assert changes.reset == () and changes.kept_states == ("count.mock",)
    assert changes.describe() == "changed /count; state of count.mock kept"


def test_a_new_state_block_resets_the_state_and_restarts_every_route_of_the_file() -> None:
    """A client that read the old state is not left reading the new one."""
    edited = COUNTER.replace("count: 0", "count: 100")
    changes = compare(program(("count.mock", COUNTER)), program(("count.mock", edited)))
    assert changes.changed == ("/count", "/peek")
    assert changes.reset == ("count.mock",) and changes.defined == ("count.mock",)
    assert changes.describe() == "changed /count, /peek; state of count.mock reset"


def test_a_state_computed_from_constants_resets_when_they_change() -> None:
    reads = 'let start = 5\nlet label = "x"\n' + COUNTER.replace("count: 0", "count: start")
    other_constant = reads.replace('"x"', '"y"')
    changes = compare(program(("count.mock", reads)), program(("count.mock", other_constant)))
    assert changes.reset == ("count.mock",)
    # A state that reads no constant does not start over when one changes.
    plain = 'let label = "x"\n' + COUNTER
    changes = compare(
        program(("count.mock", plain)), program(("count.mock", plain.replace('"x"', '"y"')))
    )
    assert changes.reset == () and changes.kept_states == ("count.mock",)


def test_a_new_file_with_a_state_block_has_its_state_defined() -> None:
    changes = compare(
        program(("app.mock", TWO_ROUTES)),
        program(("app.mock", TWO_ROUTES), ("count.mock", COUNTER)),
    )
    assert changes.added == ("/count", "/peek")
    assert changes.defined == ("count.mock",) and changes.reset == ()


def test_constants_keep_their_values_while_the_lets_are_unchanged() -> None:
    text = "let serverId = uuid()\n" + TWO_ROUTES
    first = program(("app.mock", text))
    again = program(("app.mock", text), previous=first)
    assert again.routes[0].constants["serverId"] == first.routes[0].constants["serverId"]
    assert (
        program(("app.mock", text)).routes[0].constants["serverId"]
        != first.routes[0].constants["serverId"]
    )
    edited = program(("app.mock", text.replace('"hello"', '"hi"')), previous=first)
    assert edited.routes[0].constants["serverId"] != first.routes[0].constants["serverId"]


def test_a_reload_parses_and_checks_only_the_files_whose_text_changed(tmp_path: Path) -> None:
    (tmp_path / "app.mock").write_text(TWO_ROUTES, encoding="utf-8")
    (tmp_path / "other.mock").write_text(OTHER, encoding="utf-8")
    known: dict[str, Loaded] = {}
    first, errors, _ = load_paths([tmp_path], known)
    assert not errors and set(known) == {str(tmp_path / "app.mock"), str(tmp_path / "other.mock")}
    (tmp_path / "app.mock").write_text(TWO_ROUTES.replace("hello", "hi"), encoding="utf-8")
    second, errors, _ = load_paths([tmp_path], known)
    assert not errors
    assert second[1] is first[1] and second[0] is not first[0]  # other.mock, app.mock
    # A file with errors is checked again on every load, and what it had is not replaced.
    (tmp_path / "app.mock").write_text("route /a {", encoding="utf-8")
    _, errors, _ = load_paths([tmp_path], known)
    assert errors and known[str(tmp_path / "app.mock")] is second[0]


# ---- what the engine does ----------------------------------------------------------------------

APP = """
route /keep {
  every 1s { broadcast { type: "tick", n: timer.count } }
  on message type "join" {
    join "lobby"
    set session.name = msg.name
    every 1s as "beat" { log "beat" }
  }
  on message type "say" {
    broadcast { type: "said", by: session.name, text: msg.text } to "lobby" include self
  }
}

route /change {
  every 1s { broadcast { type: "tick" } }
  on connect { send { version: 1 } }
  on close { broadcast { type: "left", id: conn.id } }
}

route /remove {
  on connect { send { type: "here" } }
}
"""

APP_EDITED = (
    "# two lines above /keep:\n# its compiled blocks now say other line numbers\n"
    + APP.replace("version: 1", "version: 2").split("route /remove")[0]
    + 'route /add {\n  every 1s { broadcast { type: "added" } }\n}\n'
)


def say(engine: Engine, conn: Connection, **message: object) -> list[Effect]:
    return engine.message(conn, json.dumps(message))


def test_the_clients_of_an_unchanged_route_keep_their_rooms_and_sessions() -> None:
    engine = Engine(program(("app.mock", APP)))
    ann, bob = engine_connect(engine, "/keep"), engine_connect(engine, "/keep")
    say(engine, ann, type="join", name="Ann")
    say(engine, bob, type="join", name="Bob")
    reloaded, _ = engine.reload(program(("app.mock", APP_EDITED)))
    assert reloaded.kept == 2 and reloaded.closed == 0
    keep = route_of(engine.program, "/keep")
    assert ann.route is keep and bob.route is keep
    assert ann.session.data == {"name": "Ann"} and ann.rooms == {"lobby"}
    # A client of the new version is in the same room as those of the old one.
    carol = engine_connect(engine, "/keep")
    say(engine, carol, type="join", name="Carol")
    effects = say(engine, carol, type="say", text="hi")
    assert frames(effects, ann) == [{"type": "said", "by": "Carol", "text": "hi"}]
    assert frames(say(engine, ann, type="say", text="yo"), carol)[0]["by"] == "Ann"


def test_the_clients_of_changed_and_removed_routes_end_with_1012() -> None:
    engine = Engine(program(("app.mock", APP)))
    first, second = engine_connect(engine, "/change"), engine_connect(engine, "/change")
    gone = engine_connect(engine, "/remove")
    reloaded, effects = engine.reload(program(("app.mock", APP_EDITED)))
    assert reloaded.closed == 3 and reloaded.kept == 0
    assert reloaded.changes.describe() == "added /add; changed /change; removed /remove"
    restart = (1012, "Service restart")
    assert sorted(closes(effects), key=lambda c: c[0].id) == sorted(
        [(first, *restart), (second, *restart), (gone, *restart)], key=lambda c: c[0].id
    )
    # Their ``on close`` ran at the reload, with the old version: the first to end told the
    # other, still open then.
    told = frames(effects, first) + frames(effects, second)
    assert told in ([{"type": "left", "id": first.id}], [{"type": "left", "id": second.id}])
    assert not any(engine.connections[route.index] for route in engine.program.routes)
    # When their sockets are closed, the engine has nothing more to do.
    assert engine.close(first, 1012, "Service restart") == []
    assert engine.resolve("/remove") is None
    greeted: list[Effect] = []
    newcomer = engine_connect(engine, "/change", effects=greeted)
    assert frames(greeted, newcomer) == [{"version": 2}]


def test_route_timers_follow_the_new_version() -> None:
    """Unchanged: the same timer goes on (its count too), running the new compiled block.
    Changed: the old one stops, a new one starts. Removed: stops. Added: starts."""
    engine = Engine(program(("app.mock", APP)))
    started = [e.timer for e in engine.start() if isinstance(e, StartTimer)]
    keep_tick, change_tick = started
    engine.fire(keep_tick)
    _, effects = engine.reload(program(("app.mock", APP_EDITED)))
    stopped = [e.timer for e in effects if isinstance(e, StopTimer)]
    new_timers = [e.timer for e in effects if isinstance(e, StartTimer)]
    assert stopped == [change_tick] and not change_tick.alive
    assert [t.route.path for t in new_timers] == ["/change", "/add"]
    keep = route_of(engine.program, "/keep")
    assert keep_tick.alive and keep_tick.route is keep and keep_tick.spec is keep.timers[0]
    running = {t for timers in engine.route_timers.values() for t in timers}
    assert running == {keep_tick, *new_timers}
    assert engine.fire(change_tick) == []
    listener = engine_connect(engine, "/keep")
    assert frames(engine.fire(keep_tick), listener) == [{"type": "tick", "n": 2}]


def test_the_timers_of_a_kept_client_run_the_new_compiled_blocks() -> None:
    """What they log says where the block is now, two lines further down."""
    engine = Engine(program(("app.mock", APP)))
    ann = engine_connect(engine, "/keep")
    say(engine, ann, type="join", name="Ann")
    beat = ann.timers["beat"]
    engine.reload(program(("app.mock", APP_EDITED)))
    compiled = route_of(engine.program, "/keep").action_timers
    assert ann.timers["beat"] is beat and any(beat.spec is spec for spec in compiled)
    (log,) = [e for e in engine.fire(beat) if isinstance(e, Log)]
    line = line_of(APP_EDITED, 'log "beat"')
    assert line == line_of(APP, 'log "beat"') + 2
    assert log.location.startswith(f"app.mock:{line}:")


def test_a_route_replaced_while_a_handshake_waited_is_not_served() -> None:
    engine = Engine(program(("app.mock", APP)))
    keep, change = route_of(engine.program, "/keep"), route_of(engine.program, "/change")
    engine.reload(program(("app.mock", APP_EDITED)))
    assert engine.current(keep) is route_of(engine.program, "/keep")
    assert engine.current(change) is None


def test_the_state_goes_on_or_starts_over() -> None:
    engine = Engine(program(("count.mock", COUNTER)))
    counter = engine_connect(engine, "/count")
    say(engine, counter, type="add")
    say(engine, counter, type="add")
    handler_edited = COUNTER.replace(
        "send { count: state.count }\n  }", "send { n: state.count }\n  }"
    )
    engine.reload(program(("count.mock", handler_edited), previous=engine.program))
    assert engine.state.data("count.mock") == {"count": 2}
    newcomer = engine_connect(engine, "/count")
    assert frames(say(engine, newcomer, type="add"), newcomer) == [{"n": 3}]
    state_edited = handler_edited.replace("count: 0", "count: 100")
    reloaded, _ = engine.reload(program(("count.mock", state_edited), previous=engine.program))
    assert reloaded.changes.reset == ("count.mock",)
    assert engine.state.data("count.mock") == {"count": 100}
    engine.state.write("count.mock", ["count"], 7)
    engine.state.reset("count.mock")  # the admin API's reset: to the new initial state
    assert engine.state.data("count.mock") == {"count": 100}

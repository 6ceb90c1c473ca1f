"""``format_mock`` and ``scenario-engine fmt``: the canonical layout with every comment kept,
the same IR after formatting, and a second pass that changes nothing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from strategies import if_else_actions, ir_documents, open_parts
from support import SCENARIOS, run_cli, run_cli_process

from scenario_engine.errors import ScenarioErrors
from scenario_engine.language.emit import emit_mock
from scenario_engine.language.fmt import _relayout, format_mock
from scenario_engine.language.mock_frontend import parse_mock
from scenario_engine.language.source import Source

GOLDEN = Path(__file__).parent / "golden"

COMMENTED = """\
# Header comment

# About the prefix
prefix /api
let X = 5   # five
state { n: 0 }
# the route
route /a {
  heartbeat 10s  # beat
  auth {
    # first step
    reject 4001 unless conn.query.t
    accept { user: "x" }
    # end of auth
  }
  on message type "x" where msg.n > 1 {   # handler
    send {
      a: 1, # inner
      b: msg.n  # inner2
    }


    # a condition
    if msg.n { send 1 } else {
      # in else
      send 2
    }
    every 1s times 2 as t { log "x" }
    # after last
  }
  on connect {
    # nothing yet
  }
  every 5s { broadcast "y" }
} # end route
test "t" {
  connect c to /api/a
  c send { type: "x" }
  c expect any  # anything
}
# The end
"""

COMMENTED_FORMATTED = """\
# Header comment

# About the prefix
prefix /api

let X = 5  # five

state { n: 0 }

# the route
route /a {
  heartbeat 10s  # beat

  auth {
    # first step
    reject 4001 unless conn.query.t
    accept { user: "x" }
    # end of auth
  }

  on connect {
    # nothing yet
  }

  on message type "x" where msg.n > 1 {  # handler
    send {
      a: 1,  # inner
      b: msg.n,  # inner2
    }

    # a condition
    if msg.n {
      send 1
    } else {
      # in else
      send 2
    }
    every 1s times 2 as t {
      log "x"
    }
    # after last
  }

  every 5s {
    broadcast "y"
  }
}  # end route

test "t" {
  connect c to /api/a
  c send { type: "x" }
  c expect any  # anything
}
# The end
"""


def _ir(text: str) -> dict[str, Any]:
    """The IR of a `.mock` text, without positions (the source map is left out)."""
    ir, _, errors = parse_mock(Source("t.mock", text))
    assert not errors and ir is not None, errors
    return dict(ir)


def _comments(text: str) -> list[str]:
    return re.findall(r"#[^\n]*", text)


def _assert_formats(text: str) -> str:
    formatted = format_mock(text, "t.mock")
    assert _ir(formatted) == _ir(text)
    assert format_mock(formatted) == formatted
    return formatted


def test_comments_stay_where_they_were() -> None:
    assert _assert_formats(COMMENTED) == COMMENTED_FORMATTED


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.mock")), ids=lambda p: p.name)
def test_scenario_files_keep_their_ir_and_comments(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    formatted = _assert_formats(text)
    # Trailing comments lose their padding, and nothing else.
    assert [c.strip() for c in _comments(formatted)] == [c.strip() for c in _comments(text)]


def _loosened(text: str) -> str:
    """``text`` with the layout of its comments undone, and nothing else of meaning changed:
    comments on their own lines and closing brackets at the start of the line, more blanks
    before the comments at the ends of lines, blank lines doubled."""
    out: list[str] = []
    for line in text.split("\n"):
        if line.lstrip().startswith(("#", "}", "]")):
            line = line.lstrip()
        out.append(re.sub(r"(\S)  #", r"\1      #", line))
        if not line:
            out.append("")
    return "\n".join(out)


def test_the_example_scenarios_get_their_comments_back_in_place(tmp_path: Path) -> None:
    originals = {path.name: path.read_text(encoding="utf-8") for path in SCENARIOS.glob("*.mock")}
    assert sum(text.count("#") for text in originals.values()) > 50
    for name, text in originals.items():
        loosened = _loosened(text)
        assert loosened != text and _ir(loosened) == _ir(text), name
        (tmp_path / name).write_text(loosened, encoding="utf-8")

    result = run_cli_process("fmt", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.endswith(f"{len(originals)} of {len(originals)} files reformatted\n")
    for name, text in originals.items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text, name


def test_the_golden_files_with_errors_are_left_as_they_are(tmp_path: Path) -> None:
    # Every .mock file of tests/golden is a file with errors, on purpose: fmt reports them as
    # check does and leaves each byte where it was, its comments included.
    originals = {path.name: path.read_bytes() for path in GOLDEN.rglob("*.mock")}
    assert len(originals) > 10
    for name, content in originals.items():
        (tmp_path / name).write_bytes(content)
    result = run_cli_process("fmt", tmp_path)
    assert result.returncode == 1
    assert result.stdout.endswith(
        f"0 of {len(originals)} files reformatted, {len(originals)} with errors left as they were\n"
    )
    for name, content in originals.items():
        assert (tmp_path / name).read_bytes() == content, name


def test_a_formatted_file_is_unchanged() -> None:
    text = 'route /a {\n  on connect {\n    send "hi"\n  }\n}\n'
    assert format_mock(text) == text


def test_one_blank_line_between_statements_is_kept() -> None:
    text = "route /a {\n  on connect {\n    send 1\n\n\n\n    send 2\n    send 3\n  }\n}\n"
    assert _assert_formats(text) == (
        "route /a {\n  on connect {\n    send 1\n\n    send 2\n    send 3\n  }\n}\n"
    )


def test_a_comment_in_an_expression_is_kept_by_the_expression() -> None:
    text = "route /a {\n  on message {\n    send msg.a +  # the sum\n      msg.b\n  }\n}\n"
    formatted = _assert_formats(text)
    assert formatted.count("# the sum") == 1


def test_a_hash_in_a_string_is_no_comment() -> None:
    text = "route /a {\n  on connect {\n    send \"#1\"  # 'quoted' #2\n  }\n}\n"
    assert _assert_formats(text) == text


def test_an_empty_block_with_a_comment_is_opened() -> None:
    text = "route /a {\n  on connect {}\n  on close {\n  # later\n  }\n}\n"
    assert _assert_formats(text) == (
        "route /a {\n  on connect {}\n\n  on close {\n    # later\n  }\n}\n"
    )


def test_a_trailing_comment_stays_after_what_it_followed_on_its_line() -> None:
    text = (
        "route /a {\n  on message {\n"
        "    if msg.b { send 3 } else if msg.c { # c\n      send 4  # four\n    }\n"
        "    if msg.a {\n      send 1\n    } else {  # otherwise\n      send 2\n    }\n"
        "    if msg.a { send 1 }  # then\n    else { send 2 }\n"
        "  }\n}\n"
    )
    assert _assert_formats(text) == (
        "route /a {\n  on message {\n"
        "    if msg.b {\n      send 3\n    } else if msg.c {  # c\n      send 4  # four\n"
        "    }\n"
        "    if msg.a {\n      send 1\n    } else {  # otherwise\n      send 2\n    }\n"
        "    if msg.a {\n      send 1\n    } else {  # then\n      send 2\n    }\n"
        "  }\n}\n"
    )


def test_a_trailing_comment_after_a_block_s_bracket_stays_there_when_its_header_wraps() -> None:
    long_type = "t" * 70
    text = (
        f'route /a {{\n  on message type "{long_type}" where msg.n > 5 {{  # big ones\n'
        "    send 1\n  }\n}\n"
    )
    assert _assert_formats(text) == (
        f'route /a {{\n  on message type "{long_type}"\n      where msg.n > 5 {{  # big ones\n'
        "    send 1\n  }\n}\n"
    )


def test_comments_between_an_if_and_its_else_go_into_the_else_branch() -> None:
    text = (
        "route /a {\n  on message {\n"
        "    if msg.a {\n      send 1\n    }\n    # otherwise\n    else {\n      send 2\n    }\n"
        "    if msg.a {\n      send 1\n    }\n    # chained\n    else if msg.b {\n"
        "      send 2\n    }\n"
        "  }\n}\n"
    )
    # `else if` becomes `else { if … }`, the one layout with a line for the comment.
    assert _assert_formats(text) == (
        "route /a {\n  on message {\n"
        "    if msg.a {\n      send 1\n    } else {\n      # otherwise\n      send 2\n    }\n"
        "    if msg.a {\n      send 1\n    } else {\n      # chained\n      if msg.b {\n"
        "        send 2\n      }\n    }\n"
        "  }\n}\n"
    )


def test_comments_in_a_multi_line_value_stay_with_their_entries() -> None:
    text = 'let users = {\n  # alice\n  "a": 1,  # one\n  "b": 2,\n}  # users\n'
    text += "route /a {}\n"
    assert _assert_formats(text) == (
        "let users = {\n  # alice\n  a: 1,  # one\n  b: 2,\n}  # users\n\nroute /a {}\n"
    )


def test_a_value_without_comments_goes_on_one_line_when_it_fits() -> None:
    text = 'let users = {\n  "a": 1,\n  "b": [\n    2,\n  ],\n}  # users\nroute /a {}\n'
    assert _assert_formats(text) == "let users = { a: 1, b: [2] }  # users\n\nroute /a {}\n"


def test_every_kind_of_value_keeps_its_comments_in_place() -> None:
    text = """\
state {
  bids: [],  # newest first
  # nobody yet
  highest: null,
}
route /a {
  auth {
    accept {
      user: conn.query.user,  # from the query
    }
  }
  on message type "x" {
    send {  # the reply
      type: "x",
      items: [
        { id: 1 },  # the first
        {
          # empty
        },
      ],
      nested: { deep: { a: 1,  # deepest
      } },
    }
    broadcast { type: "y" } to [
      "r1",  # the main room
    ]
    set state.highest = [
      # none
    ]
  }
}
test "t" {
  connect c to /a query {
    user: "bob",  # a known user
  }
  c expect {
    type: "x",
    # any order
    items: any,
  } within 1s
}
"""
    expected = """\
state {
  bids: [],  # newest first
  # nobody yet
  highest: null,
}

route /a {
  auth {
    accept {
      user: conn.query.user,  # from the query
    }
  }

  on message type "x" {
    send {  # the reply
      type: "x",
      items: [
        { id: 1 },  # the first
        {
          # empty
        },
      ],
      nested: {
        deep: {
          a: 1,  # deepest
        },
      },
    }
    broadcast { type: "y" } to [
      "r1",  # the main room
    ]
    set state.highest = [
      # none
    ]
  }
}

test "t" {
  connect c to /a query {
    user: "bob",  # a known user
  }
  c expect {
    type: "x",
    # any order
    items: any,
  } within 1s
}
"""
    assert _assert_formats(text) == expected


def test_a_comment_in_a_statement_header_goes_before_the_statement() -> None:
    text = (
        'route /a {\n  on message type "x"\n      # only big ones\n      where msg.n > 5 {\n'
        "    send 1\n  }\n}\n"
    )
    assert _assert_formats(text) == (
        'route /a {\n  # only big ones\n  on message type "x" where msg.n > 5 {\n'
        "    send 1\n  }\n}\n"
    )


def test_a_comment_in_a_multi_line_where_stays_in_the_expression() -> None:
    text = (
        "route /a {\n  on message where msg.a &&\n      # and b\n      msg.b {  # both\n"
        "    send 1\n  }\n}\n"
    )
    assert _assert_formats(text) == text


def test_payload_keys_named_like_blocks_are_no_statements() -> None:
    text = "state { do: [1, 2] }\nroute /a {\n  on message {\n    send {\n      do: [\n"
    text += "        # in do\n        msg.a,\n        1,\n      ],\n    }\n  }\n}\n"
    assert _assert_formats(text) == (
        "state { do: [1, 2] }\n\nroute /a {\n  on message {\n    send {\n      do: [\n"
        "        # in do\n        msg.a,\n        1,\n      ],\n    }\n  }\n}\n"
    )


def test_crlf_line_breaks_become_lf() -> None:
    text = "route /a {\r\n  # crlf\r\n  on connect { send 1 }  # one\r\n}\r\n"
    assert _assert_formats(text) == (
        "route /a {\n  # crlf\n  on connect {\n    send 1\n  }  # one\n}\n"
    )


def test_a_file_with_errors_raises_the_loader_errors() -> None:
    with pytest.raises(ScenarioErrors) as caught:
        format_mock('route /a {\n  on connect {\n    sned "hi"\n  }\n}\n', "bad.mock")
    (error,) = caught.value.errors
    assert (error.file, error.line, error.col) == ("bad.mock", 3, 5)
    assert error.message == "unknown action 'sned'"


# ---- property: any layout, any comments --------------------------------------------------

#: Comments (texts without '#'), string literals, words, and every other character but blanks
#: and commas (which an open value adds after its last member): the text as the lexer sees
#: it, with the comments in their places.
_TOKEN = re.compile(r"""#[^#\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[\w.$]+|[^\s,]""")
#: The continuation lines of a statement's header (emit's clauses): no comment stays there.
_CLAUSES = ("where ", "include self", "capture ")


def _in_order(text: str, leaving_out: set[str]) -> list[str]:
    return [t.rstrip() for t in _TOKEN.findall(text) if t.rstrip() not in leaving_out]


@st.composite
def _commented(draw: st.DrawFn) -> tuple[str, set[str]]:
    """A text of a generated IR, some of its values and blocks written open (over several
    lines), with comments on lines of their own and at the ends of lines (inside those values,
    after `} else {`, …), blank lines and odd indentation added; and the comments that stand
    in a statement's header, which go before the statement. Comment texts are unique and end
    with ';'."""
    ir = draw(ir_documents())
    if draw(st.booleans()):
        handler = {"do": draw(st.lists(if_else_actions(), min_size=1, max_size=2))}
        ir["routes"].append({"path": "/else", "on": {"message": [handler]}})
    lines = emit_mock(ir, draw(open_parts(ir, forms=False))).split("\n")[:-1]
    out: list[str] = []
    in_headers: set[str] = set()
    for i, line in enumerate(lines):
        if draw(st.booleans()):
            out.append("")
        if draw(st.integers(0, 2)) == 0:
            comment = f"# before {i};"
            out.append(" " * draw(st.integers(0, 6)) + comment)
            if line.lstrip().startswith(_CLAUSES):
                in_headers.add(comment)
        opens = line.endswith(("{", "["))  # after a block's or a value's opening: likelier
        line = " " * draw(st.integers(0, 3)) + line.lstrip()
        if draw(st.integers(0, 1 if opens else 2)) == 0:
            line += " " * draw(st.integers(0, 2)) + f"# after {i};"
        out.append(line)
    if draw(st.booleans()):
        out.append("# last;")
    return "\n".join(out) + "\n", in_headers


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(_commented())
def test_formatting_keeps_the_ir_and_every_comment_in_place_and_is_idempotent(
    commented: tuple[str, set[str]],
) -> None:
    text, in_headers = commented
    ir, source_map, errors = parse_mock(Source("t.mock", text))
    assume(ir is not None and not errors)
    assert ir is not None
    formatted = _relayout(text, ir, source_map, "t.mock")
    again, again_map, again_errors = parse_mock(Source("t.mock", formatted))
    assert again == ir and not again_errors, formatted
    assert again is not None
    assert _relayout(formatted, again, again_map, "t.mock") == formatted, formatted
    for comment in re.findall(r"# [a-z]+ ?\d*;", text):
        assert formatted.count(comment) == text.count(comment), (comment, formatted)
    # Each comment between the same two tokens as before, but those of a statement's header.
    assert _in_order(formatted, in_headers) == _in_order(text, in_headers), formatted


# ---- the command ---------------------------------------------------------------------------

_UGLY = "route /a {\n    on connect { send 1 }   # hello\n}\n"
_NICE = "route /a {\n  on connect {\n    send 1\n  }  # hello\n}\n"


def test_fmt_rewrites_files_and_check_reports_them(tmp_path: Path) -> None:
    ugly, nice = tmp_path / "ugly.mock", tmp_path / "sub" / "nice.mock"
    nice.parent.mkdir()
    ugly.write_text(_UGLY)
    nice.write_text(_NICE)
    (tmp_path / "other.yaml").write_text("routes: []\n")

    result = run_cli("fmt", "--check", str(tmp_path))
    assert result.status == 1, result
    assert result.stdout == f"would reformat {ugly}\n1 of 2 files would be reformatted\n"
    assert ugly.read_text() == _UGLY

    result = run_cli("fmt", str(tmp_path))
    assert result.status == 0, result
    assert result.stdout == f"reformatted {ugly}\n1 of 2 files reformatted\n"
    assert ugly.read_text() == _NICE
    assert (tmp_path / "other.yaml").read_text() == "routes: []\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.yaml", "sub", "ugly.mock"]

    result = run_cli("fmt", "--check", str(tmp_path))
    assert (result.status, result.stdout) == (0, "0 of 2 files would be reformatted\n")


def test_fmt_leaves_a_file_with_errors_alone_and_reports_it_as_check_does(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.mock"
    text = 'route /ws {\n  on connect {\n    sned "hi"\n  }\n}\n'
    bad.write_text(text)
    result = run_cli("fmt", str(bad))
    assert result.status == 1
    assert result.stdout.startswith(f"{bad}:3:5: error: unknown action 'sned'\n")
    assert "  hint: did you mean 'send'?" in result.stdout
    assert result.stdout == run_cli("check", str(bad)).stdout.rsplit("\n", 2)[0] + (
        "\n0 of 1 file reformatted, 1 with errors left as they were\n"
    )
    assert bad.read_text() == text


def test_fmt_refuses_a_yaml_file_by_name(tmp_path: Path) -> None:
    scenario = tmp_path / "a.yaml"
    scenario.write_text("routes: []\n")
    result = run_cli("fmt", str(scenario))
    assert result.status == 2
    assert "YAML is not formatted" in result.stderr


def test_the_example_scenarios_are_formatted() -> None:
    result = run_cli("fmt", "--check", "scenarios")
    assert result.status == 0, result.stdout


def test_a_clause_that_does_not_fit_goes_on_a_continuation_line() -> None:
    # `where`, `include self` and `capture` stay on the statement's line while it fits in
    # emit's WIDTH, and go on the next line, two steps in, when it does not.
    long_room = "r" * 60
    text = (
        "route /ws/x {\n"
        f'  on message type "a-rather-long-message-type" where msg.something == "{long_room}" {{\n'
        f'    broadcast {{ type: "update", value: msg.value }} to "{long_room}" include self\n'
        "  }\n"
        "}\n"
    )
    formatted = format_mock(text)
    assert formatted == (
        "route /ws/x {\n"
        '  on message type "a-rather-long-message-type"\n'
        f'      where msg.something == "{long_room}" {{\n'
        f'    broadcast {{ type: "update", value: msg.value }} to "{long_room}"\n'
        "        include self\n"
        "  }\n"
        "}\n"
    )
    assert format_mock(formatted) == formatted

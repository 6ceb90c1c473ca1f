"""`record --raw`: a recording replayed as it happened (scenario_engine/recording/raw.py),
pinned with the scenario it writes; each is valid, laid out as fmt lays it out, and passes
its own tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support import ROOT
from test_record_infer import Recorder, checked, passes_its_tests

from scenario_engine.recording import raw_scenario, render_scenario


@pytest.mark.e2e
def test_raw_replays_each_message_s_replies_with_their_pauses(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/ws")
    recorder.out(1, ["c1"], {"type": "hello"})
    recorder.send(100, "c1", "ping")
    recorder.out(101, ["c1"], "pong")
    recorder.out(301, ["c1"], {"type": "later"})
    text = checked(raw_scenario(recorder.events, name="rec"))
    assert text == (
        "route /ws {\n"
        "  on connect {\n"
        '    send { type: "hello" }\n'
        "  }\n"
        "\n"
        '  on message where raw == "ping" {\n'
        '    send "pong"\n'
        "    wait 200ms\n"
        '    send { type: "later" }\n'
        "  }\n"
        "}\n"
        "\n"
        'test "rec: connection 1 to /ws" {\n'
        "  connect client to /ws\n"
        '  client expect { type: "hello" }\n'
        '  client send "ping"\n'
        '  client expect "pong"\n'
        '  client expect { type: "later" } within 800ms\n'
        "}\n"
    )
    passes_its_tests(text, tmp_path)


ECHO = """\
route /echo {
  on message where raw == "hello" {
    send "hello"
  }

  on message where msg == { "type": "ping", "seq": 1 } {
    send { type: "ping", seq: 1 }
  }

  on message binary {
    send raw
  }

  on message where msg == { "type": "ping", "seq": 2 } {
    send { type: "ping", seq: 2 }
    close 4000 "enough"
  }
}

test "echo: connection 1 to /echo" {
  connect client to /echo query { v: "1" } headers { authorization: "Bearer t" }
  client send "hello"
  client expect "hello"
  client send { type: "ping", seq: 1 }
  client expect { type: "ping", seq: 1 }
  client send binary "ab"
  client expect "ab"
  client close
}

test "echo: connection 2 to /echo" {
  connect client to /echo
  client send { type: "ping", seq: 1 }
  client expect { type: "ping", seq: 1 }
  client send { type: "ping", seq: 2 }
  client expect { type: "ping", seq: 2 }
}
"""


@pytest.mark.e2e
def test_raw_keeps_every_value_binary_echoes_the_handshake_and_the_server_s_close(
    tmp_path: Path,
) -> None:
    recorder = Recorder(proxy=True)
    recorder.connect(
        0,
        "c1",
        "/echo",
        query={"v": "1"},
        headers={"host": "x", "user-agent": "y", "authorization": "Bearer t"},
    )
    recorder.send(100, "c1", "hello")
    recorder.out(101, ["c1"], "hello")
    recorder.send(200, "c1", {"type": "ping", "seq": 1})
    recorder.out(201, ["c1"], {"type": "ping", "seq": 1})
    recorder.send(300, "c1", b"ab")
    recorder.out(301, ["c1"], b"ab")
    recorder.close(400, "c1", by="client")
    recorder.connect(500, "c2", "/echo")
    recorder.send(600, "c2", {"type": "ping", "seq": 1})
    recorder.out(601, ["c2"], {"type": "ping", "seq": 1})
    recorder.send(700, "c2", {"type": "ping", "seq": 2})
    recorder.out(701, ["c2"], {"type": "ping", "seq": 2})
    recorder.close(702, "c2", code=4000, reason="enough", by="server")
    text = checked(raw_scenario(recorder.events, name="echo"))
    assert text == ECHO
    passes_its_tests(text, tmp_path)


def test_raw_of_nothing_and_of_refusals_says_what_it_leaves_out() -> None:
    hints: list[str] = []
    assert raw_scenario([], name="rec", hints=hints) == {"routes": []}
    assert hints == ["the recording has no connection: there is nothing to replay"]
    recorder = Recorder()
    recorder.reject(0, "/private", code=4001, reason="No token", query={}, headers={})
    recorder.connect(10, "c1", "/private", query={"token": "t"})
    hints = []
    assert checked(raw_scenario(recorder.events, name="rec", hints=hints)) == (
        "route /private {}\n"
        "\n"
        'test "rec: connection 1 to /private" {\n'
        '  connect client to /private query { token: "t" }\n'
        "}\n"
    )
    assert hints == ["1 refused connection(s) are not replayed by --raw"]


def test_the_raw_example_of_the_docs_is_what_raw_writes() -> None:
    section = (ROOT / "docs" / "record.md").read_text(encoding="utf-8").split("\n## --raw\n")[1]
    journal, written = re.findall(r"```(?:json)?\n(.*?)```", section, re.S)
    events = [json.loads(line) for line in journal.splitlines()]
    assert render_scenario(raw_scenario(events, name="echo"), Path("echo.mock")) == written

"""Inference of a scenario from a recording (scenario_engine/recording): each rule pinned with
the `.mock` text it writes for a small conversation, built here as journal events, and the
recordings it must survive. Every scenario written here is checked as `check` would check it,
and its own tests are run against it as `scenario-engine test` runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import run_cli

from scenario_engine.errors import JournalError, UsageError
from scenario_engine.language.fmt import format_mock
from scenario_engine.language.loader import load_source
from scenario_engine.language.source import Source
from scenario_engine.recording import (
    infer_scenario,
    raw_scenario,
    read_journal,
    render_scenario,
)
from scenario_engine.runtime.journal import timestamp

#: The recordings' clock: 2026-11-25T19:50:00Z, in milliseconds.
START = 1_795_636_200_000


class Recorder:
    """Journal events as a served mock or the recording proxy writes them, at given times
    (milliseconds after START)."""

    def __init__(self, proxy: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.proxy = proxy

    def _add(self, at: float, event: str, **fields: Any) -> None:
        self.events.append(
            {
                "seq": len(self.events) + 1,
                "time": timestamp((START + at) / 1000),
                "event": event,
                **fields,
            }
        )

    def connect(
        self, at: float, connection: str, path: str, route: str | None = None, **fields: Any
    ) -> None:
        fields.setdefault("query", {})
        fields.setdefault("headers", {"host": "127.0.0.1:8765", "user-agent": "test"})
        self._add(
            at,
            "connect",
            connection=connection,
            route=None if self.proxy else (route or path),
            path=path,
            **fields,
        )

    def send(self, at: float, connection: str, message: Any) -> None:
        self._add(at, "in", connection=connection, **_payload(message))

    def out(self, at: float, connections: list[str], message: Any) -> None:
        if self.proxy:
            for i, connection in enumerate(connections):
                self._add(at + i * 0.5, "out", connections=[connection], **_payload(message))
        else:
            self._add(at, "out", connections=connections, **_payload(message))

    def close(self, at: float, connection: str, code: int = 1000, **fields: Any) -> None:
        self._add(at, "close", connection=connection, code=code, reason="", **fields)

    def reject(self, at: float, path: str, **fields: Any) -> None:
        self._add(at, "reject", path=path, **fields)


def _payload(message: Any) -> dict[str, str]:
    if isinstance(message, bytes):
        import base64

        return {"binary": base64.b64encode(message).decode()}
    if isinstance(message, str):
        return {"text": message}
    return {"text": json.dumps(message)}


def inferred(events: list[dict[str, Any]], name: str = "rec", **kwargs: Any) -> str:
    """The `.mock` text inferred from ``events``, after checking that it is valid, laid out as
    fmt lays it out, and that its YAML spelling is the same scenario."""
    document = infer_scenario(events, name=name, **kwargs)
    return _checked(document)


def _checked(document: Any) -> str:
    text = render_scenario(document, Path("out.mock"))
    loaded, errors = load_source(Source("out.mock", text))
    assert errors == [], "\n".join(e.format_text() for e in errors) + "\n" + text
    assert loaded is not None
    assert format_mock(text) == text
    yaml_text = render_scenario(document, Path("out.yaml"))
    from_yaml, errors = load_source(Source("out.yaml", yaml_text))
    assert errors == [] and from_yaml is not None
    assert from_yaml.ir == loaded.ir
    assert yaml.safe_load(yaml_text) == loaded.ir
    return text


def passes_its_tests(text: str, tmp_path: Path) -> None:
    path = tmp_path / "inferred.mock"
    path.write_text(text, encoding="utf-8")
    result = run_cli("test", path)
    assert result.status == 0, result.stdout + result.stderr + "\n" + text


# ---- reading journals ----------------------------------------------------------------------


def test_read_journal_reads_each_line_and_skips_blank_ones(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/echo")
    recorder.send(10, "c1", "hi")
    path = tmp_path / "journal.jsonl"
    path.write_text(
        "\n".join(json.dumps(e) for e in recorder.events[:1])
        + "\n\n"
        + json.dumps(recorder.events[1])
        + "\n",
        encoding="utf-8",
    )
    assert read_journal(path) == recorder.events


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "{not json",
            "not JSON (Expecting property name enclosed in double quotes at column 2); a "
            "journal has one JSON object per line, as serve --journal writes it",
        ),
        ("[1, 2]", "not an event: a JSON array, where an object with an 'event' is expected"),
        ('{"seq": 1}', "not an event: no 'event' naming what happened (connect, in, out, close…)"),
        ('{"event": "in"}', "'in' event without a 'time' such as \"2026-11-25T19:50:01.123Z\""),
        (
            '{"event": "in", "time": "2026-11-25T19:50:01.123Z"}',
            "'in' event: no 'connection'",
        ),
        (
            '{"event": "in", "time": "2026-11-25T19:50:01.123Z", "connection": "a"}',
            "'in' event: the message is a 'text' string or a 'binary' base64 string",
        ),
        (
            '{"event": "out", "time": "2026-11-25T19:50:01.123Z", "connections": "a", "text": "x"}',
            "'out' event: 'connections' is a list of strings, not \"a\"",
        ),
        (
            '{"event": "close", "time": "2026-11-25T19:50:01.123Z", "connection": "a", '
            '"code": 1000, "by": "nobody"}',
            "'close' event: 'by' is \"client\" or \"server\"",
        ),
        (
            '{"event": "reject", "time": "2026-11-25T19:50:01.123Z", "path": "/x"}',
            "'reject' event: neither a 'status' nor a 'code'",
        ),
    ],
)
def test_read_journal_names_the_line_that_is_not_an_event(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "journal.jsonl"
    good = '{"seq": 1, "time": "2026-11-25T19:50:01.123Z", "event": "reload"}'
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(JournalError) as caught:
        read_journal(path)
    assert str(caught.value) == f"{path}:2: {message}"
    assert isinstance(caught.value, UsageError)  # the command line prints it, exit 2


def test_read_journal_of_a_missing_file_or_binary_bytes(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No such file or directory"):
        read_journal(tmp_path / "missing.jsonl")
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b'{"event": "\xff"}\n')
    with pytest.raises(JournalError, match=r"binary.jsonl:1: not UTF-8 text"):
        read_journal(path)


# ---- the rules ---------------------------------------------------------------------------------


def test_a_reply_takes_values_from_the_request_and_constants_from_every_occurrence(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/ws")
    recorder.send(100, "c1", {"type": "ping", "seq": 1})
    recorder.out(101, ["c1"], {"type": "pong", "seq": 1, "ok": True})
    recorder.send(200, "c1", {"type": "ping", "seq": 2})
    recorder.out(201, ["c1"], {"type": "pong", "seq": 2, "ok": True})
    text = inferred(recorder.events)
    assert text == (
        "route /ws {\n"
        '  on message type "ping" {\n'
        '    send { type: "pong", seq: msg.seq, ok: true }\n'
        "  }\n"
        "}\n"
        "\n"
        'test "rec: client (ping)" {\n'
        "  connect client to /ws\n"
        '  client send { type: "ping", seq: 1 }\n'
        '  client expect { type: "pong", seq: 1, ok: true }\n'
        '  client send { type: "ping", seq: 2 }\n'
        '  client expect { type: "pong", seq: 2, ok: true }\n'
        "}\n"
    )
    passes_its_tests(text, tmp_path)


def test_raw_replays_the_recording(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.connect(0, "c1", "/ws")
    recorder.out(1, ["c1"], {"type": "hello"})
    recorder.send(100, "c1", "ping")
    recorder.out(101, ["c1"], "pong")
    recorder.out(301, ["c1"], {"type": "later"})
    document = raw_scenario(recorder.events, name="rec")
    text = _checked(document)
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


def test_render_writes_comments_first_and_refuses_other_suffixes() -> None:
    document = infer_scenario([], name="rec")
    assert render_scenario(document, Path("x.mock"), comments=["a\nb"]) == "# a\n# b\n"
    assert render_scenario(document, Path("x.yml")) == "routes: []\n"
    with pytest.raises(UsageError, match=r"ends in \.mock, \.yaml or \.yml"):
        render_scenario(document, Path("x.json"))

"""The command line: its output and its exit status, from ``main`` in this process; and the
real executables, whose exit status is the command's."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from support import SCENARIOS, line_of, run_cli, run_cli_process, run_process


def test_check_valid_directory_exits_0() -> None:
    result = run_cli("check", "scenarios")
    assert result.status == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok: 11 files, 10 routes, 43 tests"


def test_check_invalid_file_exits_1_with_compiler_style_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mock"
    bad.write_text('route /ws {\n  on connect {\n    sned "hi"\n  }\n}\n')
    result = run_cli("check", str(bad))
    assert result.status == 1
    assert result.stdout.startswith(f"{bad}:3:5: error: unknown action 'sned'\n")
    assert "    3 |     sned \"hi\"\n      |     ^^^^\n  hint: did you mean 'send'?" in (
        result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_check_missing_file_is_a_usage_error_exit_2(tmp_path: Path) -> None:
    result = run_cli("check", str(tmp_path / "nope.mock"))
    assert result.status == 2
    assert "no such file or directory" in result.stderr


def test_check_wrong_suffix_and_unknown_option_are_usage_errors(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert run_cli("check", str(other)).status == 2
    assert run_cli("check", "--frobnicate", "scenarios").status == 2
    assert run_cli().status == 2


def test_check_reports_errors_of_every_file_and_duplicates_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.mock").write_text("route /ws/x { }\n")
    (tmp_path / "b.yaml").write_text("routes:\n  - path: /ws/x\n")
    (tmp_path / "c.mock").write_text("route /ws/y { on connect { send nope } }\n")
    result = run_cli("check", str(tmp_path))
    assert result.status == 1
    assert f"{tmp_path / 'b.yaml'}:2:11: error: route '/ws/x' is already defined" in result.stdout
    assert f"{tmp_path / 'c.mock'}:1:33: error: unknown name 'nope'" in result.stdout
    assert result.stdout.rstrip().endswith("2 errors in 2 of 3 files")


def test_check_json_format(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mock"
    bad.write_text("route /ws { on connect { close 1006 } }\n")
    result = run_cli("check", "--format", "json", str(bad))
    assert result.status == 1
    report = json.loads(result.stdout)
    assert report["files"] == 1
    (error,) = report["errors"]
    assert error == {
        "file": str(bad),
        "line": 1,
        "column": 32,
        "endColumn": 36,
        "severity": "error",
        "message": "close code 1006 is not allowed here: use 1000–1003, 1007–1014 or "
        "3000–4999 (1004–1006 and 1015 never go on the wire)",
        "hint": None,
    }


def test_check_github_format_prints_annotations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mock"
    bad.write_text("route /ws { on connect { sned 1 } }\n")
    result = run_cli("check", "--format", "github", str(bad))
    assert result.status == 1
    assert result.stdout == (
        f"::error file={bad},line=1,col=26,endColumn=30::"
        "unknown action 'sned' (did you mean 'send'?)\n"
    )


def test_compile_prints_the_ir_and_the_source_map() -> None:
    result = run_cli("compile", "scenarios/private.mock")
    assert result.status == 0
    ir = json.loads(result.stdout)
    assert ir["routes"][0]["auth"][0] == {
        "reject": {"code": 4001, "reason": "No token provided", "unless": "query.token"}
    }
    mapped = json.loads(run_cli("compile", "--source-map", "scenarios/private.mock").stdout)
    assert mapped["ir"] == ir
    text = (SCENARIOS / "private.mock").read_text(encoding="utf-8")
    line = line_of(text, 'reject 4001 "No token provided"')
    assert mapped["sourceMap"]["/routes/0/auth/0"][:2] == [line, 5]


def test_compile_of_a_broken_file_exits_1_with_errors_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: [{path: /ws, heartbeet: 1s}]\n")
    result = run_cli("compile", str(bad))
    assert result.status == 1
    assert result.stdout == ""
    assert "unknown key 'heartbeet' in route" in result.stderr


def test_schema_prints_a_draft_2020_12_schema() -> None:
    result = run_cli("schema")
    assert result.status == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_convert_round_trips_every_scenario(tmp_path: Path) -> None:
    for scenario in sorted(SCENARIOS.glob("*.mock")):
        original = json.loads(run_cli("compile", str(scenario)).stdout)
        as_yaml = tmp_path / f"{scenario.stem}.yaml"
        assert run_cli("convert", str(scenario), "--to", "yaml", "-o", str(as_yaml)).status == 0
        assert yaml.safe_load(as_yaml.read_text()) == original
        back = tmp_path / f"{scenario.stem}.mock"
        converted = run_cli("convert", str(as_yaml), "--to", "mock")
        assert converted.status == 0
        back.write_text(converted.stdout)
        assert json.loads(run_cli("compile", str(back)).stdout) == original, scenario.name
        assert json.loads(run_cli("compile", str(as_yaml)).stdout) == original, scenario.name


def test_no_traceback_for_binary_garbage(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mock"
    garbage.write_bytes(bytes(range(256)) * 4)
    result = run_cli("check", str(garbage))
    assert result.status == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "error: file is not valid UTF-8 text" in result.stdout


def test_one_file_commands_refuse_directories_and_unwritable_outputs(tmp_path: Path) -> None:
    result = run_cli("compile", "scenarios")
    assert result.status == 2
    assert "a directory; this command takes one scenario file" in result.stderr
    result = run_cli(
        "convert",
        "scenarios/echo.mock",
        "--to",
        "yaml",
        "-o",
        str(tmp_path / "missing" / "echo.yaml"),
    )
    assert result.status == 2
    assert "No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_convert_of_a_valid_file_with_no_mock_spelling_is_an_error_of_the_file(
    tmp_path: Path,
) -> None:
    scenario = tmp_path / "quotes.yaml"
    scenario.write_text(
        "routes:\n  - path: /x\ntests:\n  - name: t\n    steps:\n"
        "      - {connect: a, path: /x}\n"
        "      - client: a\n"
        '        close: {code: 4000, reason: "${\\"\'\\" + \'\\"\'}"}\n'
    )
    assert run_cli("check", str(scenario)).status == 0
    result = run_cli("convert", str(scenario), "--to", "mock")
    assert result.status == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith(
        f"{scenario}:8:37: error: cannot convert to .mock: no .mock string literal can hold "
        "this reason"
    ), result.stderr
    assert "internal error" not in result.stderr


def test_convert_writes_a_test_close_reason_without_a_code_with_1000(tmp_path: Path) -> None:
    scenario = tmp_path / "close.yaml"
    scenario.write_text(
        "routes:\n  - path: /x\ntests:\n  - name: t\n    steps:\n"
        "      - {connect: a, path: /x}\n"
        "      - {client: a, close: {reason: bye}}\n"
    )
    result = run_cli("convert", str(scenario), "--to", "mock")
    assert result.status == 0, result.stderr
    assert '  a close 1000 "bye"\n' in result.stdout


def test_numeric_options_say_what_they_expect() -> None:
    result = run_cli("test", "scenarios", "--jobs", "abc")
    assert result.status == 2
    assert "argument --jobs: not a whole number: 'abc'" in result.stderr
    result = run_cli("test", "scenarios", "--timeout", "soon")
    assert result.status == 2
    assert "argument --timeout: not a number: 'soon'" in result.stderr


def test_the_executables_exit_with_the_commands_status(tmp_path: Path) -> None:
    """The console script and ``python -m scenario_engine`` print what ``main`` prints and exit
    with the status it returns, argparse's usage errors included."""
    try:
        (entry,) = metadata.distribution("scenario-engine").entry_points.select(
            group="console_scripts", name="scenario-engine"
        )
    except metadata.PackageNotFoundError:
        pytest.skip("scenario-engine is not installed here (pip install -e .)")
    assert entry.value == "scenario_engine.cli:main"
    script = Path(sys.executable).with_name("scenario-engine")
    bad = tmp_path / "bad.mock"
    bad.write_text('route /ws {\n  on connect {\n    sned "hi"\n  }\n}\n')
    result = run_process(script, "check", bad)
    assert (result.returncode, result.stdout) == (1, run_cli("check", bad).stdout)
    usage = run_cli_process()
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: scenario-engine"), usage.stderr


def test_check_reports_warnings_without_failing(tmp_path: Path) -> None:
    scenario = tmp_path / "w.mock"
    scenario.write_text(
        "route /ws {\n  on connect { every 1s as ticks { log 1 } }\n"
        "  on message { cancel tick }\n}\n"
    )
    result = run_cli("check", str(scenario))
    assert result.status == 0
    assert result.stdout.startswith(
        f"{scenario}:3:23: warning: no timer of this route is started as 'tick': this cancel "
        "stops nothing\n"
    )
    assert "  hint: did you mean 'ticks'?" in result.stdout
    assert result.stdout.rstrip().endswith("ok: 1 file, 1 route (1 warning)")
    (finding,) = json.loads(run_cli("check", "--format", "json", str(scenario)).stdout)["errors"]
    assert (finding["severity"], finding["line"]) == ("warning", 3)
    github = run_cli("check", "--format", "github", str(scenario)).stdout
    assert github.startswith(f"::warning file={scenario},line=3,col=23")

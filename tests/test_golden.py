"""Golden files: every example scenario → its IR; every broken scenario → its exact errors.

Run with UPDATE_GOLDEN=1 to rewrite the expected files after an intended change, then review
the diff like any other change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import SCENARIOS, run_cli

from scenario_engine.language.loader import load_file

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

scenario_files = sorted(p for p in SCENARIOS.iterdir() if p.suffix in (".mock", ".yaml"))
broken_files = sorted(p for p in (GOLDEN / "errors").iterdir() if p.suffix != ".expected")


def _compare(expected_path: Path, actual: str) -> None:
    if UPDATE:
        expected_path.write_text(actual, encoding="utf-8")
    assert expected_path.exists(), f"no golden file {expected_path}; run with UPDATE_GOLDEN=1"
    assert actual == expected_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", scenario_files, ids=lambda p: p.name)
def test_scenario_compiles_to_its_golden_ir(path: Path) -> None:
    loaded, errors = load_file(path)
    assert errors == []
    assert loaded is not None
    actual = json.dumps(loaded.ir, indent=2, ensure_ascii=False) + "\n"
    _compare(GOLDEN / "ir" / f"{path.stem}.json", actual)


def test_chat_yaml_and_chat_mock_compile_to_the_identical_ir() -> None:
    mock, _ = load_file(SCENARIOS / "chat.mock")
    yaml, _ = load_file(SCENARIOS / "chat.yaml")
    assert mock is not None and yaml is not None
    assert mock.ir == yaml.ir


@pytest.mark.parametrize("path", broken_files, ids=lambda p: p.name)
def test_broken_scenario_reports_its_golden_errors(path: Path) -> None:
    status, out, _ = run_cli("check", path.name, cwd=path.parent)
    assert status == 1, out
    _compare(path.with_name(path.name + ".expected"), out)

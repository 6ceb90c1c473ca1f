"""The code base stays ruff- and mypy-clean (the settings are in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import UNIT, run_process


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    return run_process(sys.executable, "-m", *command, timeout=300 * UNIT)


def test_ruff_is_clean() -> None:
    pytest.importorskip("ruff")
    result = run_tool("ruff", "check", "scenario_engine", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_in_ruff_format() -> None:
    pytest.importorskip("ruff")
    result = run_tool("ruff", "format", "--check", "scenario_engine", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    pytest.importorskip("mypy")
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr

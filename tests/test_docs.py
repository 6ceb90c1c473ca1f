"""The CI guide's workflow is valid YAML and every scenario-engine command in it is one the
command line accepts (options renamed or removed would otherwise rot there unnoticed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from scenario_engine.cli import _parser

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _workflows() -> list[dict[str, Any]]:
    text = (DOCS / "ci.md").read_text(encoding="utf-8")
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def _commands() -> list[str]:
    commands = []
    for workflow in _workflows():
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                script = step.get("run", "").replace("\\\n", " ")
                commands += [line.strip() for line in script.splitlines()
                             if line.strip().startswith("scenario-engine ")]
    return commands


def test_the_workflow_has_the_jobs_the_guide_describes() -> None:
    (workflow,) = _workflows()
    assert set(workflow["jobs"]) == {"test", "contract"}
    assert len(_commands()) == 4


@pytest.mark.parametrize("command", _commands())
def test_every_command_of_the_guide_is_accepted(command: str) -> None:
    words = shlex.split(command.split(">", 1)[0].split("#", 1)[0])
    args = _parser().parse_args(words[1:])  # exits (fails the test) on an unknown option
    assert args.command in {"check", "test", "serve"}

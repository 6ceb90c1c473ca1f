"""Examples in the docs stay true: the CI guide's workflow is valid YAML and every
scenario-engine command in it is one the command line accepts, and the scenario examples of the
language and testing pages check clean (renamed options or syntax would otherwise rot there
unnoticed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from scenario_engine.cli.main import build_parser
from scenario_engine.language.loader import load_source
from scenario_engine.language.source import Source

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
                commands += [
                    line.strip()
                    for line in script.splitlines()
                    if line.strip().startswith("scenario-engine ")
                ]
    return commands


def test_the_workflow_has_the_jobs_the_guide_describes() -> None:
    (workflow,) = _workflows()
    assert set(workflow["jobs"]) == {"test", "contract"}
    assert len(_commands()) == 4


@pytest.mark.parametrize("command", _commands())
def test_every_command_of_the_guide_is_accepted(command: str) -> None:
    words = shlex.split(command.split(">", 1)[0].split("#", 1)[0])
    args = build_parser().parse_args(words[1:])  # exits (fails the test) on an unknown option
    assert args.command in {"check", "test", "serve"}


def _scenario_snippets(name: str) -> list[tuple[str, str]]:
    """The scenario examples of a doc page: code blocks holding a test or a route, with the
    spelling they are written in."""
    text = (DOCS / name).read_text(encoding="utf-8")
    snippets = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang == "yaml" and "tests:" in body:
            snippets.append(("x.yaml", body))
        elif lang == "" and re.search(r"^(test|route) ", body, re.M):
            snippets.append(("x.mock", body))
    return snippets


@pytest.mark.parametrize(
    ("name", "text"), [*_scenario_snippets("testing.md"), *_scenario_snippets("language.md")]
)
def test_the_scenario_examples_of_the_docs_check_clean(name: str, text: str) -> None:
    _, errors = load_source(Source(name, text))
    assert errors == [], "\n".join(e.format_text() for e in errors)

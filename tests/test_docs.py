"""Examples in the docs stay true: the CI guide's workflow is valid YAML and every
scenario-engine command in it is one the command line accepts, the scenario examples of the
language and testing pages check clean (renamed options or syntax would otherwise rot there
unnoticed), the admin and scale-out pages' commands are accepted, and the admin API's curl
commands get past its guards, or are refused as the page says."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import BOUND, needs, start_mock

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
    ("name", "text"),
    [
        *_scenario_snippets("testing.md"),
        *_scenario_snippets("language.md"),
        *_scenario_snippets("record.md"),
    ],
)
def test_the_scenario_examples_of_the_docs_check_clean(name: str, text: str) -> None:
    _, errors = load_source(Source(name, text))
    assert errors == [], "\n".join(e.format_text() for e in errors)


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _section(name: str, title: str) -> str:
    """The text of one ``## `` section of a doc page."""
    return _page(name).split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _shell_lines(text: str) -> list[str]:
    """The lines of the ``sh`` blocks of a page's text, continued lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]


def test_every_command_of_the_record_page_is_accepted() -> None:
    lines = _shell_lines(_page("record.md"))
    commands = [line.split("#")[0] for line in lines if line.startswith("scenario-engine ")]
    assert len(commands) >= 6
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command in {"record", "check", "test"}


def test_every_command_of_the_admin_page_is_accepted() -> None:
    lines = _shell_lines(_page("admin.md"))
    commands = [line for line in lines if line.startswith("scenario-engine ")]
    assert len(commands) == 2
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command == "serve" and args.admin


@pytest.mark.e2e
@needs(shutil.which("curl") is None, "curl is not installed")
def test_the_documented_admin_requests_pass_the_guards_or_are_refused_as_documented() -> None:
    """Every curl command of the admin docs, run against ``serve scenarios/ --admin``: those of
    the security model are refused with the answers it shows, no other one is refused (an
    unknown connection's 404 is fine: the ids are examples)."""
    section = _section("admin.md", "Security model")
    examples = _shell_lines(section)
    served = start_mock("scenarios", extra=("--admin", "--quiet"))
    try:
        port = str(served.port)
        documented = [
            json.loads(line.replace("8765", port))
            for block in re.findall(r"```json\n(.*?)```", section, re.S)
            for line in block.splitlines()
        ]
        refused = []
        for command in _shell_lines(_page("admin.md") + _page("ci.md")):
            if not command.startswith("curl "):
                continue
            args = [arg.replace("8765", port) for arg in shlex.split(command)]
            result = subprocess.run(
                [*args, "-w", "\n%{http_code}"],
                capture_output=True,
                text=True,
                timeout=BOUND,
                check=True,
            )
            body, _, status = result.stdout.rpartition("\n")
            if command in examples:
                assert status in ("403", "415"), command
                refused.append(json.loads(body))
            else:
                assert status not in ("403", "415"), f"{command}: {body}"
        assert refused == documented
    finally:
        served.stop()


def test_every_command_of_the_scale_out_page_is_accepted() -> None:
    lines = _shell_lines(_page("scale-out.md"))
    commands = [line.split("#", 1)[0] for line in lines if line.startswith("scenario-engine ")]
    assert len(commands) >= 3  # two --backplane processes, and a --workers cluster at least
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command == "serve" and args.backplane is not None

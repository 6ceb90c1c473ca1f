"""The VS Code extension of editors/vscode: its manifest, the files it ships, its entry.

The manifest must point at files that exist once `sync.mjs` has copied the TextMate grammar and
the YAML schema in (npm install and vsce package run it), and extension.js must start
`scenario-engine lsp` over stdio with the configured command. The entry is loaded by Node with
stand-ins for the `vscode` API and vscode-languageclient (tests/node/vscode_extension.cjs).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, UNIT, needs, run_process

EXTENSION = ROOT / "editors" / "vscode"
TMGRAMMAR = ROOT / "editors" / "textmate" / "mock.tmLanguage.json"
SCHEMA = ROOT / "scenario_engine" / "language" / "scenario.schema.json"
NODE = Path(__file__).parent / "node"

needs_node = needs(shutil.which("node") is None, reason="needs node")


def _manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((EXTENSION / "package.json").read_text("utf-8"))
    return manifest


def test_the_manifest_contributes_the_language_grammar_schema_and_setting() -> None:
    manifest = _manifest()
    contributes = manifest["contributes"]
    [language] = contributes["languages"]
    assert language["id"] == "mock" and language["extensions"] == [".mock"]
    [grammar] = contributes["grammars"]
    assert grammar["language"] == "mock"
    assert grammar["scopeName"] == json.loads(TMGRAMMAR.read_text("utf-8"))["scopeName"]
    assert grammar["path"] == "./syntaxes/mock.tmLanguage.json"
    [yaml] = contributes["yamlValidation"]
    assert yaml["url"] == "./schemas/scenario.schema.json"
    assert "*.scenario.yaml" in yaml["fileMatch"]
    settings = contributes["configuration"]["properties"]
    assert settings["scenarioEngine.server.command"]["default"] == "scenario-engine"
    assert settings["scenarioEngine.server.args"]["default"] == ["lsp"]
    assert "vscode-languageclient" in manifest["dependencies"]
    assert (EXTENSION / manifest["main"]).is_file()
    assert manifest["scripts"]["vscode:prepublish"] == manifest["scripts"]["prepare"]
    # What sync.mjs makes is not committed.
    ignored = (EXTENSION / ".gitignore").read_text("utf-8").split()
    assert {"syntaxes/", "schemas/", "node_modules/"} <= set(ignored)


def test_every_setting_is_documented() -> None:
    readme = (EXTENSION / "README.md").read_text("utf-8")
    guide = (ROOT / "docs" / "editors.md").read_text("utf-8")
    for setting in _manifest()["contributes"]["configuration"]["properties"]:
        assert f"`{setting}`" in readme
        assert setting in guide


def test_the_language_configuration() -> None:
    config = json.loads((EXTENSION / "language-configuration.json").read_text("utf-8"))
    assert config["comments"] == {"lineComment": "#"}
    assert ["{", "}"] in config["brackets"]
    assert {"open": '"', "close": '"', "notIn": ["string", "comment"]} in config["autoClosingPairs"]
    increase = re.compile(config["indentationRules"]["increaseIndentPattern"])
    decrease = re.compile(config["indentationRules"]["decreaseIndentPattern"])
    assert increase.search("route /ws/chat {")
    assert increase.search('  on message type "join" {  # a comment')
    assert not increase.search('  send { type: "x" }')
    assert not increase.search("# a comment {")
    assert decrease.search("  }")


@pytest.mark.e2e
@needs_node
def test_sync_copies_what_the_manifest_points_at(tmp_path: Path) -> None:
    # The repository's layout, in a copy, so that the worktree is left as it is.
    extension = tmp_path / "editors" / "vscode"
    shutil.copytree(EXTENSION, extension, ignore=shutil.ignore_patterns("node_modules"))
    for source in (TMGRAMMAR, SCHEMA):
        target = tmp_path / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    result = run_process("node", extension / "sync.mjs", timeout=30 * UNIT)
    assert result.returncode == 0, result.stderr
    contributes = _manifest()["contributes"]
    grammar = extension / contributes["grammars"][0]["path"]
    schema = extension / contributes["yamlValidation"][0]["url"]
    language = extension / contributes["languages"][0]["configuration"]
    assert grammar.read_bytes() == TMGRAMMAR.read_bytes()
    assert schema.read_bytes() == SCHEMA.read_bytes()
    assert language.is_file()


def _activate(settings: dict[str, Any]) -> dict[str, Any]:
    result = run_process(
        "node",
        NODE / "vscode_extension.cjs",
        EXTENSION / "extension.js",
        json.dumps(settings),
        timeout=30 * UNIT,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.e2e
@needs_node
def test_the_extension_starts_scenario_engine_lsp_over_stdio() -> None:
    report = _activate({})
    client = report["clients"][0]
    assert client["serverOptions"]["command"] == "scenario-engine"
    assert client["serverOptions"]["args"] == ["lsp"]
    # stdio without `transport`: TransportKind.stdio would add `--stdio` to the arguments.
    assert "transport" not in client["serverOptions"]
    assert {"scheme": "file", "language": "mock"} in client["documentSelector"]
    # No file events: the server reads the open documents only, and logs each event it is
    # sent as one it ignores.
    assert client["synchronize"] is None
    assert report["commands"] == ["scenarioEngine.restartServer"]
    assert report["errors"] == []
    # A change of scenarioEngine.server.* restarts the server: stopped, started again.
    assert len(report["clients"]) == 2 and report["stopped"] == 2


@pytest.mark.e2e
@needs_node
def test_the_server_command_is_a_setting_and_a_failure_says_so() -> None:
    report = _activate(
        {"scenarioEngine.server.command": "/opt/se/bin/scenario-engine", "failStart": True}
    )
    assert report["clients"][0]["serverOptions"]["command"] == "/opt/se/bin/scenario-engine"
    assert report["errors"]
    assert "/opt/se/bin/scenario-engine lsp" in report["errors"][0]
    assert "scenarioEngine.server.command" in report["errors"][0]
    assert _activate({"scenarioEngine.server.enabled": False})["clients"] == []


@pytest.mark.e2e
@needs_node
def test_in_an_untrusted_workspace_the_server_waits_for_trust() -> None:
    manifest = _manifest()
    # Restricted Mode keeps the extension (its grammar) on: "limited", not unsupported.
    assert manifest["capabilities"]["untrustedWorkspaces"]["supported"] == "limited"
    report = _activate({"untrusted": True})
    assert report["clientsBeforeTrust"] == 0
    # Started once the workspace is trusted (then restarted by the configuration change).
    assert report["clients"][0]["serverOptions"]["command"] == "scenario-engine"
    assert report["errors"] == []

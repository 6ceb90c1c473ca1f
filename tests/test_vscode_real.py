"""The VS Code extension in a real VS Code, used as a user uses it.

"Opening scenarios/ in an editor with the extension shows colours, errors as you type,
completion and hover": this module proves it in VS Code itself, as code-server (VS Code's own
code, served to a browser) in headless Chromium driven by Selenium.

The extension is packaged as its README tells users to (vsce, from a copy of editors/vscode,
whose `vscode:prepublish` copies the grammar and the schema in) and installed with
`code-server --install-extension` into a fresh extensions directory. code-server serves on
127.0.0.1 with no authentication and telemetry off, its user data and home in a temporary
directory, `scenarioEngine.server.command` set to this virtualenv's `scenario-engine`, and
workspace trust on, as VS Code has it by default: the tests open a copy of scenarios/ and say
they trust its authors when asked, and one test opens another copy, which VS Code keeps in
Restricted Mode until the user trusts it. What the tests read is what a user sees: the colours
of the rendered tokens, the squiggle, the Problems count and panel, the suggest widget, the
breadcrumbs, the hover.

`tests/vscode/install` installs code-server and vsce (tests/vscode's lock file) and the
extension's vscode-languageclient (editors/vscode's); docs/editors.md says more.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from support import (
    BOUND,
    ROOT,
    SCENARIOS,
    SELENIUM_MISSING,
    UNIT,
    LogTail,
    needs,
    run_cli,
    selenium_chromium,
)

TOOLS = ROOT / "tests" / "vscode" / "node_modules" / ".bin"
CODE_SERVER = TOOLS / "code-server"
VSCE = TOOLS / "vsce"
EXTENSION = ROOT / "editors" / "vscode"
SCHEMA = ROOT / "scenario_engine" / "language" / "scenario.schema.json"
TMGRAMMAR = ROOT / "editors" / "textmate" / "mock.tmLanguage.json"

#: What the extension runs: this virtualenv's `scenario-engine`, as a user of a virtualenv sets.
SERVER_COMMAND = Path(sys.executable).parent / "scenario-engine"

MISSING = [
    f"{what} ({path.relative_to(ROOT)})"
    for what, path in (
        ("code-server", CODE_SERVER),
        ("vsce", VSCE),
        ("vscode-languageclient", EXTENSION / "node_modules" / "vscode-languageclient"),
    )
    if not path.exists()
]
pytestmark = [
    pytest.mark.e2e,
    needs(bool(MISSING), reason=f"{', '.join(MISSING)} not installed: run tests/vscode/install"),
    needs(SELENIUM_MISSING is not None, reason=f"VS Code in a browser: {SELENIUM_MISSING}"),
    needs(
        not SERVER_COMMAND.exists(),
        reason=f"no {SERVER_COMMAND} for the extension to run: pip install -e '.[test]'",
    ),
]

#: Starting code-server, and loading its workbench in the browser, take a few seconds each on
#: an idle machine; these bound them on a busy one.
START_BOUND = 30 * UNIT
#: The language server's first answers come after the extension host has started it.
SERVER_BOUND = 15 * UNIT


# ---- VS Code: the extension packaged and installed, code-server serving scenarios/ -----------


@pytest.fixture(scope="module")
def vsix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension packaged by vsce, from a copy of the repository's layout (the package's
    prepublish step copies the grammar and the schema from there), as users package it."""
    copy = tmp_path_factory.mktemp("repository")
    extension = copy / "editors" / "vscode"
    shutil.copytree(
        EXTENSION, extension, ignore=shutil.ignore_patterns("syntaxes", "schemas", "*.vsix")
    )
    for source in (TMGRAMMAR, SCHEMA):
        target = copy / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    package = copy / "scenario-engine.vsix"
    packaged = subprocess.run(
        [VSCE, "package", "--allow-missing-repository", "--skip-license", "--out", package],
        cwd=extension,
        capture_output=True,
        text=True,
        timeout=60 * UNIT,
    )
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    return package


@dataclass
class CodeServer:
    """A running code-server: its address, its user data."""

    url: str
    user_data: Path

    def workbench_url(self, folder: Path) -> str:
        return f"{self.url}?folder={quote(str(folder))}"

    def extension_output(self) -> str:
        """What the extension's "scenario-engine" output channel shows: the language client's
        messages and the server's stderr (where a server that does not start says why)."""
        channels = sorted(
            self.user_data.glob("logs/*/exthost*/output_logging_*/*scenario-engine.log")
        )
        return "".join(channel.read_text("utf-8", "replace") for channel in channels)


@pytest.fixture(scope="module")
def code_server(tmp_path_factory: pytest.TempPathFactory, vsix: Path) -> Iterator[CodeServer]:
    """code-server with the packaged extension installed."""
    base = tmp_path_factory.mktemp("code-server")
    home, user_data, extensions = base / "home", base / "user-data", base / "extensions"
    env = {
        **os.environ,
        # Everything code-server writes goes under the temporary directory.
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        # The language server runs this checkout's code, as the rest of the suite does.
        "PYTHONPATH": str(ROOT),
    }
    dirs = [
        "--config",
        str(base / "config.yaml"),
        "--user-data-dir",
        str(user_data),
        "--extensions-dir",
        str(extensions),
    ]
    installed = subprocess.run(
        [CODE_SERVER, *dirs, "--install-extension", vsix],
        capture_output=True,
        text=True,
        env=env,
        timeout=START_BOUND,
    )
    assert installed.returncode == 0 and "successfully installed" in installed.stdout, (
        installed.stdout + installed.stderr
    )
    (user_data / "User").mkdir(parents=True, exist_ok=True)
    (user_data / "User" / "settings.json").write_text(
        json.dumps(
            {
                "scenarioEngine.server.command": str(SERVER_COMMAND),
                "telemetry.telemetryLevel": "off",
                "workbench.startupEditor": "none",
                "extensions.autoCheckUpdates": False,
                "extensions.autoUpdate": False,
            }
        ),
        "utf-8",
    )
    process = subprocess.Popen(
        [
            CODE_SERVER,
            *dirs,
            "--bind-addr",
            "127.0.0.1:0",
            "--auth",
            "none",
            "--disable-telemetry",
            "--disable-update-check",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # Its own process group: code-server, its extension hosts and the language servers the
        # extension starts all end with it.
        start_new_session=True,
    )
    assert process.stdout is not None
    log = LogTail(process.stdout)
    try:
        listening = log.wait_for(r"HTTP server listening on http://127\.0\.0\.1:\d+/", START_BOUND)
        url = re.search(r"http://127\.0\.0\.1:\d+/", listening)
        assert url is not None
        yield CodeServer(url[0], user_data)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10 * UNIT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.join()


# ---- the workbench in a browser ----------------------------------------------------------------


class Workbench:
    """VS Code's workbench in a browser window, and what a user does in it: open a file from
    the Explorer, go to a line, type, hover. Every wait is on a condition of the page."""

    def __init__(self, driver: Any, server: CodeServer) -> None:
        self.driver = driver
        self.server = server

    def wait(self, condition: Callable[[], Any], what: str, within: float = BOUND) -> Any:
        """What ``condition`` returns once it is true; a failure after ``within`` seconds, with
        the extension's output (the first place to look when the language server is silent)."""
        from selenium.common.exceptions import StaleElementReferenceException

        deadline = time.monotonic() + within
        while True:
            try:
                found = condition()
            except StaleElementReferenceException:
                found = None
            if found:
                return found
            if time.monotonic() >= deadline:
                output = self.server.extension_output()[-3000:] or "(nothing)"
                pytest.fail(
                    f"VS Code did not show {what} within {within:.0f}s; the extension's output:"
                    f"\n{output}",
                    pytrace=False,
                )
            time.sleep(0.05 * UNIT)

    def load(self, folder: Path) -> None:
        """Open FOLDER in this window; wait for its files in the Explorer."""
        self.driver.get(self.server.workbench_url(folder))
        self.wait(
            lambda: self.explorer_row("chat.mock"), f"the Explorer with {folder}", START_BOUND
        )

    def visible(self, selector: str) -> list[Any]:
        return [e for e in self.driver.find_elements("css selector", selector) if e.is_displayed()]

    def keys(self, *keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(*keys).perform()

    def chord(self, *keys: str) -> None:
        """Modifier keys held down while the last key is pressed (Ctrl+G, Ctrl+Shift+M)."""
        from selenium.webdriver.common.action_chains import ActionChains

        *modifiers, key = keys
        actions = ActionChains(self.driver)
        for modifier in modifiers:
            actions.key_down(modifier)
        actions.send_keys(key)
        for modifier in reversed(modifiers):
            actions.key_up(modifier)
        actions.perform()

    def click_button(self, label: str) -> None:
        """Click the visible button that says LABEL (in a dialog, an editor, a banner)."""

        def click() -> bool:
            # Found and clicked in one go: the page may draw the button again in between
            # (a stale element is tried again).
            buttons = [b for b in self.visible(".monaco-button") if b.text == label]
            if buttons:
                buttons[0].click()
            return bool(buttons)

        self.wait(click, f"the button {label!r}")

    def explorer_row(self, name: str) -> Any:
        """The Explorer's row of the file NAME (an element), or None."""
        return self.driver.execute_script(
            """
            return [...document.querySelectorAll('.explorer-folders-view .monaco-list-row')]
              .find((row) => row.getAttribute('aria-label') === arguments[0]) ?? null;
            """,
            name,
        )

    def open(self, name: str) -> None:
        """Double-click the file in the Explorer; wait for its editor to show its first line."""
        from selenium.webdriver.common.action_chains import ActionChains

        row = self.wait(lambda: self.explorer_row(name), f"{name} in the Explorer")
        ActionChains(self.driver).double_click(row).perform()
        first_line = (SCENARIOS / name).read_text("utf-8").splitlines()[0]
        self.wait(
            lambda: self.active_tab() == name and self.lines()[:1] == [first_line],
            f"{name} open in an editor",
        )

    def explorer_problems(self, name: str) -> str:
        """The Explorer's decoration of a file: "1 problem in this file" (drawn as a red "1"
        after the name; the words are the label's, for screen readers), or "" if none."""
        return _decoration(
            self.explorer_row(name).find_element("css selector", ".monaco-icon-label")
        )

    def tab_problems(self) -> str:
        """The same decoration, on the active editor's tab."""
        [label] = self.visible(".tab.active .monaco-icon-label")
        return _decoration(label)

    def active_tab(self) -> str | None:
        tabs = self.visible(".tab.active")
        return tabs[0].get_attribute("aria-label") if tabs else None

    def lines(self) -> list[str]:
        """The rendered lines of the active editor, top to bottom (the editor reuses its line
        elements, so their order in the page is not the order on screen)."""
        lines: list[str] = self.driver.execute_script(
            """
            const editor = document.querySelector('.editor-instance .monaco-editor');
            if (!editor) return [];
            return [...editor.querySelectorAll('.view-line')]
              .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
              .map((line) => line.textContent.replaceAll('\\u00a0', ' '));
            """
        )
        return lines

    def go_to_line(self, line: int) -> None:
        from selenium.webdriver.common.keys import Keys

        self.chord(Keys.CONTROL, "g")
        self.wait(lambda: self.visible(".quick-input-widget input"), "the Go to Line box")
        self.keys(str(line), Keys.ENTER)
        self.wait(lambda: f"Ln {line}," in self.status("status.editor.selection"), f"line {line}")

    def breadcrumbs(self) -> list[str]:
        """The path above the editor: the file, then the outline's symbols around the cursor
        (which the language server provides)."""
        return [item.text for item in self.visible(".breadcrumbs-control .monaco-breadcrumb-item")]

    def status(self, item: str) -> str:
        """The text of a status bar item (its id: status.problems, status.editor.mode…)."""
        found = self.driver.find_elements("css selector", f'[id="{item}"]')
        return " ".join(found[0].text.split()) if found else ""

    def error_count(self) -> int:
        """The number of errors in the status bar's Problems item."""
        return int(self.status("status.problems").split()[0])

    def token_colours(self) -> tuple[str, list[tuple[str, str]]]:
        """The colour of plain text (the editor's foreground), and every rendered token of
        the active editor's visible lines with its colour, as the browser computed them."""
        plain, tokens = self.driver.execute_script(
            """
            const editor = document.querySelector('.editor-instance .monaco-editor');
            const spans = [...editor.querySelectorAll('.view-line span[class^="mtk"]')];
            return [
              getComputedStyle(editor.querySelector('.view-lines')).color,
              spans.map((span) => [
                span.textContent.replaceAll('\\u00a0', ' '), getComputedStyle(span).color]),
            ];
            """
        )
        return plain, [(text, colour) for text, colour in tokens]

    def token(self, text: str) -> Any:
        """The first rendered token of the active editor that is TEXT (an element), or None."""
        return self.driver.execute_script(
            """
            const editor = document.querySelector('.editor-instance .monaco-editor');
            return [...editor.querySelectorAll('.view-line span[class^="mtk"]')]
              .find((span) => span.textContent === arguments[0]) ?? null;
            """,
            text,
        )


@pytest.fixture(scope="module")
def workbench(
    code_server: CodeServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workbench]:
    """A copy of scenarios/ open in VS Code in headless Chromium, its authors trusted."""
    folder = tmp_path_factory.mktemp("trusted") / "scenarios"
    shutil.copytree(SCENARIOS, folder)
    driver = selenium_chromium()
    try:
        driver.set_page_load_timeout(START_BOUND)
        workbench = Workbench(driver, code_server)
        workbench.load(folder)
        workbench.click_button("Yes, I trust the authors")
        yield workbench
    finally:
        driver.quit()


def _decoration(label: Any) -> str:
    """What an icon label's accessible name adds after the file's path."""
    _, _, decoration = (label.get_attribute("aria-label") or "").partition(" • ")
    return decoration


def line_number(name: str, text: str) -> int:
    """The number of the first line of scenarios/NAME that starts with TEXT (after indent)."""
    lines = (SCENARIOS / name).read_text("utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.lstrip().startswith(text))


# ---- what the user sees ------------------------------------------------------------------------


def assert_coloured_by_the_grammar(workbench: Workbench) -> None:
    """chat.mock, opened, drawn in the colours of the grammar's scopes."""

    def colour_of(text: str, tokens: list[tuple[str, str]]) -> str | None:
        """The colour of the first token that is TEXT, or starts with it if it ends in '…'
        (the editor may render a long token as several spans of one colour)."""
        if text.endswith("…"):
            return next((c for t, c in tokens if t.startswith(text[:-1])), None)
        return next((c for t, c in tokens if t == text), None)

    def tokenized() -> tuple[str, list[tuple[str, str]]] | None:
        plain, tokens = workbench.token_colours()
        return (plain, tokens) if colour_of("route", tokens) not in (None, plain) else None

    workbench.open("chat.mock")
    # The language's name (the first of its aliases) in the status bar: the extension's.
    workbench.wait(
        lambda: workbench.status("status.editor.mode") == "Scenario mock", "the mock language"
    )
    # The first paint shows each line as one plain token; the grammar's tokens come after.
    plain, tokens = workbench.wait(tokenized, "route coloured")
    keywords = {
        word: colour_of(word, tokens) for word in ("route", "on", "send", "broadcast", "join")
    }
    comment = colour_of("# on close…", tokens)
    string = colour_of('"connected"', tokens)
    path = colour_of("/ws/chat", tokens)
    for word, colour in keywords.items():
        assert colour not in (None, plain), f"{word!r} is {colour}, like plain text ({plain})"
    assert None not in (comment, string, path)
    assert len({plain, keywords["route"], comment, string}) == 4, (plain, keywords, comment, string)
    assert path != plain
    # Between the tokens the grammar names, text is plain (`: ` between a key and its value):
    # the colours above are the grammar's rules, not one colour for everything.
    assert colour_of(": ", tokens) == plain


def wait_for_the_outline(workbench: Workbench, name: str, line: str, symbol: str) -> None:
    """Put the cursor on the line of NAME that starts with LINE, and wait for the language
    server's outline to show SYMBOL around it in the breadcrumbs: the server is answering."""
    workbench.go_to_line(line_number(name, line))
    workbench.wait(
        lambda: symbol in workbench.breadcrumbs(), f"{symbol} in the breadcrumbs", SERVER_BOUND
    )


#: A misspelt action, typed into rooms.mock after the line that starts with AFTER.
MISSPELT, AFTER = 'brodcast { type: "left" } to msg.room', "leave msg.room"


def type_a_misspelt_action(workbench: Workbench) -> None:
    """Type MISSPELT on a new line of rooms.mock (never saved), and wait for the squiggle."""
    from selenium.webdriver.common.keys import Keys

    workbench.open("rooms.mock")
    assert workbench.explorer_problems("rooms.mock") == "", "no problem before the typing"
    after = line_number("rooms.mock", AFTER)
    workbench.go_to_line(after)
    workbench.keys(Keys.END, Keys.ENTER, MISSPELT)
    workbench.keys(Keys.ESCAPE)  # whatever suggestion the typing opened
    assert workbench.lines()[after] == "    " + MISSPELT, "the typed line, as the editor has it"
    workbench.wait(
        lambda: workbench.visible(".editor-instance .squiggly-error"), "a squiggle", SERVER_BOUND
    )


def test_mock_files_are_coloured_by_the_grammar(workbench: Workbench) -> None:
    assert_coloured_by_the_grammar(workbench)


def test_errors_appear_as_you_type(workbench: Workbench, tmp_path: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    # What `scenario-engine check` says of the text that the typing makes.
    edited = (SCENARIOS / "rooms.mock").read_text("utf-8").splitlines()
    edited.insert(line_number("rooms.mock", AFTER), "    " + MISSPELT)
    file = tmp_path / "rooms.mock"
    file.write_text("\n".join(edited) + "\n", "utf-8")
    [error] = json.loads(run_cli("check", "--format", "json", file).stdout)["errors"]
    assert error["message"] == "unknown action 'brodcast'"
    assert error["hint"] == "did you mean 'broadcast'?"

    type_a_misspelt_action(workbench)
    # The file's problem count, in the Explorer and on the editor's tab; the status bar's.
    one = "1 problem in this file"
    workbench.wait(lambda: workbench.explorer_problems("rooms.mock") == one, one)
    assert workbench.tab_problems() == one
    assert workbench.error_count() >= 1
    # The Problems panel: check's message, position and hint.
    workbench.chord(Keys.CONTROL, Keys.SHIFT, "m")
    row = workbench.wait(
        lambda: [
            r.text
            for r in workbench.visible(".markers-panel .monaco-list-row")
            if error["message"] in r.text
        ],
        "the problem in the Problems panel",
    )[0]
    assert f"[Ln {error['line']}, Col {error['column']}]" in row
    assert f"hint: {error['hint']}" in row
    assert "scenario-engine" in row  # the diagnostic's source


def test_completion_after_on_lists_the_events(workbench: Workbench) -> None:
    from selenium.webdriver.common.keys import Keys

    workbench.open("basic.mock")
    # Before the server answers, VS Code would suggest the file's words instead.
    wait_for_the_outline(workbench, "basic.mock", "route /ws/basic", "/ws/basic")
    workbench.keys(Keys.END, Keys.ENTER, "on ")
    workbench.chord(Keys.CONTROL, " ")
    labels = workbench.wait(
        lambda: {
            r.find_element("css selector", ".label-name").text
            for r in workbench.visible(".suggest-widget .monaco-list-row")
        },
        "the suggestions",
        SERVER_BOUND,
    )
    workbench.keys(Keys.ESCAPE)
    assert {"connect", "message", "close", "error"} <= labels, labels
    assert "send" not in labels and "route" not in labels, "only events after 'on'"


def assert_hover_shows_the_schema_description(workbench: Workbench) -> None:
    """The mouse over `heartbeat` in game.mock: the schema's title and description of it."""
    from selenium.webdriver.common.action_chains import ActionChains

    heartbeat = json.loads(SCHEMA.read_text("utf-8"))["$defs"]["route"]["properties"]["heartbeat"]
    workbench.open("game.mock")
    # A hover is asked for once, when the mouse stops: the server must be answering by then.
    wait_for_the_outline(workbench, "game.mock", "heartbeat", "/ws/game")
    word = workbench.wait(lambda: workbench.token("heartbeat"), "heartbeat in game.mock")
    ActionChains(workbench.driver).move_to_element(word).perform()
    hover = workbench.wait(
        lambda: [h.text for h in workbench.visible(".monaco-hover") if "heartbeat" in h.text],
        "the hover of heartbeat",
        SERVER_BOUND,
    )[0]
    assert heartbeat["title"] in hover
    assert heartbeat["description"] in hover


def test_hover_shows_the_schema_description(workbench: Workbench) -> None:
    assert_hover_shows_the_schema_description(workbench)


def test_an_untrusted_folder_is_coloured_and_served_once_trusted(
    workbench: Workbench, tmp_path: Path
) -> None:
    """In Restricted Mode (a folder whose authors the user has not trusted) the extension
    highlights; its language server, a program, starts when the user trusts the folder: its
    outline appears in the breadcrumbs. (That it does not start before is
    tests/test_vscode_extension.py's to check.)"""
    folder = tmp_path / "scenarios"
    shutil.copytree(SCENARIOS, folder)
    driver = workbench.driver
    shared_window = driver.current_window_handle
    driver.switch_to.new_window("window")
    try:
        untrusted = Workbench(driver, workbench.server)
        untrusted.load(folder)
        # VS Code asked about trust for the first folder (the shared window's, which the
        # user trusted); this one opens in Restricted Mode.
        untrusted.wait(
            lambda: untrusted.status("status.workspaceTrust") == "Restricted Mode",
            "Restricted Mode",
        )
        assert_coloured_by_the_grammar(untrusted)
        driver.find_element("css selector", '[id="status.workspaceTrust"]').click()
        untrusted.click_button("Trust")
        untrusted.wait(lambda: untrusted.status("status.workspaceTrust") == "", "trust")
        untrusted.open("chat.mock")  # back from the Workspace Trust editor
        wait_for_the_outline(untrusted, "chat.mock", "route /ws/chat", "/ws/chat")
    finally:
        driver.close()
        driver.switch_to.window(shared_window)

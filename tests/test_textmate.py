"""The TextMate grammar of .mock files (editors/textmate), checked against the language.

The keyword list comes from grammar/scenario.lark (scripts/textmate-keywords), so a keyword added
to the language without the TextMate grammar fails here. The example scenarios are tokenized by
a real TextMate tokenizer, VS Code's own (vscode-textmate with vscode-oniguruma's WASM), through
tests/node/textmate.mjs; the lark parser of the language says where each keyword, string,
number, duration and path is, and the TextMate scopes must agree. Those tests need node and the
packages of tests/node (`npm ci --prefix tests/node`).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from lark import Lark, Token
from support import ROOT, UNIT, needs, run_process

TMGRAMMAR = ROOT / "editors" / "textmate" / "mock.tmLanguage.json"
SCRIPT = ROOT / "scripts" / "textmate-keywords"
NODE_DIR = Path(__file__).parent / "node"
EXAMPLES = sorted((ROOT / "scenarios").glob("*.mock"))

needs_node = needs(
    shutil.which("node") is None
    or not (NODE_DIR / "node_modules" / "vscode-textmate").exists()
    or not (NODE_DIR / "node_modules" / "vscode-oniguruma").exists(),
    reason="needs node and `npm ci --prefix tests/node` (vscode-textmate, vscode-oniguruma)",
)


def _script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("textmate_keywords", str(SCRIPT))
    spec = importlib.util.spec_from_loader("textmate_keywords", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


KEYWORDS: list[str] = _script().grammar_keywords()


def test_the_grammar_is_json_for_mock_files() -> None:
    grammar = json.loads(TMGRAMMAR.read_text(encoding="utf-8"))
    assert grammar["scopeName"] == "source.mock"
    assert grammar["fileTypes"] == ["mock"]
    # Every include points at a rule of the repository.
    repository = grammar["repository"]
    includes = re.findall(r'"include": "#([^"]+)"', TMGRAMMAR.read_text(encoding="utf-8"))
    assert includes and all(name in repository for name in includes)


def test_the_bundle_declares_the_grammar_for_mock_files() -> None:
    # editors/textmate is a bundle in VS Code's layout, which JetBrains' TextMate Bundles import.
    bundle = json.loads((TMGRAMMAR.parent / "package.json").read_text(encoding="utf-8"))
    [language] = bundle["contributes"]["languages"]
    [grammar] = bundle["contributes"]["grammars"]
    assert language["extensions"] == [".mock"] and grammar["language"] == language["id"]
    assert (TMGRAMMAR.parent / grammar["path"]).resolve() == TMGRAMMAR
    assert grammar["scopeName"] == "source.mock"


def test_the_keywords_come_from_the_lark_grammar() -> None:
    # A few of every construct, so that the extraction itself cannot silently find nothing.
    for word in (
        "route",
        "heartbeat",
        "on",
        "connect",
        "message",
        "send",
        "auth",
        "accept",
        "test",
        "expect",
        "every",
        "after",
        "let",
        "state",
        "if",
        "else",
        "in",
        "true",
    ):
        assert word in KEYWORDS
    assert "NAME" not in KEYWORDS and "{" not in KEYWORDS


def test_the_textmate_grammar_covers_every_keyword() -> None:
    result = run_process(sys.executable, SCRIPT, "--check")
    assert result.returncode == 0, result.stderr
    assert f"all {len(KEYWORDS)} keywords" in result.stdout


def test_a_keyword_missing_from_the_textmate_grammar_is_caught(tmp_path: Path) -> None:
    script = _script()
    text = TMGRAMMAR.read_text(encoding="utf-8").replace("heartbeat|", "")
    assert "heartbeat" not in text
    (tmp_path / "mock.tmLanguage.json").write_text(text, encoding="utf-8")
    covered = script.textmate_keywords(tmp_path / "mock.tmLanguage.json")
    assert [k for k in KEYWORDS if k not in covered] == ["heartbeat"]
    lark = tmp_path / "scenario.lark"
    lark.write_text(
        (ROOT / "grammar" / "scenario.lark")
        .read_text(encoding="utf-8")
        .replace('drop: "drop"', 'drop: "drop" | "frobnicate"'),
        encoding="utf-8",
    )
    assert "frobnicate" in script.grammar_keywords(lark)
    assert "frobnicate" not in script.textmate_keywords()


# --- the examples through the real tokenizer ---------------------------------------------------


@pytest.fixture(scope="module")
def tokenized() -> dict[str, Any]:
    result = run_process("node", NODE_DIR / "textmate.mjs", TMGRAMMAR, *EXAMPLES, timeout=60 * UNIT)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@functools.cache
def _parser() -> Lark:
    return Lark(
        (ROOT / "grammar" / "scenario.lark").read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        keep_all_tokens=True,
    )


def _lark_tokens(path: Path) -> Iterator[Token]:
    """Every token of a file as the language's own lexer sees it (keywords where it expects
    them, NAME elsewhere)."""
    tree = _parser().parse(path.read_text(encoding="utf-8"))
    yield from tree.scan_values(lambda value: isinstance(value, Token))


def _scopes(report: dict[str, Any], path: Path, token: Token) -> list[list[str]]:
    """The scopes of every TextMate token over the span of a lark token (on its line)."""
    line = report["files"][str(path)][token.line - 1]
    start = token.column - 1
    end = start + len(token.value)
    return [t["scopes"] for t in line["tokens"] if t["start"] < end and t["end"] > start]


def _has(scopes: list[str], *prefixes: str) -> bool:
    return any(scope.startswith(prefixes) for scope in scopes)


@pytest.mark.e2e
@needs_node
def test_the_tokenizer_loads_the_grammar(tokenized: dict[str, Any]) -> None:
    assert tokenized["grammar"]["scopeName"] == "source.mock"
    assert sorted(tokenized["files"]) == sorted(str(p) for p in EXAMPLES)


@pytest.mark.e2e
@needs_node
def test_every_keyword_of_the_examples_is_a_keyword(tokenized: dict[str, Any]) -> None:
    seen: set[str] = set()
    wrong: list[str] = []
    for path in EXAMPLES:
        for token in _lark_tokens(path):
            spans = _scopes(tokenized, path, token)
            where = f"{path.name}:{token.line}:{token.column} {token.value!r}"
            if token.type != "NAME" and token.value in KEYWORDS:
                seen.add(token.value)
                expected = (
                    ("constant.language",)
                    if token.value in ("true", "false", "null")
                    else ("keyword.",)
                )
                if not all(_has(scopes, *expected) for scopes in spans):
                    wrong.append(f"{where} is {spans}, not {expected[0]}")
            elif token.type == "NAME" and any(_has(s, "keyword.") for s in spans):
                # `msg.type`, `error.message`, `{ type: … }`: names, not keywords.
                wrong.append(f"{where} is a name, highlighted as a keyword: {spans}")
    assert not wrong, "\n".join(wrong)
    # The examples use most of the language: the check above is not vacuous.
    assert len(seen) > len(KEYWORDS) // 2, sorted(set(KEYWORDS) - seen)


@pytest.mark.e2e
@needs_node
def test_strings_numbers_durations_paths_get_their_scopes(tokenized: dict[str, Any]) -> None:
    expected = {
        "STRING": "string.quoted.",
        "NUMBER": "constant.numeric",
        "QUANTITY": "constant.numeric",
        "PATH": "string.unquoted.path",
    }
    counts = dict.fromkeys(expected, 0)
    wrong: list[str] = []
    for path in EXAMPLES:
        for token in _lark_tokens(path):
            if token.type not in expected:
                continue
            counts[token.type] += 1
            spans = _scopes(tokenized, path, token)
            if not spans or not all(_has(s, expected[token.type]) for s in spans):
                wrong.append(f"{path.name}:{token.line}:{token.column} {token.value!r}: {spans}")
    assert not wrong, "\n".join(wrong)
    assert all(counts.values()), counts


@pytest.mark.e2e
@needs_node
def test_comments_are_comments(tokenized: dict[str, Any]) -> None:
    # A comment starts at the first # outside a string (the lexer's COMMENT terminal).
    lexeme = re.compile(r"\"([^\"\\\n]|\\.)*\"|'([^'\\\n]|\\.)*'|#")
    comments = 0
    for path in EXAMPLES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, source in enumerate(lines, 1):
            start = next((m.start() for m in lexeme.finditer(source) if m[0] == "#"), None)
            for token in tokenized["files"][str(path)][number - 1]["tokens"]:
                if not token["text"].strip():
                    continue
                in_comment = start is not None and token["start"] >= start
                assert _has(token["scopes"], "comment.line.number-sign") == in_comment, (
                    f"{path.name}:{number}: {token}"
                )
            comments += start is not None
    assert comments


@pytest.mark.e2e
@needs_node
def test_templates_in_strings_are_embedded_expressions(tokenized: dict[str, Any]) -> None:
    templates = 0
    for path in EXAMPLES:
        for token in _lark_tokens(path):
            if token.type != "STRING" or not re.search(r"(?<!\\)\$\{", token.value):
                continue
            spans = [
                t
                for t in tokenized["files"][str(path)][token.line - 1]["tokens"]
                if t["start"] >= token.column - 1
                and t["end"] <= token.column - 1 + len(token.value)
            ]
            begins = [t for t in spans if t["text"] == "${"]
            assert begins, (path.name, token.line, token.value)
            for begin in begins:
                templates += 1
                assert _has(begin["scopes"], "punctuation.definition.template-expression.begin")
            inside = [t for t in spans if _has(t["scopes"], "meta.embedded.line")]
            assert inside, (path.name, token.line, token.value)
            # The expression is highlighted as one: `msg.id` is a variable and a property.
            for t in inside:
                if t["text"] in ("msg", "conn", "state", "session"):
                    assert _has(t["scopes"], "variable.language"), t
    assert templates >= 5


@pytest.mark.e2e
@needs_node
def test_escapes_in_strings(tokenized: dict[str, Any]) -> None:
    escapes = [
        t
        for lines in tokenized["files"].values()
        for line in lines
        for t in line["tokens"]
        if t["text"].startswith("\\")
    ]
    assert escapes
    assert all(_has(t["scopes"], "constant.character.escape") for t in escapes), escapes


@pytest.mark.e2e
@needs_node
def test_no_line_ends_inside_a_string_or_a_template(tokenized: dict[str, Any]) -> None:
    base = tokenized["baseDepth"]
    for name, lines in tokenized["files"].items():
        for line in lines:
            assert line["depth"] == base, f"{name}:{line['line']} ends inside a begin/end rule"
            for token in line["tokens"]:
                assert not _has(token["scopes"], "invalid"), f"{name}:{line['line']}: {token}"


@pytest.mark.e2e
@needs_node
def test_a_runaway_string_is_seen(tmp_path: Path) -> None:
    # The checks above can fail: an unterminated string is marked at the end of its line, and a
    # string whose last character escapes the line end runs on into the next line.
    broken = tmp_path / "broken.mock"
    broken.write_text(
        'route /x {\n  on connect { send "unterminated }\n  log "a\\\n}\n', encoding="utf-8"
    )
    result = run_process("node", NODE_DIR / "textmate.mjs", TMGRAMMAR, broken, timeout=60 * UNIT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    lines = report["files"][str(broken)]
    assert lines[0]["depth"] == report["baseDepth"]
    assert any(_has(t["scopes"], "invalid.illegal") for t in lines[1]["tokens"])
    assert lines[2]["depth"] > report["baseDepth"]

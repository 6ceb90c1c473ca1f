"""scenario-engine lsp end to end: a real LSP client (pytest-lsp) launching
``python -m scenario_engine lsp`` over stdio, one server for the whole module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest_lsp = pytest.importorskip("pytest_lsp")
from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402
from support import ROOT, UNIT  # noqa: E402

pytestmark = pytest.mark.e2e
#: The tests share the module's server, hence its event loop.
on_the_server = pytest.mark.asyncio(loop_scope="module")

MOCK = """\
let limit = { max: 3 }
route /ws/x {
  heartbeat 30s

  on connect {
    join "lobby"
    send { id: conn.id, n: limit.max, at: now() }
  }

  on message {
    broadcast { text: msg.text } to "lobby"
  }
}

test "a client connects" {
  connect alice to /ws/x
  alice expect { id: any, n: 3, at: any }
}
"""


@pytest_lsp.fixture(
    scope="module",
    loop_scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "scenario_engine", "lsp"],
        server_env={"PYTHONPATH": str(ROOT)},
    ),
)
async def client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=ROOT.as_uri())
    )
    yield
    await lsp_client.shutdown_session()


def position_of(text: str, marker: str, plus: int = 0) -> types.Position:
    offset = text.index(marker) + plus
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


async def opened(client: LanguageClient, name: str, text: str) -> str:
    uri = (ROOT / "tests" / "lsp-scratch" / name).as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="mock", version=1, text=text)
        )
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return uri


async def diagnostics_of(client: LanguageClient, uri: str) -> list[types.Diagnostic]:
    while uri not in client.diagnostics:
        await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return client.diagnostics[uri]


@on_the_server
async def test_a_misspelt_action_is_reported_over_the_whole_word(client: LanguageClient) -> None:
    text = MOCK.replace("broadcast", "brodcast")
    uri = await opened(client, "misspelt.mock", text)
    (found,) = await diagnostics_of(client, uri)
    start = position_of(text, "brodcast")
    assert found.range == types.Range(
        start=start, end=types.Position(line=start.line, character=start.character + 8)
    )
    assert found.message == "unknown action 'brodcast'\nhint: did you mean 'broadcast'?"
    assert found.severity == types.DiagnosticSeverity.Error


@on_the_server
async def test_a_change_is_checked_again(client: LanguageClient) -> None:
    uri = await opened(client, "changed.mock", MOCK)
    assert list(await diagnostics_of(client, uri)) == []
    text = MOCK.replace("heartbeat 30s", "heartbeat 30x")
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    (found,) = client.diagnostics[uri]
    assert found.message == "'heartbeat' must be a duration such as '30s' or '500ms', not '30x'"
    assert found.range.start == position_of(text, "30x")


@on_the_server
async def test_a_yaml_scenario_is_checked(client: LanguageClient) -> None:
    text = "routes:\n  - path: /a\n    heartbat: 10s\n"
    uri = await opened(client, "scenario.yaml", text)
    (found,) = await diagnostics_of(client, uri)
    assert found.message == "unknown key 'heartbat' in route\nhint: did you mean 'heartbeat'?"
    assert found.range == types.Range(
        start=types.Position(line=2, character=4), end=types.Position(line=2, character=12)
    )


async def complete(client: LanguageClient, uri: str, position: types.Position) -> list[str]:
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=position
        )
    )
    assert isinstance(result, types.CompletionList)
    return [item.label for item in result.items]


@on_the_server
async def test_completion_knows_where_the_cursor_is(client: LanguageClient) -> None:
    text = MOCK.replace("  on message {", "  on \n  on message {").replace(
        '    join "lobby"', '    join "lobby"\n    \n'
    )
    uri = await opened(client, "complete.mock", text)
    after_on = position_of(text, "  on \n", 5)
    assert await complete(client, uri, after_on) == ["connect", "message", "close", "error"]
    in_route = position_of(text, "\n\n  on connect", 1)
    labels = await complete(client, uri, in_route)
    assert {"heartbeat", "max", "origins", "on", "auth", "every"} <= set(labels)
    in_handler = position_of(text, 'join "lobby"\n    \n', 17)
    labels = await complete(client, uri, in_handler)
    assert {"send", "broadcast", "join", "close", "every", "let"} <= set(labels)
    conn = position_of(text, "conn.id", 5)
    assert await complete(client, uri, conn) == [
        "id",
        "rooms",
        "ip",
        "path",
        "query",
        "headers",
        "params",
        "subprotocol",
    ]
    expression = position_of(text, "now()")
    labels = await complete(client, uri, expression)
    assert {"now", "len", "uuid", "conn", "session", "limit"} <= set(labels)
    assert "msg" not in labels  # on connect has no message


async def hover_text(client: LanguageClient, uri: str, position: types.Position) -> str:
    result = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=position)
    )
    assert result is not None
    assert isinstance(result.contents, types.MarkupContent)
    return result.contents.value


@on_the_server
async def test_hover(client: LanguageClient) -> None:
    uri = await opened(client, "hover.mock", MOCK)
    heartbeat = await hover_text(client, uri, position_of(MOCK, "heartbeat", 2))
    assert heartbeat.startswith("**heartbeat** — Heartbeat")
    assert "Ping each client" in heartbeat
    now = await hover_text(client, uri, position_of(MOCK, "now()"))
    assert "now()" in now
    duration = await hover_text(client, uri, position_of(MOCK, "30s"))
    assert duration == "30 seconds"
    constant = await hover_text(client, uri, position_of(MOCK, "limit.max"))
    assert "constant `limit`" in constant
    assert '"max": 3' in constant  # the value, evaluated by the check


@on_the_server
async def test_definition_and_references(client: LanguageClient) -> None:
    uri = await opened(client, "navigate.mock", MOCK)
    document = types.TextDocumentIdentifier(uri=uri)
    use = position_of(MOCK, "limit.max", 2)
    found = await client.text_document_definition_async(
        types.DefinitionParams(text_document=document, position=use)
    )
    assert isinstance(found, list)
    assert [loc.range.start for loc in found] == [position_of(MOCK, "limit")]
    refs = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=document,
            position=position_of(MOCK, '"lobby"', 2),
            context=types.ReferenceContext(include_declaration=True),
        )
    )
    assert refs is not None
    assert [loc.range.start.line for loc in refs] == [5, 10]


@on_the_server
async def test_document_symbols(client: LanguageClient) -> None:
    uri = await opened(client, "outline.mock", MOCK)
    found = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert found is not None
    outline = [
        (s.name, [c.name for c in s.children or []])
        for s in found
        if isinstance(s, types.DocumentSymbol)
    ]
    assert outline == [
        ("limit", []),
        ("/ws/x", ["on connect", "on message"]),
        ("a client connects", []),
    ]


@on_the_server
async def test_formatting_is_fmt_s_layout_and_leaves_a_file_with_errors_alone(
    client: LanguageClient,
) -> None:
    from scenario_engine.language.fmt import format_mock

    messy = (
        "route /ws/f {\n      # says hello\n"
        '  on connect {   send {\n  type: "hi",    # the greeting\n  n: 1 }   }\n}\n'
    )
    uri = await opened(client, "messy.mock", messy)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            options=types.FormattingOptions(tab_size=2, insert_spaces=True),
        )
    )
    assert edits is not None and len(edits) == 1
    assert edits[0].new_text == format_mock(messy) != messy
    assert edits[0].new_text == (
        "route /ws/f {\n  # says hello\n  on connect {\n"
        '    send {\n      type: "hi",  # the greeting\n      n: 1,\n    }\n  }\n}\n'
    )
    broken = await opened(client, "broken.mock", "route /ws/b {\n  on connect { brodcast {} }\n}\n")
    assert not await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=broken),
            options=types.FormattingOptions(tab_size=2, insert_spaces=True),
        )
    )


def test_without_pygls_the_command_says_how_to_install_it(tmp_path: Path) -> None:
    import subprocess

    blocker = tmp_path / "pygls"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    result = subprocess.run(
        [sys.executable, "-m", "scenario_engine", "lsp"],
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=20 * UNIT,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "pip install 'scenario-engine[lsp]'" in result.stderr

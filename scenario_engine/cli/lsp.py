"""``scenario-engine lsp``: a Language Server Protocol server over stdio.

The LSP side only: documents kept in sync by pygls, positions converted (LSP's are 0-based),
diagnostics debounced and checked off the event loop. What to say about a scenario is
``language.editor``'s business, over the same checker and schema as ``check``.

pygls is an optional dependency (``pip install 'scenario-engine[lsp]'``), imported only when
this command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from .common import EXIT_OK, EXIT_USAGE, Commands

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lsprotocol import types
    from pygls.lsp.server import LanguageServer
    from pygls.workspace.position_codec import PositionCodec

    from ..errors import ScenarioError
    from ..language import editor
    from ..language.source import Span

__all__ = ["DEBOUNCE", "add_parser", "run"]

#: How long after the last change diagnostics wait, so that typing is not checked per key
#: (a 10,000-line file takes about 0.85 s to check: docs/performance.md).
DEBOUNCE = 0.100
_SUFFIXES = (".mock", ".yaml", ".yml")


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "lsp",
        help="run the language server (LSP over stdio) for editors",
        description="Serve the Language Server Protocol over stdin/stdout: diagnostics, "
        "completion, hover, definitions, references, the outline and formatting of scenario "
        "files. "
        "Needs the lsp extra: pip install 'scenario-engine[lsp]'.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        server = build_server()
    except ImportError:
        print(
            "scenario-engine: error: the language server needs pygls; install it with\n"
            "  pip install 'scenario-engine[lsp]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    server.start_io()
    return EXIT_OK


def build_server() -> LanguageServer:
    """The server, its features registered (ImportError without pygls)."""
    import asyncio

    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from ..language import editor

    server = LanguageServer("scenario-engine", _version())
    analyses: dict[str, editor.Analysis] = {}
    constants: dict[str, Any] = {}
    pending: dict[str, asyncio.Task[None]] = {}
    # One check at a time per document. A change cancels a check still waiting out the
    # debounce, never one under way (its thread would run on and slow the next one down).
    checking: dict[str, asyncio.Lock] = {}

    def analysis(uri: str) -> editor.Analysis:
        document = server.workspace.get_text_document(uri)
        current = analyses.get(uri)
        if current is None or current.text != document.source:
            current = editor.Analysis(document.path, document.source, constants.get(uri))
            analyses[uri] = current
        return current

    async def check_later(uri: str, delay: float) -> None:
        await asyncio.sleep(delay)
        if pending.get(uri) is asyncio.current_task():
            del pending[uri]
        async with checking.setdefault(uri, asyncio.Lock()):
            document = server.workspace.get_text_document(uri)
            version, text = document.version, document.source
            found, values = await asyncio.to_thread(editor.diagnostics, document.path, text)
        if server.workspace.get_text_document(uri).version != version:
            return  # changed again meanwhile: the next check reports
        if values is not None:
            constants[uri] = values
            analyses.pop(uri, None)
        convert = _Units(text.splitlines(True), document.position_codec)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=uri, version=version, diagnostics=[_diagnostic(e, convert) for e in found]
            )
        )

    def schedule(uri: str, delay: float) -> None:
        if not uri.endswith(_SUFFIXES):
            return
        earlier = pending.pop(uri, None)
        if earlier is not None:
            earlier.cancel()
        pending[uri] = asyncio.get_running_loop().create_task(check_later(uri, delay))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    async def did_open(params: types.DidOpenTextDocumentParams) -> None:
        schedule(params.text_document.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(params: types.DidChangeTextDocumentParams) -> None:
        schedule(params.text_document.uri, DEBOUNCE)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    async def did_close(params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        analyses.pop(uri, None)
        constants.pop(uri, None)
        checking.pop(uri, None)
        task = pending.pop(uri, None)
        if task is not None:
            task.cancel()
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )

    def units(uri: str) -> _Units:
        document = server.workspace.get_text_document(uri)
        return _Units(document.lines, document.position_codec)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", " ", '"']),
    )
    def completion(params: types.CompletionParams) -> types.CompletionList:
        uri = params.text_document.uri
        found = editor.complete(analysis(uri), *units(uri).where(params.position))
        return types.CompletionList(is_incomplete=False, items=[_completion_item(c) for c in found])

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        text = editor.hover(analysis(uri), *units(uri).where(params.position))
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(params: types.DefinitionParams) -> list[types.Location]:
        uri = params.text_document.uri
        convert = units(uri)
        spans = editor.definition(analysis(uri), *convert.where(params.position))
        return [types.Location(uri=uri, range=convert.range(span)) for span in spans]

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    def references(params: types.ReferenceParams) -> list[types.Location]:
        uri = params.text_document.uri
        convert = units(uri)
        spans = editor.references(
            analysis(uri), *convert.where(params.position), params.context.include_declaration
        )
        return [types.Location(uri=uri, range=convert.range(span)) for span in spans]

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbol(params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        uri = params.text_document.uri
        convert = units(uri)
        return [_symbol(s, convert) for s in editor.symbols(analysis(uri))]

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
        # The layout of `scenario-engine fmt`, by the same function. A file with errors is
        # left as it is (its diagnostics say why); YAML is not formatted.
        from ..errors import ScenarioErrors
        from ..language.fmt import format_mock

        document = server.workspace.get_text_document(params.text_document.uri)
        if not document.uri.endswith(".mock"):
            return None
        text = document.source
        try:
            formatted = format_mock(text, document.path)
        except ScenarioErrors:
            return None
        if formatted == text:
            return []
        lines = document.lines
        end = types.Position(line=len(lines), character=0)
        whole = types.Range(start=types.Position(line=0, character=0), end=end)
        return [types.TextEdit(range=whole, new_text=formatted)]

    return server


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("scenario-engine")
    except metadata.PackageNotFoundError:  # run from a source checkout
        return "unknown"


class _Units:
    """Positions between the client's units (UTF-16 unless negotiated otherwise, 0-based) and
    the editor module's (characters, 1-based)."""

    def __init__(self, lines: Sequence[str], codec: PositionCodec) -> None:
        self.lines = lines
        self.codec = codec

    def where(self, position: types.Position) -> tuple[int, int]:
        at = self.codec.position_from_client_units(self.lines, position)
        return at.line + 1, at.character + 1

    def range(self, span: Span) -> types.Range:
        return self.between(span.line, span.col, span.end_line, span.end_col)

    def between(self, line: int, col: int, end_line: int, end_col: int) -> types.Range:
        from lsprotocol import types

        return self.codec.range_to_client_units(
            self.lines,
            types.Range(
                start=types.Position(line=line - 1, character=col - 1),
                end=types.Position(line=end_line - 1, character=end_col - 1),
            ),
        )


def _diagnostic(error: ScenarioError, convert: _Units) -> types.Diagnostic:
    from lsprotocol import types

    end = error.end_col if error.end_col is not None else error.col + 1
    where = convert.between(error.line, error.col, error.line, end)
    return types.Diagnostic(
        range=where,
        message=error.message + (f"\nhint: {error.hint}" if error.hint else ""),
        severity=(
            types.DiagnosticSeverity.Warning
            if error.severity == "warning"
            else types.DiagnosticSeverity.Error
        ),
        source="scenario-engine",
    )


_KINDS = {
    "keyword": "Keyword",
    "function": "Function",
    "variable": "Variable",
    "property": "Property",
    "constant": "Constant",
    "room": "Value",
    "timer": "Event",
    "client": "Variable",
}


def _completion_item(c: editor.Completion) -> types.CompletionItem:
    from lsprotocol import types

    return types.CompletionItem(
        label=c.label,
        kind=getattr(types.CompletionItemKind, _KINDS[c.kind]),
        detail=c.detail,
        documentation=(
            types.MarkupContent(kind=types.MarkupKind.Markdown, value=c.documentation)
            if c.documentation
            else None
        ),
        insert_text=c.insert,
    )


_SYMBOL_KINDS = {
    "route": "Module",
    "handler": "Event",
    "test": "Method",
    "constant": "Constant",
}


def _symbol(s: editor.Symbol, convert: _Units) -> types.DocumentSymbol:
    from lsprotocol import types

    return types.DocumentSymbol(
        name=s.name,
        kind=getattr(types.SymbolKind, _SYMBOL_KINDS[s.kind]),
        range=convert.range(s.span),
        selection_range=convert.range(s.selection),
        children=[_symbol(child, convert) for child in s.children],
    )

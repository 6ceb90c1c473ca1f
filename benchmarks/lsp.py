"""How fast ``scenario-engine lsp`` answers on a long file: diagnostics after a change,
completion and formatting, measured by a real LSP client over stdio.

    python benchmarks/lsp.py [--lines 10000] [--runs 10]

The file is benchmarks/generate_large.py's (the compile workload of run.py). Reported, median
and max over the runs:

  open → diagnostics     didOpen to the published diagnostics (no debounce on open);
  change → diagnostics   a didChange (one character typed into a route, the file still valid)
                         to its published diagnostics: the debounce (cli/lsp.py DEBOUNCE) and
                         the check of the whole file;
  completion             the round trip of a completion request, in a handler near the end of
                         the file, after ``conn.``, and at a route's statement start;
  formatting             the round trip of a formatting request ("Format Document": the
                         ``fmt`` layout, by ``format_mock``), on the file as it is and on the
                         file with comments (before each handler, after each handler's ``{``
                         and each one-line ``send``, in each test).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate_large import generate

ROOT = Path(__file__).resolve().parent.parent


def position(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    return types.Position(line=line, character=offset - (text.rfind("\n", 0, offset) + 1))


async def measure(lines: int, runs: int) -> None:
    text = generate(lines)
    uri = (ROOT / "large.mock").as_uri()
    client = LanguageClient("benchmark", "1")
    published: asyncio.Queue[types.PublishDiagnosticsParams] = asyncio.Queue()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def on_diagnostics(params: types.PublishDiagnosticsParams) -> None:
        published.put_nowait(params)

    await client.start_io(sys.executable, "-m", "scenario_engine", "lsp", cwd=str(ROOT))
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())

    started = time.perf_counter()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="mock", version=1, text=text)
        )
    )
    first = await published.get()
    opened = time.perf_counter() - started
    assert not first.diagnostics, first.diagnostics[:1]

    changes: list[float] = []
    versions = (text.replace("\nroute ", "\nroute  ", 1), text)  # a space typed, then deleted
    for version in range(2, runs + 2):
        text = versions[version % 2]
        started = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
        await published.get()
        changes.append(time.perf_counter() - started)

    places = {
        "in a handler": text.rindex("send {") + len("send {"),
        "after conn.": text.rindex("conn.") + len("conn."),
        "route statement": text.rindex("  on ") + 2,
    }
    completions: dict[str, list[float]] = {}
    for name, offset in places.items():
        times = completions.setdefault(name, [])
        for _ in range(runs):
            started = time.perf_counter()
            result = await client.text_document_completion_async(
                types.CompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=position(text, offset),
                )
            )
            times.append(time.perf_counter() - started)
            assert result is not None

    formatting: dict[str, list[float]] = {}
    for name, content in (("as generated", text), ("with comments", commented(text))):
        version += 1
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=content)],
            )
        )
        await published.get()
        times = formatting.setdefault(name, [])
        for _ in range(runs):
            started = time.perf_counter()
            edits = await client.text_document_formatting_async(
                types.DocumentFormattingParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    options=types.FormattingOptions(tab_size=2, insert_spaces=True),
                )
            )
            times.append(time.perf_counter() - started)
            assert edits is not None

    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()

    print(f"{text.count(chr(10)):,} lines, {runs} runs (median / max)")
    print(f"  open → diagnostics     {opened * 1000:7.0f} ms")
    print(f"  change → diagnostics   {_summary(changes)}")
    for name, times in completions.items():
        print(f"  completion {name:<17} {_summary(times)}")
    for name, times in formatting.items():
        print(f"  formatting {name:<17} {_summary(times)}")


def commented(text: str) -> str:
    """``text`` with comments on their own lines and at the ends of lines."""
    text = re.sub(r"^(  on .*\{)$", r"  # a handler\n\1  # what it answers", text, flags=re.M)
    text = re.sub(r"^(    send \{.*\})$", r"\1  # the reply", text, flags=re.M)
    return re.sub(r'^(test ".*\{)$', r"\1\n  # the steps", text, flags=re.M)


def _summary(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:7.1f} ms / {max(times) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(measure(args.lines, args.runs))


if __name__ == "__main__":
    main()

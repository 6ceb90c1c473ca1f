"""``scenario-engine fmt``: rewrite `.mock` files in the canonical layout, comments kept."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ..errors import ScenarioError, ScenarioErrors, UsageError
from ..language.fmt import format_mock
from ..language.loader import SCENARIO_SUFFIXES, read_source, scenario_files
from .common import EXIT_INVALID, EXIT_OK, Commands, report

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "fmt",
        help="rewrite .mock files in the canonical layout (YAML files are left as they are)",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help=".mock files, or directories to search for them"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list the files that would change and exit 1 if there are any",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    errors: list[ScenarioError] = []
    changed: list[Path] = []
    files = _mock_files(args.paths)
    for path in files:
        source = read_source(path)
        if isinstance(source, ScenarioError):
            errors.append(source)
            continue
        try:
            text = format_mock(source.text, str(path))
        except ScenarioErrors as err:  # reported as `check` does; the file is left alone
            errors.extend(err.errors)
            continue
        if text == source.text:
            continue
        changed.append(path)
        if args.check:
            print(f"would reformat {path}")
        else:
            _write(path, text)
            print(f"reformatted {path}")
    report(sorted(set(errors), key=ScenarioError.sort_key), sys.stdout)
    count = f"{len(files)} file" + ("" if len(files) == 1 else "s")
    verb = "would be reformatted" if args.check else "reformatted"
    summary = f"{len(changed)} of {count} {verb}"
    if errors:
        summary += f", {len({e.file for e in errors})} with errors left as they were"
    print(summary)
    return EXIT_INVALID if errors or (args.check and changed) else EXIT_OK


def _mock_files(paths: list[str]) -> list[Path]:
    """The `.mock` files named by ``paths``: files as given, directories searched recursively
    (their YAML files skipped: fmt formats the `.mock` spelling only)."""
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.suffix in SCENARIO_SUFFIXES and path.suffix != ".mock":
            raise UsageError(f"{raw}: fmt formats .mock files only (YAML is not formatted)")
    return list(dict.fromkeys(scenario_files(paths, suffixes=(".mock",))))


def _write(path: Path, text: str) -> None:
    """Replace the file in one step (a temporary file renamed over it), keeping its mode, so
    that a reader or a crash never sees half a file."""
    try:
        mode = path.stat().st_mode
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(text)
            os.chmod(temporary, mode & 0o7777)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror or err}") from None

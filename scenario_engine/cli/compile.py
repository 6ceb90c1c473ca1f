"""``scenario-engine compile``: a scenario's IR (and source map) as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_INVALID, EXIT_OK, Commands, load_one

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("compile", help="print a scenario's IR as JSON")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument(
        "--source-map",
        action="store_true",
        help="print {ir, sourceMap} with each node's line and column",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_one(args.file)
    if loaded is None:
        return EXIT_INVALID
    document: object = loaded.ir
    if args.source_map:
        spans = {p: [s.line, s.col, s.end_line, s.end_col] for p, s in loaded.source_map.items()}
        document = {"ir": loaded.ir, "sourceMap": spans}
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return EXIT_OK

"""``scenario-engine schema``: the JSON Schema of scenarios, for editors."""

from __future__ import annotations

import argparse
import sys

from ..language.schema import schema_text
from .common import EXIT_OK, Commands

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("schema", help="print the JSON Schema of scenarios")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return EXIT_OK

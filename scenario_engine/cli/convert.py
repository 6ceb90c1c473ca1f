"""``scenario-engine convert``: a scenario rewritten in the other spelling."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EmitError, UsageError
from ..language.emit import emit_mock, emit_yaml
from ..language.validate import error_at
from .common import EXIT_INVALID, EXIT_OK, Commands, load_one, report

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("convert", help="rewrite a scenario in the other spelling")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--to", choices=("yaml", "mock"), required=True)
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_one(args.file)
    if loaded is None:
        return EXIT_INVALID
    try:
        text = emit_yaml(loaded.ir) if args.to == "yaml" else emit_mock(loaded.ir)
    except EmitError as err:  # valid, but with no spelling in the other language
        report(
            [
                error_at(
                    loaded,
                    err.pointer,
                    f"cannot convert to .{args.to}: {err.message}",
                    "keep this scenario in its own spelling, or write this part another way",
                )
            ],
            sys.stderr,
        )
        return EXIT_INVALID
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as err:
            raise UsageError(f"{args.output}: {err.strerror or err}") from None
    else:
        sys.stdout.write(text)
    return EXIT_OK

"""The ``scenario-engine`` command: parse the command line, run one command, exit status.

Exit status: 0 success, 1 a scenario has errors, 2 the command was used wrongly (a missing
file, an unknown option), 3 an internal error (a bug).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import UsageError
from . import check, compile, convert, fmt, lsp, record, schema, serve, test
from .common import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE

__all__ = ["build_parser", "execute", "main"]

#: The commands, in the order ``--help`` lists them.
COMMANDS = (check, compile, schema, convert, fmt, test, serve, record, lsp)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(words)
    # serve --workers starts each worker with the same command line.
    args.argv = words
    return execute(args)


def execute(args: argparse.Namespace) -> int:
    """Run the command of a parsed command line; its exit status."""
    try:
        status: int = args.run(args)
    except UsageError as err:
        print(f"scenario-engine: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as err:  # a bug of ours: say so in one line, the traceback on request
        if os.environ.get("SCENARIO_ENGINE_DEBUG"):
            raise
        print(
            f"scenario-engine: internal error: {type(err).__name__}: {err}\n"
            "  this is a bug in scenario-engine, not in your scenario; run again with "
            "SCENARIO_ENGINE_DEBUG=1 for the details, and please report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenario-engine",
        description="WebSocket mock servers written as declarative scenario files.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser

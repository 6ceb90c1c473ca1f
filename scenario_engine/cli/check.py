"""``scenario-engine check``: report every error of every file."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ScenarioError
from ..language.loader import load_paths
from .common import EXIT_INVALID, EXIT_OK, Commands, report

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser("check", help="validate scenario files and report every error")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    parser.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (default), json, or github (GitHub Actions annotations)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded, errors, count = load_paths(args.paths)
    errors = sorted(set(errors), key=ScenarioError.sort_key)
    if args.format == "json":
        json.dump(
            {"files": count, "errors": [e.as_dict() for e in errors]},
            sys.stdout,
            indent=2,
            ensure_ascii=False,
        )
        print()
    elif args.format == "github":
        for error in errors:
            print(error.format_github())
    else:
        report(errors, sys.stdout)
        files = f"{count} file" + ("" if count == 1 else "s")
        if errors:
            bad = len({e.file for e in errors})
            print(f"{len(errors)} error{'' if len(errors) == 1 else 's'} in {bad} of {files}")
        else:
            routes = sum(len(one.ir.get("routes", [])) for one in loaded)
            tests = sum(len(one.ir.get("tests", [])) for one in loaded)
            summary = f"ok: {files}, {routes} route{'' if routes == 1 else 's'}"
            if tests:
                summary += f", {tests} test{'' if tests == 1 else 's'}"
            print(summary)
    return EXIT_INVALID if errors else EXIT_OK

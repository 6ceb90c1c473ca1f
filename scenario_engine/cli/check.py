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
    # Warnings of valid files: they never make a file invalid (nor the exit status 1).
    warnings = sorted(
        (warning for one in loaded for warning in one.warnings), key=ScenarioError.sort_key
    )
    findings = sorted([*errors, *warnings], key=ScenarioError.sort_key)
    if args.format == "json":
        json.dump(
            {"files": count, "errors": [e.as_dict() for e in findings]},
            sys.stdout,
            indent=2,
            ensure_ascii=False,
        )
        print()
    elif args.format == "github":
        for finding in findings:
            print(finding.format_github())
    else:
        report(findings, sys.stdout)
        files = f"{count} file" + ("" if count == 1 else "s")
        noted = f" ({_count(len(warnings), 'warning')})" if warnings else ""
        if errors:
            bad = len({e.file for e in errors})
            print(f"{_count(len(errors), 'error')} in {bad} of {files}{noted}")
        else:
            routes = sum(len(one.ir.get("routes", [])) for one in loaded)
            tests = sum(len(one.ir.get("tests", [])) for one in loaded)
            summary = f"ok: {files}, {_count(routes, 'route')}"
            if tests:
                summary += f", {_count(tests, 'test')}"
            print(summary + noted)
    return EXIT_INVALID if errors else EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")

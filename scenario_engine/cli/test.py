"""``scenario-engine test``: load, run the conversation tests, report, and the exit status."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import ScenarioErrors, UsageError
from ..language.loader import load_paths
from .arguments import assignment, positive_float, positive_int, ws_url
from .common import Commands

if TYPE_CHECKING:
    from ..testing.runner import RunOptions, TestResult

__all__ = ["add_parser", "run", "run_test_command"]


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "test",
        help="run the conversation tests of scenario files",
        description="Run the `test` blocks of scenario files: against each file's own mock "
        "(started in this process on a free port), or with --target against another server.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    parser.add_argument(
        "--target",
        metavar="URL",
        type=ws_url,
        help="run the tests against this server (ws://host:port[/base]) instead "
        "of the scenarios' own mock: contract testing of a real backend",
    )
    parser.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    parser.add_argument(
        "-k", "--filter", metavar="TEXT", help="run only the tests whose 'FILE::NAME' contains TEXT"
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        metavar="N",
        help="tests run at once (default 8 against mocks, 1 against --target, "
        "whose state the tests share)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=60.0,
        metavar="SECONDS",
        help="most time one test may take (default 60)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "github"),
        default="text",
        help="github: also print failures as GitHub Actions annotations",
    )
    parser.add_argument(
        "--set",
        action="append",
        type=assignment,
        default=[],
        metavar="NAME=VALUE",
        help="replace a top-level constant as the tests see it (VALUE is JSON, "
        "or else text): values only the --target server knows, such as tokens",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="accept any certificate from a wss:// target (self-signed staging "
        "servers); SSL_CERT_FILE=ca.pem trusts one CA instead",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # The test runner (and the WebSocket client it drives) loads only for this command.
    from ..testing.runner import RunOptions

    options = RunOptions(
        target=args.target,
        jobs=args.jobs,
        timeout=args.timeout,
        overrides=dict(args.set),
        insecure=args.insecure,
    )
    return run_test_command(
        args.paths,
        options,
        junit=args.junit,
        name_filter=args.filter,
        github=args.format == "github",
    )


def run_test_command(
    paths: Sequence[str],
    options: RunOptions,
    junit: str | None = None,
    name_filter: str | None = None,
    github: bool = False,
) -> int:
    """0 if every test passed; 1 if one failed, a scenario has errors, or there are none.
    ``github``: also print each failure as a GitHub Actions annotation on the step's line."""
    from ..testing.reports import (
        failure_annotation,
        failure_report,
        junit_xml,
        result_line,
        summary_lines,
    )
    from ..testing.runner import collect, run_tests

    loaded, found, count = load_paths(paths)
    if found:
        errors = ScenarioErrors(found)
        print(errors.format_text() + "\n", file=sys.stderr)
        if github:
            print("\n".join(error.format_github() for error in errors.errors))
        print(f"not testing: {errors.count_text()}", file=sys.stderr)
        return 1
    defined = {name for one in loaded for name in (one.constants or {})}
    for name in options.overrides:
        if name not in defined:
            raise UsageError(
                f"--set {name}: no file defines a constant '{name}' (let {name} = "
                "… at the top of a scenario)"
            )
    cases = collect(loaded, name_filter)
    if not cases:
        where = f"matching {name_filter!r} " if name_filter else ""
        print(f"no tests {where}in {count} file{'' if count == 1 else 's'}", file=sys.stderr)
        return 1
    if options.target is None:
        untestable = sorted({case.file for case in cases if not case.loaded.ir.get("routes")})
        for file in untestable:
            print(
                f"{file}: this file has no routes to test: run its tests against a server "
                "with --target ws://HOST:PORT",
                file=sys.stderr,
            )
        if untestable:
            return 1
    # Opened before the run, so that a path that cannot be written stops the command at once
    # rather than after every test has run.
    report_file = _open_report(junit) if junit is not None else None

    def report(result: TestResult) -> None:
        print(result_line(result), flush=True)

    started = time.perf_counter()
    results = asyncio.run(run_tests(cases, options, on_result=report))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.passed]
    for result in failed:
        print(f"\n--- {result.case.title}")
        print(failure_report(result))
        if github:
            print(failure_annotation(result))
    print()
    print("\n".join(summary_lines(results, elapsed)))
    if report_file is not None:
        with report_file:
            report_file.write(junit_xml(results))
    return 1 if failed else 0


def _open_report(name: str) -> TextIO:
    path = Path(name)
    try:
        # As pytest's --junitxml: CI steps name a reports/ folder that may not exist yet.
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w", encoding="utf-8")
    except OSError as err:
        what = err.strerror or str(err)
        if isinstance(err, FileExistsError):  # mkdir over a file
            what = "a file stands where its folder should be"
        raise UsageError(f"--junit {name}: cannot write it: {what}") from None

"""The ``test`` command: load, run, report, and the exit status."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import ScenarioError
from .loader import UsageError, load_paths
from .reports import failure_annotation, failure_text, junit_xml, result_line, summary_lines
from .runner import RunOptions, TestResult, collect, run_tests

__all__ = ["run_test_command"]


def run_test_command(paths: Sequence[str], options: RunOptions, junit: str | None = None,
                     name_filter: str | None = None, github: bool = False) -> int:
    """0 if every test passed; 1 if one failed, a scenario has errors, or there are none.
    ``github``: also print each failure as a GitHub Actions annotation on the step's line."""
    loaded, errors, count = load_paths(paths)
    if errors:
        for error in sorted(set(errors), key=ScenarioError.sort_key):
            print(error.format_text(), file=sys.stderr)
            print(file=sys.stderr)
            if github:
                print(error.format_github())
        print(f"not testing: {len(errors)} error{'' if len(errors) == 1 else 's'}",
              file=sys.stderr)
        return 1
    defined = {name for one in loaded for name in (one.constants or {})}
    for name in options.overrides:
        if name not in defined:
            raise UsageError(f"--set {name}: no file defines a constant '{name}' (let {name} = "
                             "… at the top of a scenario)")
    cases = collect(loaded, name_filter)
    if not cases:
        where = f"matching {name_filter!r} " if name_filter else ""
        print(f"no tests {where}in {count} file{'' if count == 1 else 's'}", file=sys.stderr)
        return 1
    if junit is not None and Path(junit).is_dir():
        raise UsageError(f"{junit}: a directory; --junit takes a file name")

    def report(result: TestResult) -> None:
        print(result_line(result), flush=True)

    started = time.perf_counter()
    results = asyncio.run(run_tests(cases, options, on_result=report))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.passed]
    for result in failed:
        print(f"\n--- {result.case.title}")
        print(failure_text(result))
        if github:
            print(failure_annotation(result))
    print()
    print("\n".join(summary_lines(results, elapsed)))
    if junit is not None:
        try:
            # As pytest's --junitxml: CI steps name a reports/ folder that may not exist yet.
            Path(junit).parent.mkdir(parents=True, exist_ok=True)
            Path(junit).write_text(junit_xml(results), encoding="utf-8")
        except OSError as err:
            raise UsageError(f"{junit}: {err.strerror or err}") from None
    return 1 if failed else 0

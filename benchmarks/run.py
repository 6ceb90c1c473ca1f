"""Run the benchmarks and print a table.

    python benchmarks/run.py [--runs N]

compile: `scenario-engine check` of a generated 10,000-line scenario, as a whole process
(start-up, parsing, schema and semantic checks), median of N runs after a warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_large import generate


def time_command(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, check=True, capture_output=True)  # warm-up (and parser cache)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def bench_compile(runs: int) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "large.mock"
        text = generate(10_000)
        path.write_text(text, encoding="utf-8")
        lines = text.count("\n")
        times = time_command([sys.executable, "-m", "scenario_engine", "check", str(path)], runs)
    median = statistics.median(times)
    return (f"compile: check of a {lines:,}-line scenario",
            f"median {median:.3f} s (min {min(times):.3f}, max {max(times):.3f}; "
            f"target < 1 s: {'met' if median < 1 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rows = [bench_compile(args.runs)]
    width = max(len(name) for name, _ in rows)
    print(f"{'benchmark':<{width}}  result")
    for name, result in rows:
        print(f"{name:<{width}}  {result}")


if __name__ == "__main__":
    main()

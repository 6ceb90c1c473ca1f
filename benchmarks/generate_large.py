"""Write a large, realistic `.mock` scenario: the example routes, with their tests, repeated
under new paths (and new test names: a name is unique in a file).

    python benchmarks/generate_large.py 10000 > /tmp/large.mock
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
SOURCES = ("chat.mock", "game.mock", "rooms.mock", "private.mock")


def route_bodies() -> list[tuple[str, str]]:
    """(path, text from 'route' to the end of the file: the route and its tests) of each
    example route."""
    bodies = []
    for name in SOURCES:
        text = (SCENARIOS / name).read_text(encoding="utf-8")
        start = text.index("\nroute ") + 1
        path = text[start:].split()[1]
        bodies.append((path, text[start:]))
    return bodies


def generate(lines: int) -> str:
    header = ['let users = { "alice-token": { name: "Alice" }, "bob-token": { name: "Bob" } }', ""]
    out = list(header)
    bodies = route_bodies()
    n = 0
    while len(out) < lines:
        path, body = bodies[n % len(bodies)]
        copy = body.replace(f"route {path} ", f"route {path}/{n} ", 1)
        copy = re.sub(r'^test "([^"]*)"', rf'test "\1 #{n}"', copy, flags=re.M)
        out.extend(copy.rstrip().split("\n"))
        out.append("")
        n += 1
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))

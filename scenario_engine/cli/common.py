"""What several commands share: exit statuses, printing errors, reading one scenario file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO, TypeAlias

from ..errors import ScenarioError, UsageError
from ..language.ir import Loaded
from ..language.loader import load_file, scenario_files

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_USAGE",
    "Commands",
    "cannot_listen",
    "load_one",
    "report",
]

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

#: What each command module's ``add_parser`` adds its subcommand to (generic only to type
#: checkers, hence the string).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def report(errors: list[ScenarioError], out: TextIO) -> None:
    for error in errors:
        print(error.format_text(), file=out)
        print(file=out)


def cannot_listen(host: str, port: int, error: OSError) -> int:
    """Say that the listening socket could not be opened (a port in use, an address not
    this machine's); the exit status for it."""
    print(
        f"scenario-engine: error: cannot listen on {host}:{port}: {error.strerror or error}",
        file=sys.stderr,
    )
    return EXIT_INVALID


def load_one(name: str) -> Loaded | None:
    if Path(name).is_dir():
        raise UsageError(f"{name}: a directory; this command takes one scenario file")
    (path,) = scenario_files([name])
    loaded, errors = load_file(Path(path))
    if loaded is None:
        report(errors, sys.stderr)
    return loaded

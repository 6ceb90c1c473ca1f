"""A worker of ``serve --workers N``: ``python -m scenario_engine.cli.worker``, started by the
supervisor (supervisor.py), never by hand.

It reads the command line from its link to the supervisor and runs it as ``scenario-engine``
runs it, as worker number ``index`` on the supervisor's port.
"""

from __future__ import annotations

import sys

from ..errors import UsageError
from .common import EXIT_USAGE
from .main import build_parser, execute
from .supervisor import WorkerLink


def main() -> int:
    try:
        link = WorkerLink.accept()
    except UsageError as err:
        print(f"scenario-engine: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser().parse_args(link.argv)
    args.argv = link.argv
    args.worker = link
    return execute(args)


if __name__ == "__main__":
    sys.exit(main())

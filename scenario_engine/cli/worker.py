"""A worker of ``serve --workers N``: ``python -m scenario_engine.cli.worker``, started by the
supervisor (supervisor.py), never by hand.

It reads the command line from its link to the supervisor and runs it as ``scenario-engine``
runs it, as worker number ``index`` on the supervisor's port.
"""

from __future__ import annotations

import signal
import sys

from ..errors import UsageError
from .common import EXIT_USAGE
from .main import build_parser, execute
from .supervisor import WorkerLink


def main() -> int:
    # Ctrl+C in a terminal signals every process of the group: the supervisor alone answers
    # it, and stops its workers with SIGTERM (a worker that stopped on its own would look
    # like one that died).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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

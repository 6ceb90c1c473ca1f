"""Recordings made scenarios: a conversation with a real server (a journal of its events)
turned into a scenario that behaves like it, with tests that check both (docs/record.md).

Between ``cli`` and ``testing`` in the layers: it reads journals written by the runtime and
writes scenarios with the language's emitters; only the command line uses it.
"""

from .infer import infer_scenario
from .journal_file import read_journal
from .raw import raw_scenario
from .render import render_scenario

__all__ = ["infer_scenario", "raw_scenario", "read_journal", "render_scenario"]

"""The clock of the engine's timers: when each is due, and waking the loop when they are.

Timers are kept in slots of a grid (10 ms, or a hundredth of the timer's period when that is
finer) and the event loop is asked to wake once per slot that holds any, not once per timer.
Ten thousand connections with a one-second timer each then cost the loop a hundred wake-ups a
second, and no heap operation or handle per run: asyncio keeps its timers in a heap ordered by
a Python comparison, which at that count cost more than the runs themselves. Nothing is polled:
an empty slot has no wake-up.

A timer runs at most one step of its grid late, never early; within a slot, timers run in the
order of their due times. Due times are exact: a repeating timer is due again one interval after
the time it was due, whenever it ran, so it does not drift.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from .connection import Timer

__all__ = ["GRID", "Clock"]

#: The coarsest step of the grid, in seconds.
GRID = 0.010
#: Periods so short that their hundredth is under a millisecond are scheduled one by one.
_FINEST = 0.001


class Clock:
    """Calls ``fire(timer, due)`` when each started timer is due (``due``: the exact time, on
    the loop's clock)."""

    def __init__(self, fire: Callable[[Timer, float], None]) -> None:
        self._fire = fire
        #: Each scheduled timer → its entry (its due time); an entry replaced or removed here
        #: is stale where its slot still holds it, and skipped.
        self._entries: dict[Timer, _Entry] = {}
        self._slots: dict[tuple[float, int], list[_Entry]] = {}
        self._wake_ups: dict[tuple[float, int], asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        """How many timers are scheduled."""
        return len(self._entries)

    def __contains__(self, timer: Timer) -> bool:
        return timer in self._entries

    def start(self, timer: Timer, due: float, period: float) -> None:
        """Schedule ``timer`` at ``due`` (replacing any time it had), on the grid of
        ``period``, the time between its runs (or until its only one)."""
        loop = asyncio.get_running_loop()
        entry = _Entry(timer, due)
        self._entries[timer] = entry
        step = min(GRID, period / 100)
        if step < _FINEST:
            entry.handle = loop.call_at(due, self._run_one, entry)
            return
        index = math.ceil(due / step)
        key = (step, index)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = []
            self._wake_ups[key] = loop.call_at(index * step, self._run_slot, key)
        slot.append(entry)

    def stop(self, timer: Timer) -> None:
        entry = self._entries.pop(timer, None)
        if entry is not None and entry.handle is not None:
            entry.handle.cancel()

    def close(self) -> None:
        """Forget every timer: nothing is fired any more."""
        for handle in self._wake_ups.values():
            handle.cancel()
        for entry in self._entries.values():
            if entry.handle is not None:
                entry.handle.cancel()
        self._entries.clear()
        self._slots.clear()
        self._wake_ups.clear()

    def _run_slot(self, key: tuple[float, int]) -> None:
        del self._wake_ups[key]
        slot = self._slots.pop(key)
        slot.sort(key=_due)
        for entry in slot:
            self._run_one(entry)

    def _run_one(self, entry: _Entry) -> None:
        timer = entry.timer
        if self._entries.get(timer) is entry:
            del self._entries[timer]
            self._fire(timer, entry.due)


class _Entry:
    """A timer's place in the clock: when it is due, and, when scheduled on its own, its
    handle."""

    __slots__ = ("due", "handle", "timer")

    def __init__(self, timer: Timer, due: float) -> None:
        self.timer = timer
        self.due = due
        self.handle: asyncio.TimerHandle | None = None


def _due(entry: _Entry) -> float:
    return entry.due

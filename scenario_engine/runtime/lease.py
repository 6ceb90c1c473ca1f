"""The lease of the routes' own timers: one process of a cluster runs them for all.

A route's ``every`` (``every 1s { broadcast { type: "tick" } }``) must fire once per interval
for the whole mock, not once per process. The process that holds a key in Redis runs them (the
lease: redis-py's ``Lock``, taken with SET NX PX and this process's name as its token, renewed
every third of its time to live); their broadcasts reach every process through the backplane.
When the holder dies, its lease expires and another process takes it within a third of the
lease more. A process that stops (SIGTERM) gives it up at once.

While Redis is lost, every process runs the timers itself: a process cut off from the others
serves its own clients as a server of its own would, and its clients go on hearing the timers
(none of the holder's broadcasts reach them meanwhile). Once Redis is back, the lease decides
again, and only its holder goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from .backplane import Backplane, spawn, stop, wait_a_while

__all__ = ["Lease"]


class Lease:
    """Tells ``on_change(True)`` when this process is to run the routes' own timers, and
    ``on_change(False)`` when it is not any more."""

    def __init__(
        self, backplane: Backplane, duration: float, on_change: Callable[[bool], None]
    ) -> None:
        from redis.asyncio.lock import Lock

        self._backplane = backplane
        self._duration = duration
        self._on_change = on_change
        self._lock = Lock(
            backplane.redis, backplane.key("leader"), timeout=duration, thread_local=False
        )
        #: This process holds the lease in Redis.
        self.holding = False
        #: This process runs the timers (it holds the lease, or Redis is lost).
        self.leading = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        backplane.watch(lambda up: self._wake.set())

    def start(self) -> None:
        self._task = spawn(self._keep(), "the lease of the route timers")

    async def close(self) -> None:
        """Stop, and give the lease up so that another process takes it at once."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await stop([self._task], self._duration)
        if self.holding and self._backplane.up:
            with contextlib.suppress(Exception):
                await self._lock.release()
        self.holding = False

    async def _keep(self) -> None:
        from redis import exceptions

        outage = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)

        while not self._closed:
            self._wake.clear()
            if not self._backplane.up:
                self._lead(True)  # a server of its own until Redis is back
            else:
                try:
                    if self.holding:
                        await self._lock.reacquire()
                    else:
                        self.holding = bool(
                            await self._lock.acquire(blocking=False, token=self._backplane.origin)
                        )
                except (
                    exceptions.LockError
                ):  # expired, or Redis lost it: try to take it again at once
                    self.holding = False
                    self._wake.set()
                except outage as err:
                    self._backplane.lost(err)  # which wakes this loop up, to lead alone
                else:
                    self._lead(self.holding)
            await wait_a_while(self._wake, self._duration / 3)

    def _lead(self, leading: bool) -> None:
        if leading == self.leading:
            return
        self.leading = leading
        self._on_change(leading)

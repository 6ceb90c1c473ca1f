"""``state`` shared by several processes: the truth in Redis, a copy in each process, a lock.

The language promises that a handler's actions up to its first ``wait`` run with no other
handler in between, so that a read-then-set (``if msg.amount > state.highest { set
state.highest = msg.amount }``) is atomic. Two processes that each read the highest bid and
each set theirs would lose one of the two bids; across processes the promise is kept with a
lock per scenario file, in Redis:

- The engine defers every event that reads or writes ``state`` (a ``Deferred`` effect). It runs
  only while its process holds the file's lock, on the process's copy of the state, made fresh
  first when another process changed it: taking the lock returns the state's version, and the
  state itself when the version is not the one this process knows — one round trip.
- What the events wrote goes back to Redis, and the lock is freed, in one script that first
  checks that the lock is still this process's: a process whose lock expired (it stalled for
  longer than the lock lasts) cannot overwrite a newer state. The lock's token fences the write.
- The events waiting for a file's lock run together once it is held, one after the other, as
  in one process: one round trip to take the lock and one to write back, for the whole batch.
- A process that finds the lock taken claims the next turn (a short-lived ``wanted`` key): the
  holder cannot take the lock again while another's claim stands, so two busy processes take
  turns. It also marks that someone waits (``waiting``): the release then tells the waiting
  processes on the ``free`` channel, so they need not poll (they still try again every
  ``POLL`` seconds, in case the message was missed).

Why not optimistic concurrency (write if the version did not move, run the handler again if it
did): a handler's effects reach beyond the state — its session, its rooms, its timers, what it
sent — and cannot be taken back to run it twice. Why not redis-py's ``Lock``: the write must be
fenced by the lock within the same script, and the lock taken together with the state in one
round trip; its blocking acquire polls.

While Redis is lost, events run at once on the process's own copy, as on a server of its own,
and the copy is marked as diverged. When Redis is back, its state wins if it kept it; if it lost
it (a restart without persistence), the first process to take the lock writes its own copy back.
Redis forgets cached scripts on a restart too: redis-py loads them again when told NOSCRIPT.

Events that only read or write ``session``, send or broadcast never wait for any of this.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..errors import EvaluationError, UsageError
from ..expr.values import MAX_STRING
from .backplane import Backplane, spawn, stop, wait_a_while
from .effects import Deferred, Effect
from .state import MemoryState, plain

__all__ = ["BATCH", "POLL", "SharedState", "StateHost", "check_file_names", "shared_name"]

logger = logging.getLogger("scenario_engine")

#: Events run in one holding of a file's lock, at most.
BATCH = 1000
#: How often a process waiting for a file's lock tries again without being told it is free.
POLL = 0.05

_T = TypeVar("_T")

#: KEYS: the lock, the claim of the next turn, the state, the mark that someone waits. ARGV: a
#: token, this process, how long the lock and a claim last (ms), the version of the state this
#: process knows. {0}: taken by another (this process claims the next turn if nobody has, and
#: marks that it waits); {1, ""}: taken, no state in Redis; {1, version}: taken, the state is
#: the one known; {1, version, state}.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
local wanted = redis.call('GET', KEYS[2])
if holder or (wanted and wanted ~= ARGV[2]) then
  if not wanted then
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
  elseif wanted == ARGV[2] then
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  end
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
  return {0}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
if wanted then redis.call('DEL', KEYS[2]) end
local version = redis.call('HGET', KEYS[3], 'v')
if not version then return {1, ''} end
if version == ARGV[5] then return {1, version} end
return {1, version, redis.call('HGET', KEYS[3], 'd')}
"""

#: KEYS: the lock, the state, the mark that someone waits. ARGV: the token, the state as JSON
#: ("": unchanged), its new version, the channel to tell waiting processes on, the file's name.
#: 1: written (or released); 0: the lock was not this process's any more: nothing written.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'v', ARGV[3], 'd', ARGV[2]) end
redis.call('DEL', KEYS[1])
if redis.call('DEL', KEYS[3]) == 1 then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"""


class StateHost(Protocol):
    """Who runs the deferred events and carries out their effects (the server, through the
    cluster)."""

    def run_deferred(self, deferred: Deferred) -> list[Effect]:
        """Run the event (a bug of ours in it is the host's to report): its effects."""
        ...

    def carry_out(self, deferred: Deferred, effects: list[Effect]) -> None:
        """Carry out the effects of the event, once what it wrote is in Redis."""
        ...


def shared_name(file: str) -> str:
    """The name of a scenario file's state in Redis: its file name, which processes started
    from other folders (or with other paths to the same files) agree on."""
    return Path(file).name


def check_file_names(files: Iterable[str]) -> None:
    """UsageError when two files served have the same name: their states would be one."""
    seen: dict[str, str] = {}
    for file in files:
        other = seen.setdefault(shared_name(file), file)
        if other != file:
            raise UsageError(
                f"{other} and {file} have the same name: with --backplane, each file's state "
                "is shared under its file name; rename one of them"
            )


@dataclass(slots=True)
class _Turn:
    """What waits for a file's lock: an event of the engine (``deferred``), or an action of
    ``exclusive`` (``done`` then gets its result, or its exception, once what it wrote is in
    Redis)."""

    deferred: Deferred
    action: Callable[[], Any] | None = None
    done: asyncio.Future[Any] | None = None
    result: Any = None
    error: BaseException | None = None


def _no_effects() -> list[Effect]:
    return []


class SharedState:
    """The files' states, shared through the backplane (implements ``StateStore``).

    The engine reads and writes this process's copy; it does so only in events the engine
    deferred, run here while the file's lock is held (``submit``). A whole new state given
    outside of an event (the admin API replaces or resets it; a reload redefines it) is this
    process's at once, and everyone's at the file's next turn.
    """

    def __init__(
        self,
        initial: Mapping[str, Mapping[str, Any]],
        backplane: Backplane,
        lock: float,
        limit: int = MAX_STRING,
    ) -> None:
        self._local = MemoryState(initial, limit)
        self._backplane = backplane
        self._lock_ms = max(1, int(lock * 1000))
        self._claim_ms = max(4 * int(POLL * 1000), 200)
        self._host: StateHost | None = None
        #: The version of each file's state that the copy here is (None: unknown, or the copy
        #: changed while Redis was lost).
        self._versions: dict[str, str | None] = {}
        #: The file whose events run now, on its fresh copy; what they wrote.
        self._holding: str | None = None
        self._written = False
        self._queues: dict[str, deque[_Turn]] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._free: dict[str, asyncio.Event] = {}
        self._free_channel = backplane.key("free")
        self._acquire = backplane.redis.register_script(_ACQUIRE)
        self._release = backplane.redis.register_script(_RELEASE)
        #: Batches run holding a lock; events run in them; events run on this process's copy
        #: alone (Redis lost); times a lock was found taken; writes refused (lock expired).
        self.batches = 0
        self.events = 0
        self.alone = 0
        self.waits = 0
        self.expired = 0
        self._refused: set[str] = set()

    def start(self, host: StateHost) -> None:
        self._host = host
        self._backplane.listen(self._free_channel, self._freed)

    async def close(self, within: float) -> None:
        """Let the events that wait run (for up to ``within`` seconds), then stop."""
        pumps = list(self._pumps.values())
        if pumps:
            await asyncio.wait(pumps, timeout=within)
        await stop(self._pumps.values(), within)

    # ---- StateStore ------------------------------------------------------------------------
    def data(self, scope: str) -> dict[str, Any]:
        return self._local.data(scope)

    def write(self, scope: str, keys: list[Any], value: Any) -> None:
        self._local.write(scope, keys, value)
        self._wrote(scope)

    def remove(self, scope: str, keys: list[Any]) -> None:
        self._local.remove(scope, keys)
        self._wrote(scope)

    def replace(self, scope: str, value: Any) -> None:
        self._local.replace(scope, value)
        copied = plain(value)
        self._wrote(scope, lambda: self._local.replace(scope, copied))

    def reset(self, scope: str) -> None:
        self._local.reset(scope)
        self._wrote(scope, lambda: self._local.reset(scope))

    def define(self, scope: str, initial: Mapping[str, Any]) -> None:
        self._local.define(scope, initial)
        self._wrote(scope, lambda: self._local.reset(scope))

    def scopes(self) -> list[str]:
        return self._local.scopes()

    def _wrote(self, scope: str, again: Callable[[], None] | None = None) -> None:
        """A write to a file's state: part of the batch that holds it, or (``again``: how to
        write it again) a whole new state given outside of any event, made everyone's at the
        file's next turn."""
        if self._holding == scope:
            self._written = True
            return
        # The engine defers every event that writes: a partial write here would be one that
        # is not (and would go to a copy that may be stale).
        assert again is not None, f"the state of {scope} written outside of its turn"

        def write_again() -> list[Effect]:
            again()
            return []

        self.submit(Deferred(scope, None, write_again))

    # ---- turns -----------------------------------------------------------------------------
    def submit(self, deferred: Deferred) -> None:
        """Run the event once this process holds its file's state (at once while Redis is
        lost), after the events submitted before it."""
        self._enqueue(_Turn(deferred))

    async def exclusive(self, scope: str, action: Callable[[], _T]) -> _T:
        """``action()``'s result, run while this process holds the file's state, fresh: a read
        of the state as every process sees it, or a change (``replace``…) that is everyone's
        when this returns. For the admin API across processes."""
        done: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._enqueue(_Turn(Deferred(scope, None, _no_effects), action, done))
        return await done

    def _enqueue(self, turn: _Turn) -> None:
        scope = turn.deferred.scope
        queue = self._queues.setdefault(scope, deque())
        queue.append(turn)
        if scope not in self._pumps:
            self._pumps[scope] = spawn(self._pump(scope, queue), f"the state of {scope}")

    async def _pump(self, scope: str, queue: deque[_Turn]) -> None:
        """Run the file's events, batch by batch, each batch holding the file's lock."""
        from redis import exceptions

        outage = (exceptions.ConnectionError, exceptions.TimeoutError, OSError)
        try:
            while queue:
                if not self._backplane.up:
                    self._run_alone(scope, queue)
                    continue
                try:
                    token, stale = await self._take(scope)
                except outage as err:
                    self._backplane.lost(err)
                    self._run_alone(scope, queue)
                    continue
                except (exceptions.RedisError, ValueError) as err:  # another program's keys?
                    self._refuse(scope, err)
                    self._run_alone(scope, queue)
                    continue
                batch = [queue.popleft() for _ in range(min(len(queue), BATCH))]
                ran = self._run(scope, batch)
                try:
                    await self._give_back(scope, token, stale or self._written)
                except outage as err:
                    self._versions[scope] = None  # written or not: ask Redis next time
                    self._backplane.lost(err)
                except exceptions.RedisError as err:
                    self._versions[scope] = None
                    self._refuse(scope, err)
                self._carry_out(ran)
        finally:
            del self._pumps[scope]

    async def _take(self, scope: str) -> tuple[str, bool]:
        """Hold the file's lock, with this process's copy made fresh: the token, and whether
        Redis has no state for the file (this copy is to be written back)."""
        name = shared_name(scope)
        key = self._backplane.key(f"state:{name}")
        token = os.urandom(8).hex()
        free = self._free.setdefault(name, asyncio.Event())
        while True:
            free.clear()  # before trying: a release from now on wakes the wait below
            answer = await self._acquire(
                keys=[f"{key}:lock", f"{key}:wanted", key, f"{key}:waiting"],
                args=[
                    token,
                    self._backplane.origin,
                    self._lock_ms,
                    self._claim_ms,
                    self._versions.get(scope) or "",
                ],
            )
            if answer[0]:
                break
            self.waits += 1
            await wait_a_while(free, POLL)
        if answer[1] == b"":
            return token, True
        version = answer[1].decode()
        if len(answer) > 2:
            fresh = json.loads(answer[2])
            try:
                self._local.replace(scope, fresh)
            except EvaluationError as err:  # larger than this process's cap
                raise ValueError(f"the state in Redis cannot be read here: {err}") from None
        self._versions[scope] = version
        return token, False

    async def _give_back(self, scope: str, token: str, write: bool) -> None:
        """Free the file's lock, writing the copy back first when ``write``."""
        key = self._backplane.key(f"state:{shared_name(scope)}")
        version = os.urandom(8).hex()
        data = ""
        if write:
            data = json.dumps(self._local.data(scope), ensure_ascii=False, separators=(",", ":"))
        written = await self._release(
            keys=[f"{key}:lock", key, f"{key}:waiting"],
            args=[token, data, version, self._free_channel, shared_name(scope)],
        )
        if not write:
            return
        if written:
            self._versions[scope] = version
            return
        self.expired += 1
        self._versions[scope] = None
        logger.warning(
            "state of %s: this process held it longer than the lock lasts (%d ms); what its "
            "last events wrote stayed in this process",
            scope,
            self._lock_ms,
        )

    def _run(self, scope: str, batch: list[_Turn]) -> list[tuple[_Turn, list[Effect]]]:
        """Run a batch of events on the file's copy, one after the other, nothing in between."""
        assert self._host is not None
        host = self._host
        ran: list[tuple[_Turn, list[Effect]]] = []
        self._holding, self._written = scope, False
        try:
            for turn in batch:
                if turn.action is None:
                    ran.append((turn, host.run_deferred(turn.deferred)))
                    continue
                try:
                    turn.result = turn.action()
                except Exception as err:  # the caller's to handle
                    turn.error = err
                ran.append((turn, []))
        finally:
            self._holding = None
        self.batches += 1
        self.events += len(batch)
        return ran

    def _run_alone(self, scope: str, queue: deque[_Turn]) -> None:
        """Redis is lost: run what waits on this process's copy, at once."""
        batch = list(queue)
        queue.clear()
        ran = self._run(scope, batch)
        self.alone += len(batch)
        if self._written:
            self._versions[scope] = None  # this copy is its own now
        self._carry_out(ran)

    def _carry_out(self, ran: list[tuple[_Turn, list[Effect]]]) -> None:
        assert self._host is not None
        for turn, effects in ran:
            if turn.done is None:
                self._host.carry_out(turn.deferred, effects)
            elif turn.done.done():
                pass  # its caller has gone
            elif turn.error is not None:
                turn.done.set_exception(turn.error)
            else:
                turn.done.set_result(turn.result)

    def _freed(self, message: bytes) -> None:
        free = self._free.get(message.decode())
        if free is not None:
            free.set()

    def _refuse(self, scope: str, error: BaseException) -> None:
        """Redis answered, but not as expected (its keys changed by another program?): said
        once per file; the events run on this process's copy."""
        if scope not in self._refused:
            self._refused.add(scope)
            logger.error("state of %s: Redis refused the shared state: %s", scope, error)

    def status(self) -> dict[str, int]:
        return {
            "batches": self.batches,
            "events": self.events,
            "alone": self.alone,
            "lockWaits": self.waits,
            "lockExpired": self.expired,
        }

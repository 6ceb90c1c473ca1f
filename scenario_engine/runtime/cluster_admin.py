"""The admin API of a cluster: each request answered for every process of the mock.

With ``serve --backplane`` (``--workers N`` among them), an admin request reaches one process,
whichever the kernel or the load balancer chose, and each process holds only its own
connections, rooms, sessions and journal. The process that the request reached asks every
process, itself included, through the backplane (``Backplane.ask_all``: one PUBLISH on the
mock's ``ask`` channel, answers on the asker's own channel, gathered for ASK_TIMEOUT), each
answers from its own part with the same ``Admin`` operations as a lone server, and the answers
are put together:

- the connections: every process's, oldest first, each with its ``process`` (and ``worker``);
- a push to a room or a route: delivered by every process to its own members; the counts add
  up. To a connection, a close, a session: done by the process that has it (404 when none
  has);
- reset: every process closes its connections (1012), empties its rooms and its journal; the
  shared ``state`` is then reset once;
- the journal: every process's events (each with its ``process`` and ``worker``), in time
  order, with a cursor to ask for what comes next (``next``);
- the ``state``: it lives in Redis already; it is read and replaced while this process holds
  the file's turn (``SharedState.exclusive``), so that the answer is what every process reads.

A process that does not answer in time (busy, or lost its link to Redis) is not waited for: the
answer says how many were ``missing``, and what a process failed with in ``errors``. A process
that no longer runs is not counted: the asker expects as many answers as PUBLISH reached
subscribers.

Trust: a question comes from whoever can publish on the mock's channels in Redis (its prefix).
The admin API's own checks (``Admin.refusal``) are made where the HTTP request arrives;
questions from Redis are answered without more checks, so Redis must be reachable only by the
mock's processes (docs/scale-out.md).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..errors import AdminError, BackplaneError
from .admin import Admin, check_close
from .backplane import Answers, Backplane
from .journal import Journal
from .shared_state import SharedState

__all__ = ["ASK_TIMEOUT", "ClusterAdmin", "parse_cursor"]

#: How long every process has to answer an admin question (seconds); those that close
#: connections get the close wait on top.
ASK_TIMEOUT = 1.0
#: ``since`` in a cluster: ``PROCESS:SEQ`` pairs, comma-separated (or a plain number: the
#: same ``seq`` for every process).
_CURSOR_PAIR = re.compile(r"([^,:\s]+):(\d+)")

Question = Callable[[Any], Awaitable[Any]]


class ClusterAdmin:
    """The admin operations of ``admin`` across the processes joined by ``backplane``.

    Every process makes one, which answers the others' questions from then on.
    """

    def __init__(self, admin: Admin, backplane: Backplane, state: SharedState) -> None:
        self.admin = admin
        self.backplane = backplane
        self.shared_state = state
        questions: dict[str, Question] = {
            "health": self._local_health,
            "connections": self._local_connections,
            "send": self._local_send,
            "close": self._local_close,
            "session": self._local_session,
            "set-session": self._local_set_session,
            "reset": self._local_reset,
            "journal": self._local_journal,
            "clear-journal": self._local_clear_journal,
        }
        for name, answer in questions.items():
            backplane.answer(f"admin:{name}", _answering(answer))

    @property
    def process(self) -> str:
        """This process, as its journal events and connection rows name it."""
        return self.backplane.origin

    # ---- every process ---------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        asked = await self._ask("health", None)
        processes = sorted(_oks(asked), key=lambda p: (p.get("worker", 0), p["process"]))
        return {**self.admin.health(), "processes": processes, **_shortfall(asked)}

    async def connections(self) -> dict[str, Any]:
        asked = await self._ask("connections", None)
        rows = [row for answer in _oks(asked) for row in answer]
        rows.sort(key=lambda row: (row["connectedAt"], row.get("process", "")))
        return {"connections": rows, **_shortfall(asked)}

    async def send(self, body: Mapping[str, Any]) -> dict[str, Any]:
        asked = await self._ask("send", dict(body))
        delivered = _oks(asked)
        if not delivered:
            raise _first_error(asked)
        return {"delivered": sum(delivered), **_shortfall(asked)}

    async def close(self, connection: str, code: int, reason: str) -> dict[str, Any]:
        check_close(code, reason)
        wait = self.admin.close_wait()
        asked = await self._ask("close", [connection, code, reason], extra=wait)
        if not _oks(asked):
            raise _first_error(asked)
        return _shortfall(asked)

    async def session(self, connection: str) -> dict[str, Any]:
        return await self._one("session", [connection])

    async def set_session(self, connection: str, value: Any) -> dict[str, Any]:
        return await self._one("set-session", [connection, value])

    async def reset(self) -> dict[str, Any]:
        asked = await self._ask("reset", None, extra=self.admin.close_wait())
        closed = sum(_oks(asked))
        # Once every process has closed its connections (their ``on close`` handlers done),
        # the shared state starts over, once.
        state = self.admin.server.engine.state
        for scope in self.admin.state_scopes():
            await self.shared_state.exclusive(scope, functools.partial(state.reset, scope))
        return {"closed": closed, **_shortfall(asked)}

    async def state(self, file: str | None) -> tuple[str, dict[str, Any]]:
        scope = self.admin.file(file)
        return scope, await self.shared_state.exclusive(scope, lambda: self.admin.state(scope))

    async def set_state(self, value: Any, file: str | None) -> tuple[str, dict[str, Any]]:
        scope = self.admin.file(file)
        replaced = await self.shared_state.exclusive(
            scope, lambda: self.admin.set_state(value, scope)
        )
        return scope, replaced

    async def journal(
        self, since: str | None, connection: str | None, limit: int | None
    ) -> dict[str, Any]:
        cursor = parse_cursor(since)
        asked = await self._ask("journal", [cursor, connection, limit])
        events: list[dict[str, Any]] = []
        last: dict[str, int] = {}
        for answer in _oks(asked):
            events.extend(answer["events"])
            last[answer["process"]] = answer["last"]
        events.sort(key=lambda e: (e["time"], e.get("process", ""), e["seq"]))
        if limit is not None:
            events = events[:limit]
        after = {process: _since(cursor, process) for process in last}
        for event in events:
            after[event["process"]] = max(after.get(event["process"], 0), event["seq"])
        return {"events": events, "last": last, "next": format_cursor(after), **_shortfall(asked)}

    async def clear_journal(self) -> dict[str, Any]:
        asked = await self._ask("clear-journal", None)
        last = dict(answer for answer in _oks(asked))
        return {"cleared": True, "last": last, **_shortfall(asked)}

    async def _one(self, question: str, arguments: Any) -> dict[str, Any]:
        """The answer of the one process that has the connection ``arguments`` name."""
        asked = await self._ask(question, arguments)
        found = _oks(asked)
        if not found:
            raise _first_error(asked)
        answer: dict[str, Any] = found[0]
        return answer

    async def _ask(self, question: str, arguments: Any, extra: float = 0.0) -> Answers:
        try:
            return await self.backplane.ask_all(f"admin:{question}", arguments, ASK_TIMEOUT + extra)
        except BackplaneError as err:
            raise AdminError(503, f"{err}: the other processes cannot be asked") from None

    # ---- this process's part ---------------------------------------------------------------
    async def _local_health(self, arguments: Any) -> Any:
        return {
            "process": self.process,
            **self.admin.stamp,
            "pid": os.getpid(),
            "connections": len(self.admin.connections()),
        }

    async def _local_connections(self, arguments: Any) -> Any:
        return self.admin.connections()

    async def _local_send(self, body: Any) -> Any:
        return self.admin.send(_mapping(body))

    async def _local_close(self, arguments: Any) -> Any:
        connection, code, reason = arguments
        await self.admin.close(connection, code, reason)
        return True

    async def _local_session(self, arguments: Any) -> Any:
        (connection,) = arguments
        return {"connection": connection, "session": self.admin.session(connection)}

    async def _local_set_session(self, arguments: Any) -> Any:
        connection, value = arguments
        return {"connection": connection, "session": self.admin.set_session(connection, value)}

    async def _local_reset(self, arguments: Any) -> Any:
        return await self.admin.reset(state=False)

    async def _local_journal(self, arguments: Any) -> Any:
        cursor, connection, limit = arguments
        journal = self._journal()
        events = journal.events(
            since=_since(cursor, self.process), connection=connection, limit=limit
        )
        return {"process": self.process, "events": events, "last": journal.last_seq}

    async def _local_clear_journal(self, arguments: Any) -> Any:
        journal = self._journal()
        journal.clear()
        return [self.process, journal.last_seq]

    def _journal(self) -> Journal:
        journal = self.admin.server.journal
        if journal is None:
            raise AdminError(404, "this server keeps no journal")
        return journal


def parse_cursor(text: str | None) -> dict[str, int] | int:
    """``since`` of a cluster's journal: ``PROCESS:SEQ,PROCESS:SEQ`` (what ``next`` says), or
    a whole number for every process. Raises AdminError (400) for anything else."""
    if not text:
        return 0
    if text.isascii() and text.isdigit():
        return int(text)
    pairs = text.split(",")
    cursor: dict[str, int] = {}
    for pair in pairs:
        match = _CURSOR_PAIR.fullmatch(pair.strip())
        if match is None:
            raise AdminError(
                400,
                f"since must be a whole number, or the journal's next (PROCESS:SEQ,…), not "
                f"{text!r}",
            )
        cursor[match[1]] = int(match[2])
    return cursor


def format_cursor(after: Mapping[str, int]) -> str:
    return ",".join(f"{process}:{seq}" for process, seq in sorted(after.items()))


def _since(cursor: dict[str, int] | int, process: str) -> int:
    return cursor if isinstance(cursor, int) else cursor.get(process, 0)


def _answering(answer: Question) -> Question:
    """An answer to the others' question: ``{"ok": result}``, or ``{"error": message,
    "status": N}`` for what the admin API refuses (a connection this process does not have)."""

    async def answering(arguments: Any) -> Any:
        try:
            return {"ok": await answer(arguments)}
        except AdminError as err:
            return {"error": err.message, "status": err.status}

    return answering


def _oks(asked: Answers) -> list[Any]:
    return [answer["ok"] for answer in asked.answers.values() if "ok" in answer]


def _first_error(asked: Answers) -> AdminError:
    """The refusal to answer when no process did what was asked: the most telling one (a
    bad request before a 404), or 404 when no process answered at all."""
    refusals = [a for a in asked.answers.values() if "error" in a]
    refusals.sort(key=lambda a: a["status"] == 404)
    if refusals:
        return AdminError(refusals[0]["status"], refusals[0]["error"] + _missing_text(asked))
    return AdminError(404, "no process answered" + _missing_text(asked))


def _missing_text(asked: Answers) -> str:
    silent = asked.missing + len(asked.errors)
    if not silent:
        return ""
    return f" ({silent} process{'' if silent == 1 else 'es'} did not answer)"


def _shortfall(asked: Answers) -> dict[str, Any]:
    """What the answer says of the processes that did not answer: how many, and why."""
    shortfall: dict[str, Any] = {"missing": asked.missing}
    if asked.errors:
        shortfall["errors"] = dict(asked.errors)
    return shortfall


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AdminError(400, "the body must be a JSON object")
    return value

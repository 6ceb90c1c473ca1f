"""The admin API of a cluster: ``serve --workers 2 --backplane`` and two ``serve --backplane``
processes on two ports, a real Redis, real clients, real HTTP requests.

Each admin request is a new TCP connection, which the kernel hands to either worker: every
check is repeated until both workers have answered some of its requests (their logs say which
answered), so that each answer is shown right whichever worker gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    BOUND,
    NEEDS_REDIS,
    UNIT,
    RedisServer,
    ServedMock,
    async_test,
    closed,
    http_call,
    recv_json,
    start_mock,
)
from websockets.asyncio.client import ClientConnection, connect

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="serve --workers needs Linux"),
    *NEEDS_REDIS,
]

ROOMS = """\
state { note: "initial" }

route /ws/room {
  on connect { send { type: "hello", id: conn.id } }
  on message type "join" {
    join msg.room
    send { type: "joined", room: msg.room }
  }
  on message type "note" { send { type: "note", note: state.note } }
  on message type "session" { send { type: "session", session: session } }
}
"""
#: Clients per test: with the kernel hashing each to one of two workers, all of them land on
#: the same worker once in 2**11 runs.
CLIENTS = 12
#: Requests made for each check at least, and at most: they go on until both workers have
#: answered some.
TRIES = 4
MAX_TRIES = 60


def backplane(redis: RedisServer, prefix: str) -> tuple[str, ...]:
    return (
        *("--admin", "--backplane", redis.url(), "--backplane-prefix", prefix),
        *("--backplane-lease", str(0.3 * UNIT), "--backplane-retry", str(0.2 * UNIT)),
    )


@pytest.fixture(scope="module")
def rooms_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster-admin") / "rooms.mock"
    path.write_text(ROOMS, encoding="utf-8")
    return path


def start_workers(redis: RedisServer, rooms_file: Path, prefix: str) -> ServedMock:
    """``serve --workers 2 --backplane --admin`` of the rooms scenario."""
    return start_mock(rooms_file, extra=("--workers", "2", *backplane(redis, prefix)))


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, rooms_file: Path) -> Iterator[ServedMock]:
    served = start_workers(redis_server, rooms_file, "cluster-admin")
    yield served
    served.stop(signal.SIGKILL)


@pytest.fixture
def workers(cluster: ServedMock) -> ServedMock:
    """The module's two workers, reset: no client, the initial state, empty journals."""
    status, answer = http_call(cluster.port, "POST", "/__admin/reset")[::2]
    assert (status, answer["missing"]) == (200, 0), answer
    return cluster


@pytest.fixture
def own_workers(
    redis_server: RedisServer, rooms_file: Path, request: pytest.FixtureRequest
) -> Iterator[ServedMock]:
    """Two workers of the test's own, for a test that kills one."""
    served = start_workers(redis_server, rooms_file, request.node.name)
    yield served
    served.stop(signal.SIGKILL)


@pytest.fixture
def two_hosts(
    redis_server: RedisServer, rooms_file: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[ServedMock, ServedMock]]:
    """Two ``serve --backplane --admin`` processes on two ports, as on two hosts."""
    extra = backplane(redis_server, request.node.name)
    started = [start_mock(rooms_file, extra=extra) for _ in range(2)]
    yield started[0], started[1]
    for served in started:
        served.stop(signal.SIGKILL)


async def admin(served: ServedMock, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One admin request, from a thread: the test's clients, on its event loop, go on
    answering meanwhile (a close waits for their closing handshake)."""
    status, _, answer = await asyncio.to_thread(
        http_call, served.port, method, "/__admin" + path, body
    )
    return status, answer


def answered(served: ServedMock, path: str, since: int) -> set[int]:
    """The workers that logged answers to requests to ``path`` (or under it), in the log's
    lines from line ``since`` on."""
    pattern = re.compile(rf"\[worker (\d+)\] admin 127\.0\.0\.1 \S+ /__admin{re.escape(path)}")
    return {int(m[1]) for line in served.log.lines[since:] if (m := pattern.search(line))}


async def tries(served: ServedMock, path: str) -> AsyncIterator[int]:
    """0, 1, 2…: TRIES of them, and more until both workers have answered requests to
    ``path`` made meanwhile."""
    since = len(served.log.lines)
    for n in range(MAX_TRIES):
        if n >= TRIES and answered(served, path, since) == {1, 2}:
            return
        yield n
    raise AssertionError(f"{MAX_TRIES} requests to {path}, all answered by one worker")


async def each_try(served: ServedMock, method: str, path: str, body: object = None) -> list[Any]:
    """The answers to requests made as ``tries`` says, each asserted 200."""
    answers = []
    async for _ in tries(served, path.partition("?")[0]):
        status, answer = await admin(served, method, path, body)
        assert status == 200, answer
        answers.append(answer)
    return answers


class Client:
    def __init__(self, ws: ClientConnection, conn_id: str) -> None:
        self.ws = ws
        self.id = conn_id

    async def ask(self, message: dict[str, Any]) -> Any:
        await self.ws.send(json.dumps(message))
        return await recv_json(self.ws)


async def clients_in_room(served: ServedMock, room: str = "lobby") -> list[Client]:
    clients = []
    for _ in range(CLIENTS):
        ws = await connect(served.url("/ws/room"), open_timeout=BOUND)
        client = Client(ws, (await recv_json(ws))["id"])
        assert await client.ask({"type": "join", "room": room}) == {"type": "joined", "room": room}
        clients.append(client)
    return clients


@contextlib.asynccontextmanager
async def in_room(served: ServedMock) -> AsyncIterator[list[Client]]:
    """``clients_in_room``, closed at the end: the module's workers serve the next test."""
    clients = await clients_in_room(served)
    try:
        yield clients
    finally:
        await asyncio.gather(*(client.ws.close() for client in clients))


async def listing(served: ServedMock) -> dict[str, Any]:
    """The connections the admin API lists, by id: the same whichever process answers."""
    answers = await each_try(served, "GET", "/connections")
    ids = [sorted(row["id"] for row in answer["connections"]) for answer in answers]
    assert all(same == ids[0] for same in ids), ids
    assert all(answer["missing"] == 0 for answer in answers)
    return {row["id"]: row for row in answers[0]["connections"]}


# ---- --workers 2 ---------------------------------------------------------------------------


@async_test
async def test_the_listing_shows_the_connections_of_both_workers(workers: ServedMock) -> None:
    async with in_room(workers) as clients:
        rows = await listing(workers)
        assert sorted(rows) == sorted(c.id for c in clients)
        assert {row["worker"] for row in rows.values()} == {1, 2}
        assert all(row["rooms"] == ["lobby"] and row["process"] for row in rows.values())
        for health in await each_try(workers, "GET", "/health"):
            assert [(p["worker"], p["connections"]) for p in health["processes"]] == [
                (w, sum(row["worker"] == w for row in rows.values())) for w in (1, 2)
            ]


@async_test
async def test_a_push_to_a_room_reaches_its_members_on_both_workers(workers: ServedMock) -> None:
    async with in_room(workers) as clients:
        async for n in tries(workers, "/send"):
            news = {"type": "news", "n": n}
            status, answer = await admin(
                workers, "POST", "/send", {"room": "lobby", "message": news}
            )
            assert (status, answer) == (200, {"delivered": CLIENTS, "missing": 0})
            for client in clients:
                assert await recv_json(client.ws) == news
        # To one connection, wherever it is; one that no worker has is a 404.
        for client in clients:
            to_one = {"connection": client.id, "message": "just you"}
            assert await admin(workers, "POST", "/send", to_one) == (
                200,
                {"delivered": 1, "missing": 0},
            )
            assert await client.ws.recv() == "just you"
        nobody = {"connection": "nobody", "message": "?"}
        assert await admin(workers, "POST", "/send", nobody) == (
            404,
            {"error": "no open connection 'nobody'"},
        )


@async_test
async def test_sessions_and_closes_act_on_the_connection_wherever_it_is(
    workers: ServedMock,
) -> None:
    since = len(workers.log.lines)
    async with in_room(workers) as clients:
        for n, client in enumerate(clients):
            session = f"/connections/{client.id}/session"
            assert await admin(workers, "PUT", session, {"n": n}) == (
                200,
                {"connection": client.id, "session": {"n": n}},
            )
            assert await client.ask({"type": "session"}) == {"type": "session", "session": {"n": n}}
            assert await admin(workers, "GET", session) == (
                200,
                {"connection": client.id, "session": {"n": n}},
            )
        assert answered(workers, "/connections/", since) == {1, 2}
        for client in clients:
            status, answer = await admin(
                workers, "DELETE", f"/connections/{client.id}?code=4000&reason=bye"
            )
            assert (status, answer["closed"], answer["code"]) == (200, client.id, 4000)
            assert await closed(client.ws) == (4000, "bye")
        assert await listing(workers) == {}


@async_test
async def test_state_written_through_the_admin_api_is_read_by_every_worker(
    workers: ServedMock,
) -> None:
    async with in_room(workers) as clients:
        rows = await listing(workers)
        assert {row["worker"] for row in rows.values()} == {1, 2}
        async for n in tries(workers, "/state"):
            note = {"note": f"from the admin API {n}"}
            status, answer = await admin(workers, "PUT", "/state", note)
            assert (status, answer["state"]) == (200, note)
            # A handler on each worker reads it, whichever worker the request reached.
            for client in clients:
                assert await client.ask({"type": "note"}) == {"type": "note", **note}
            status, answer = await admin(workers, "GET", "/state")
            assert (status, answer["state"]) == (200, note)


@async_test
async def test_reset_resets_every_worker(workers: ServedMock) -> None:
    async with in_room(workers) as clients:
        assert (await admin(workers, "PUT", "/state", {"note": "changed"}))[0] == 200
        assert await admin(workers, "POST", "/reset") == (200, {"closed": CLIENTS, "missing": 0})
        for client in clients:
            assert await closed(client.ws) == (1012, "Service restart")
        assert await listing(workers) == {}
        states = [answer["state"] for answer in await each_try(workers, "GET", "/state")]
        assert states == [{"note": "initial"}] * len(states)
        # Every worker's journal starts over.
        assert all(answer["events"] == [] for answer in await each_try(workers, "GET", "/journal"))
    async with in_room(workers) as late:
        assert {(await client.ask({"type": "note"}))["note"] for client in late} == {"initial"}


@async_test
async def test_the_journal_gathers_every_workers_events_in_time_order(
    workers: ServedMock,
) -> None:
    async with in_room(workers) as clients:
        for answer in await each_try(workers, "GET", "/journal"):
            events = answer["events"]
            connects = [e for e in events if e["event"] == "connect"]
            assert sorted(e["connection"] for e in connects) == sorted(c.id for c in clients)
            assert {e["worker"] for e in events} == {1, 2}
            assert [e["time"] for e in events] == sorted(e["time"] for e in events)
            assert set(answer["last"]) == {e["process"] for e in events}
        # Following it: after ``next`` comes only what happened since.
        cursor = answer["next"]
        await clients[0].ask({"type": "note"})
        await clients[-1].ask({"type": "note"})
        # A process that did not answer in time (a loaded machine) is said in ``missing``,
        # and its events come at the next read: read until every process has answered.
        for _ in range(20):
            status, newer = await admin(workers, "GET", f"/journal?since={cursor}")
            assert status == 200
            if newer["missing"] == 0:
                break
        assert newer["missing"] == 0, newer
        assert [
            (e["event"], e.get("connection")) for e in newer["events"] if e["event"] == "in"
        ] == [
            ("in", clients[0].id),
            ("in", clients[-1].id),
        ]
        assert {e["event"] for e in newer["events"]} == {"in", "out"}
        # One connection's events, from whichever worker has it.
        for answer in await each_try(
            workers, "GET", f"/journal?connection={clients[3].id}&limit=2"
        ):
            assert [e["event"] for e in answer["events"]] == ["connect", "out"]
        status, answer = await admin(workers, "GET", "/journal?since=yesterday")
        assert (status, answer["error"]) == (
            400,
            "since must be a whole number, or the journal's next (PROCESS:SEQ,…), not 'yesterday'",
        )
        # Cleared on every worker.
        status, answer = await admin(workers, "DELETE", "/journal")
        assert (status, answer["cleared"], answer["missing"]) == (200, True, 0)
        assert set(answer["last"]) == set(newer["last"])
        assert all(answer["events"] == [] for answer in await each_try(workers, "GET", "/journal"))


@async_test
async def test_a_killed_workers_connections_leave_the_listing(own_workers: ServedMock) -> None:
    workers = own_workers
    clients = await clients_in_room(workers)
    rows = await listing(workers)
    status, health = await admin(workers, "GET", "/health")
    assert status == 200
    os.kill(next(p["pid"] for p in health["processes"] if p["worker"] == 1), signal.SIGKILL)
    workers.log.wait_for(r"worker 1 restarted")
    survivors = {conn_id for conn_id, row in rows.items() if row["worker"] == 2}
    assert set(await listing(workers)) == survivors
    for client in clients:
        if client.id not in survivors:
            assert (await closed(client.ws))[0] == 1006
    left = {"room": "lobby", "message": "who is left?"}
    assert await admin(workers, "POST", "/send", left) == (
        200,
        {"delivered": len(survivors), "missing": 0},
    )


# ---- two processes on two ports --------------------------------------------------------------


@async_test
async def test_the_admin_api_of_one_process_acts_on_the_other(
    two_hosts: tuple[ServedMock, ServedMock],
) -> None:
    a, b = two_hosts
    on_a, on_b = await clients_in_room(a), await clients_in_room(b)
    status, answer = await admin(a, "GET", "/connections")
    assert status == 200
    rows = {row["id"]: row for row in answer["connections"]}
    assert sorted(rows) == sorted(c.id for c in [*on_a, *on_b])
    process_of_a = {rows[c.id]["process"] for c in on_a}
    process_of_b = {rows[c.id]["process"] for c in on_b}
    assert len(process_of_a) == len(process_of_b) == 1 and process_of_a != process_of_b
    assert all("worker" not in row for row in rows.values())
    to_both = {"room": "lobby", "message": "to both hosts"}
    assert await admin(a, "POST", "/send", to_both) == (
        200,
        {"delivered": 2 * CLIENTS, "missing": 0},
    )
    for client in [*on_a, *on_b]:
        assert await client.ws.recv() == "to both hosts"
    assert (await admin(a, "DELETE", f"/connections/{on_b[0].id}?code=4001"))[0] == 200
    assert (await closed(on_b[0].ws))[0] == 4001


@async_test
async def test_a_process_that_does_not_answer_is_reported_missing(
    two_hosts: tuple[ServedMock, ServedMock],
) -> None:
    a, b = two_hosts
    on_a = await clients_in_room(a)
    await clients_in_room(b)
    os.kill(b.process.pid, signal.SIGSTOP)  # still subscribed, answering nothing
    try:
        half = {"room": "lobby", "message": "half"}
        (status, answer), sent = await asyncio.gather(
            admin(a, "GET", "/connections"), admin(a, "POST", "/send", half)
        )
        assert (status, answer["missing"]) == (200, 1)
        assert sorted(row["id"] for row in answer["connections"]) == sorted(c.id for c in on_a)
        assert sent == (200, {"delivered": CLIENTS, "missing": 1})
    finally:
        os.kill(b.process.pid, signal.SIGCONT)


@async_test
async def test_without_redis_the_admin_api_says_it_cannot_ask_the_others(
    rooms_file: Path,
) -> None:
    own = RedisServer().start()
    served = start_mock(rooms_file, extra=backplane(own, "alone"))
    try:
        clients = await clients_in_room(served)
        own.stop()
        status, answer = await admin(served, "GET", "/connections")
        assert status == 503
        assert answer["error"].endswith(": the other processes cannot be asked")
        # Its own clients are still served meanwhile.
        assert (await clients[0].ask({"type": "note"}))["note"] == "initial"
    finally:
        served.stop(signal.SIGKILL)
        own.stop()

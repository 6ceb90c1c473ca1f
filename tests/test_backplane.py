"""serve --backplane: several processes serving one mock through a real Redis.

A Redis server of the tests' own (Debian's ``redis-server``, on a free port, without
persistence) is started once for the module; the tests that stop it start one of their own.
Processes are real ``scenario-engine serve`` processes, clients real WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import socket
import sys
import time
from collections.abc import Iterator
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
    engine_connect,
    engine_of,
    frames,
    http_call,
    recv_json,
    run_cli,
    run_cli_process,
    serving,
    start_mock,
    wait_until,
    wait_until_async,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.sync.client import connect as sync_connect

from scenario_engine.language.loader import load_source
from scenario_engine.language.source import Source

pytestmark = NEEDS_REDIS

#: Short timings, so that failing over and reconnecting take a fraction of a second.
FAST = ("--backplane-lease", str(0.3 * UNIT), "--backplane-retry", str(0.2 * UNIT))

CLUSTER_MOCK = """\
state { highest: 0, accepted: 0 }

route /ws/chat {
  on connect { send { type: "connected", id: conn.id } }
  on message type "join" {
    join msg.room
    send { type: "joined", room: msg.room }
  }
  on message type "say" {
    broadcast { type: "said", text: msg.text } to msg.room
  }
  on message type "say-all" {
    broadcast { type: "said", text: msg.text } to msg.room include self
  }
  on message type "shout" {
    broadcast { type: "shouted", text: msg.text }
  }
  on close {
    broadcast { type: "left", id: conn.id } to conn.rooms
  }
}

route /ws/auction {
  on connect { send { type: "auction", you: conn.id, highest: state.highest } }
  on message type "bid" {
    if msg.amount > state.highest {
      set state.highest = msg.amount
      set state.accepted = state.accepted + 1
      broadcast { type: "new-high", amount: msg.amount, seq: state.accepted, by: conn.id }
          include self
    } else {
      send { type: "refused", amount: msg.amount, highest: state.highest }
    }
  }
}
"""


@pytest.fixture(scope="module")
def cluster_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "cluster.mock"
    path.write_text(CLUSTER_MOCK)
    return path


@pytest.fixture(scope="module")
def pair(redis_server: RedisServer, cluster_file: Path) -> Iterator[tuple[ServedMock, ServedMock]]:
    """Two processes serving cluster.mock through the module's Redis."""
    redis_server.client().flushall()
    extra = ("--backplane", redis_server.url(), *FAST)
    first = start_mock(cluster_file, extra=extra)
    second = start_mock(cluster_file, extra=extra)
    yield first, second
    for served in (first, second):
        served.stop()


async def expect_nothing(ws: ClientConnection, within: float = 0.2 * UNIT) -> None:
    with contextlib.suppress(TimeoutError):
        message = await asyncio.wait_for(ws.recv(), within)
        raise AssertionError(f"expected no message, got {message!r}")


# ---- broadcasts ------------------------------------------------------------------------------


@pytest.mark.e2e
@async_test
async def test_rooms_span_processes_with_the_same_rules_as_in_one(
    pair: tuple[ServedMock, ServedMock],
) -> None:
    """Two clients on each process in room r and one on the second in room other: a broadcast
    reaches the room's members on both processes once, the sender only with include self,
    and a broadcast without a room every other client of the route."""
    a, b = pair
    async with (
        connect(a.url("/ws/chat")) as a1,
        connect(a.url("/ws/chat")) as a2,
        connect(b.url("/ws/chat")) as b1,
        connect(b.url("/ws/chat")) as b2,
        connect(b.url("/ws/chat")) as other,
    ):
        clients = [a1, a2, b1, b2, other]
        for ws, room in zip(clients, ["r", "r", "r", "r", "other"], strict=True):
            assert (await recv_json(ws))["type"] == "connected"
            await ws.send(json.dumps({"type": "join", "room": room}))
            assert await recv_json(ws) == {"type": "joined", "room": room}

        await a1.send(json.dumps({"type": "say", "room": "r", "text": "from a1"}))
        for ws in (a2, b1, b2):
            assert await recv_json(ws) == {"type": "said", "text": "from a1"}

        await b1.send(json.dumps({"type": "say-all", "room": "r", "text": "from b1"}))
        for ws in (a1, a2, b1, b2):
            assert await recv_json(ws) == {"type": "said", "text": "from b1"}

        await b2.send(json.dumps({"type": "shout", "text": "from b2"}))
        for ws in (a1, a2, b1, other):
            assert await recv_json(ws) == {"type": "shouted", "text": "from b2"}

        # Nothing twice, nothing to the sender without include self, nothing to another room.
        await asyncio.gather(*(expect_nothing(ws) for ws in clients))


@pytest.mark.e2e
@async_test
async def test_a_senders_broadcasts_keep_their_order_on_the_other_process(
    pair: tuple[ServedMock, ServedMock],
) -> None:
    a, b = pair
    async with connect(a.url("/ws/chat")) as sender, connect(b.url("/ws/chat")) as receiver:
        for ws in (sender, receiver):
            await recv_json(ws)
            await ws.send(json.dumps({"type": "join", "room": "order"}))
            await recv_json(ws)
        for n in range(200):
            await sender.send(json.dumps({"type": "say", "room": "order", "text": str(n)}))
        received = [(await recv_json(receiver))["text"] for _ in range(200)]
        assert received == [str(n) for n in range(200)]


@pytest.mark.e2e
@async_test
async def test_mocks_apart_on_one_redis_do_not_hear_each_other(
    pair: tuple[ServedMock, ServedMock],
    redis_server: RedisServer,
    cluster_file: Path,
    tmp_path: Path,
) -> None:
    """Another mock (other files) on the same database, and the same mock on another
    database (pub/sub ignores databases: the default prefix holds the number), are apart."""
    a, _ = pair
    renamed = tmp_path / "other.mock"
    renamed.write_text(cluster_file.read_text())
    elsewhere = [
        start_mock(renamed, extra=("--backplane", redis_server.url(0), *FAST)),
        start_mock(cluster_file, extra=("--backplane", redis_server.url(1), *FAST)),
    ]
    try:
        assert len({prefix_of(served) for served in (a, *elsewhere)}) == 3
        async with contextlib.AsyncExitStack() as stack:
            sender = await stack.enter_async_context(connect(a.url("/ws/chat")))
            apart = [
                await stack.enter_async_context(connect(served.url("/ws/chat")))
                for served in elsewhere
            ]
            for ws in (sender, *apart):
                await recv_json(ws)
                await ws.send(json.dumps({"type": "join", "room": "r"}))
                await recv_json(ws)
            await sender.send(json.dumps({"type": "say", "room": "r", "text": "hello?"}))
            await apart[0].send(json.dumps({"type": "say", "room": "r", "text": "anyone?"}))
            await asyncio.gather(*(expect_nothing(ws, 0.3 * UNIT) for ws in (sender, *apart)))
    finally:
        for served in elsewhere:
            served.stop()


# ---- shared state ----------------------------------------------------------------------------


def check_auction(announced: list[list[dict[str, Any]]]) -> list[float]:
    """The accepted bids in the order they were accepted, checked: every client heard every
    accepted bid once; their numbers (``seq``: state.accepted after the bid) are 1, 2, 3…
    without a gap or a repeat; and each bid is higher than the one before.

    A lost update breaks this: two handlers that read ``state`` before either wrote it both
    accept, both with the same ``seq``, and the second may be lower than the first.
    """
    by_seq: dict[int, float] = {}
    for heard in announced:
        for message in heard:
            seen = by_seq.setdefault(message["seq"], message["amount"])
            assert seen == message["amount"], f"two bids accepted as number {message['seq']}"
    amounts = [by_seq[seq] for seq in sorted(by_seq)]
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), f"numbers {sorted(by_seq)}"
    assert all(x < y for x, y in itertools.pairwise(amounts)), amounts
    for heard in announced:
        assert sorted(m["seq"] for m in heard) == list(range(1, len(amounts) + 1))
    return amounts


def test_the_check_catches_a_lost_update() -> None:
    """Without a lock across processes, the naive way: each process reads the state from the
    store, runs the handler on its copy, writes it back. Two bids taken at once are then both
    accepted as number 1, and check_auction says so."""
    snapshot = {"highest": 0, "accepted": 0}
    announced: list[list[dict[str, Any]]] = []
    for amount in (10, 7):
        engine = engine_of(CLUSTER_MOCK)  # a process of its own…
        engine.state.replace("test.mock", snapshot)  # …that read the state before either bid
        conn = engine_connect(engine, "/ws/auction")
        effects = engine.message(conn, json.dumps({"type": "bid", "amount": amount}))
        announced.append(frames(effects, conn))
    assert [m["seq"] for heard in announced for m in heard] == [1, 1]
    with pytest.raises(AssertionError, match="two bids accepted as number 1"):
        check_auction(announced)


@pytest.mark.e2e
@async_test
async def test_concurrent_bids_on_both_processes_end_with_one_consistent_highest(
    pair: tuple[ServedMock, ServedMock], redis_server: RedisServer
) -> None:
    """Ten bidders on each process bid at once, each a little above the highest it heard of,
    fifteen times: every accepted bid is higher than the one accepted before it, numbered
    without a gap, heard once by every bidder on both processes, and the highest is the last."""
    a, b = pair
    clients_per_process, bids_each = 10, 15
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(connect(served.url("/ws/auction")))
            for served in (a, b)
            for _ in range(clients_per_process)
        ]
        heard: list[list[dict[str, Any]]] = [[] for _ in clients]
        ids = [(await recv_json(ws))["you"] for ws in clients]

        async def bidder(i: int) -> None:
            ws, me, highest = clients[i], ids[i], 0.0
            rng = random.Random(i)
            for _ in range(bids_each):
                amount = highest + rng.randint(1, 3)
                await ws.send(json.dumps({"type": "bid", "amount": amount}))
                while True:  # until the answer to this bid: its own new-high, or a refusal
                    message = await recv_json(ws)
                    if message["type"] == "refused":
                        highest = max(highest, message["highest"])
                        break
                    heard[i].append(message)
                    highest = max(highest, message["amount"])
                    if message["by"] == me and message["amount"] == amount:
                        break

        await asyncio.gather(*(bidder(i) for i in range(len(clients))))
        accepted = max(m["seq"] for messages in heard for m in messages)

        async def hear_the_rest(i: int) -> None:
            while len(heard[i]) < accepted:
                heard[i].append(await recv_json(clients[i]))

        await asyncio.gather(*(hear_the_rest(i) for i in range(len(clients))))
        amounts = check_auction(heard)
    assert len(amounts) >= clients_per_process, amounts  # bids did compete, and were taken
    stored = json.loads(redis_server.client().hget(_state_key(a, "cluster.mock"), "d"))
    assert stored == {"highest": amounts[-1], "accepted": len(amounts)}
    async with connect(b.url("/ws/auction")) as newcomer:
        assert (await recv_json(newcomer))["highest"] == amounts[-1]


def _state_key(served: ServedMock, name: str) -> str:
    return f"{prefix_of(served)}:state:{name}"


def prefix_of(served: ServedMock) -> str:
    """The prefix of a process's names in Redis, as its start says."""
    found = re.search(r"^backplane \S+, prefix (\S+),", "\n".join(served.printed), re.M)
    assert found is not None, served.printed
    return found[1]


# ---- route timers ----------------------------------------------------------------------------

TICKS_MOCK = """\
state { ticks: 0 }

route /ws/ticks {
  every 100ms {
    set state.ticks = state.ticks + 1
    broadcast { type: "tick", n: state.ticks }
  }
}
"""

LEADS = "this process runs the routes' own timers"


async def ticks_for(ws: ClientConnection, seconds: float, most: int = 1000) -> list[int]:
    """The numbers of the ticks ``ws`` hears in ``seconds`` (``most`` of them at most)."""
    heard: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    with contextlib.suppress(TimeoutError):
        while (remaining := deadline - loop.time()) > 0 and len(heard) < most:
            heard.append(json.loads(await asyncio.wait_for(ws.recv(), remaining))["n"])
    return heard


@pytest.mark.e2e
def test_route_timers_fire_once_per_cluster_and_fail_over(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A route's every 100ms runs on one process (ten ticks a second, each heard once by the
    clients of both); when that process is killed, the other takes over within the lease, and
    the count (in the shared state) goes on where it was."""
    (tmp_path / "ticks.mock").write_text(TICKS_MOCK)
    extra = ("--backplane", redis_server.url(2), *FAST)
    served = [start_mock(tmp_path / "ticks.mock", extra=extra) for _ in range(2)]
    try:
        assert wait_until(lambda: any(LEADS in s.stderr_text() for s in served))
        leader, other = sorted(served, key=lambda s: LEADS not in s.stderr_text())

        async def clients() -> None:
            async with (
                connect(leader.url("/ws/ticks")) as on_leader,
                connect(other.url("/ws/ticks")) as on_other,
            ):
                # 0.6 s: 6 ticks (7 when the window starts just before one, 8 with a late
                # one caught up); 12 if both processes ran the timer.
                heard = await asyncio.gather(ticks_for(on_leader, 0.6), ticks_for(on_other, 0.6))
                for numbers in heard:
                    assert 3 <= len(numbers) <= 9, numbers
                    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
                common = sorted(set(heard[0]) & set(heard[1]))
                assert len(common) >= len(heard[0]) - 2, heard  # the same ticks on both
                leader.process.kill()
                leader.process.wait()
                after = await ticks_for(on_other, 10 * 0.3 * UNIT, most=3)
                assert len(after) == 3, f"{after}: the timer did not go on after its process died"
                assert after[0] > heard[1][-1], (heard[1], after)
                assert after == list(range(after[0], after[0] + len(after)))

        asyncio.run(asyncio.wait_for(clients(), 20 * UNIT))
        assert other.log.wait_for(LEADS)
        assert "Traceback" not in other.stderr_text()
    finally:
        for s in served:
            s.stop()


# ---- faults ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_redis_lost_and_back_while_serving(cluster_file: Path) -> None:
    """Redis stops (and loses everything: no persistence) then starts again: meanwhile each
    process serves its own clients (broadcasts, state), once Redis is back broadcasts cross
    again and the state is shared again; each process logs the outage once, and its end once.
    Then one process stops: what its clients' on close broadcast still reaches the other."""
    own = RedisServer().start()
    served: list[ServedMock] = []
    try:
        extra = ("--backplane", own.url(), *FAST)
        served = [start_mock(cluster_file, extra=extra) for _ in range(2)]
        a, b = served

        async def clients() -> None:
            async with contextlib.AsyncExitStack() as stack:
                a1, a2, b1 = [
                    await stack.enter_async_context(connect(s.url("/ws/chat"))) for s in (a, a, b)
                ]
                bid_a, bid_b = [
                    await stack.enter_async_context(connect(s.url("/ws/auction"))) for s in (a, b)
                ]
                for ws in (a1, a2, b1):
                    await recv_json(ws)
                ids = {ws: (await recv_json(ws))["you"] for ws in (bid_a, bid_b)}
                for ws in (a1, a2, b1):
                    await ws.send(json.dumps({"type": "join", "room": "r"}))
                    await recv_json(ws)

                async def say(text: str, hearers: list[ClientConnection]) -> None:
                    await a1.send(json.dumps({"type": "say", "room": "r", "text": text}))
                    for ws in hearers:
                        assert await recv_json(ws) == {"type": "said", "text": text}

                async def bid(ws: ClientConnection, amount: int) -> dict[str, Any]:
                    await ws.send(json.dumps({"type": "bid", "amount": amount}))
                    return await recv_json(ws, skip=lambda m: m.get("by") not in (None, ids[ws]))

                await say("before", [a2, b1])
                own.stop()
                for s in served:
                    await asyncio.to_thread(s.log.wait_for, "backplane lost")
                await say("during", [a2])  # this process's own clients still hear it
                await expect_nothing(b1)
                assert (await bid(bid_a, 5))["type"] == "new-high"  # on A's own copy
                own.start()
                for s in served:
                    await asyncio.to_thread(s.log.wait_for, r"backplane back after \d")
                await say("after", [a2, b1])
                assert (await bid(bid_a, 100))["amount"] == 100
                refused = await bid(bid_b, 50)
                assert refused == {"type": "refused", "amount": 50, "highest": 100}
                # A stops: its clients' on close broadcasts reach B before it exits.
                a.process.terminate()
                left = [await recv_json(b1), await recv_json(b1)]
                assert {m["type"] for m in left} == {"left"} and len({m["id"] for m in left}) == 2

        asyncio.run(asyncio.wait_for(clients(), 30 * UNIT))
        assert a.process.wait(10 * UNIT) == 0
        for s in served:
            log = s.stderr_text()
            assert log.count("backplane lost") == 1, log
            assert len(re.findall(r"backplane back after", log)) == 1, log
            assert "Traceback" not in log
    finally:
        for s in served:
            s.stop()
        own.stop()


@pytest.mark.e2e
def test_redis_unreachable_at_start_is_one_line_and_exit_1(cluster_file: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens there once it is closed
    result = run_cli_process(
        "serve", cluster_file, "--port", "0", "--backplane", f"redis://:secret@127.0.0.1:{port}/0"
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"scenario-engine: error: cannot reach the backplane at redis://:***@127.0.0.1:{port}/0: "
    ), lines
    assert "Connection refused" in lines[0] and "secret" not in result.stderr


def test_without_redis_py_backplane_says_how_to_install_it(
    cluster_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if the extra were not installed
    result = run_cli("serve", cluster_file, "--backplane", "redis://127.0.0.1:6379/0")
    assert result.status == 2
    assert result.stderr == (
        "scenario-engine: error: --backplane needs redis-py: pip install 'scenario-engine[redis]'\n"
    )


def test_two_files_of_one_name_are_refused(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.mock").write_text(f"route /ws/{folder} {{}}\n")
    result = run_cli("serve", tmp_path, "--backplane", "redis://127.0.0.1:6379/0")
    assert result.status == 2
    assert "have the same name: with --backplane" in result.stderr


# ---- in this process: asking every process, the lock's fence, Redis losing the state ----------


def cluster_of(redis_server: RedisServer, prefix: str, lease: float = 5.0) -> Any:
    from scenario_engine.runtime.backplane import BackplaneSettings
    from scenario_engine.runtime.cluster import Cluster

    settings = BackplaneSettings(redis_server.url(), prefix, lease=lease, retry=0.2 * UNIT)
    return Cluster(settings, ["test.mock"])


@pytest.mark.e2e
@async_test
async def test_ask_all_collects_the_answer_of_every_process(redis_server: RedisServer) -> None:
    """What the admin API across processes builds on: a question to every process, each
    answering with what it holds; a process that does not know the question says so, and one
    that does not answer in time is counted as missing."""
    clusters = [cluster_of(redis_server, "ask") for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(serving(CLUSTER_MOCK, cluster=cluster))
            for cluster in clusters
        ]
        for server in servers[:2]:

            async def count(arguments: Any, server: Any = server) -> Any:
                return {"connections": sum(map(len, server.engine.connections)), **arguments}

            server.cluster.backplane.answer("count", count)

        async def slow(arguments: Any) -> Any:
            await asyncio.sleep(10 * UNIT)

        servers[2].cluster.backplane.answer("slow", slow)
        async with connect(servers[1].url("/ws/chat")):
            await wait_until_async(lambda: sum(map(len, servers[1].engine.connections)) == 1)
            answers = await servers[0].cluster.backplane.ask_all("count", {"x": 1}, BOUND)
        origins = [server.cluster.backplane.origin for server in servers]
        assert answers.answers == {
            origins[0]: {"connections": 0, "x": 1},
            origins[1]: {"connections": 1, "x": 1},
        }
        assert answers.errors == {origins[2]: "no answer to 'count' here"}
        assert answers.missing == 0
        started = time.monotonic()
        late = await servers[0].cluster.backplane.ask_all("slow", None, 0.2 * UNIT)
        assert late.missing == 1 and set(late.errors) == set(origins[:2])
        assert time.monotonic() - started < 2 * UNIT


@pytest.mark.e2e
@async_test
async def test_a_process_whose_lock_expired_cannot_overwrite_a_newer_state(
    redis_server: RedisServer,
) -> None:
    """The fence: a process holding a file's state stalls (its loop blocked) for longer than
    the lock lasts; another process takes the lock and accepts a bid; when the stalled one
    writes back, its write is refused, and Redis keeps the newer state."""
    from scenario_engine.runtime.background import BackgroundServer
    from scenario_engine.runtime.compiler import compile_program

    lease = 0.1 * UNIT
    loaded, errors = load_source(Source("test.mock", CLUSTER_MOCK))
    assert loaded is not None and not errors
    other = BackgroundServer(
        compile_program([loaded]), cluster=cluster_of(redis_server, "fence", lease)
    )
    stalled = cluster_of(redis_server, "fence", lease)
    with other:
        async with serving(CLUSTER_MOCK, cluster=stalled):

            def stall() -> None:
                # This process's loop stands still: the other process (its own thread) waits
                # for the lock, takes it once it expired, and takes a bid meanwhile.
                with sync_connect(other.url("/ws/auction"), open_timeout=BOUND) as bidder:
                    bidder.recv(BOUND)
                    bidder.send(json.dumps({"type": "bid", "amount": 42}))
                    assert json.loads(bidder.recv(BOUND))["amount"] == 42
                stalled.state.write("test.mock", ["highest"], 1)

            await stalled.state.exclusive("test.mock", stall)
        assert stalled.state.expired == 1
        stored = redis_server.client().hget("fence:state:test.mock", "d")
        assert json.loads(stored) == {"highest": 42, "accepted": 1}
        assert other.state() == {"highest": 42, "accepted": 1}


@pytest.mark.e2e
@async_test
async def test_a_state_redis_lost_is_written_back_from_the_processes_copy(
    redis_server: RedisServer,
) -> None:
    """Redis loses every key and its cached scripts (as a restart without persistence does):
    the next event that needs the state writes the process's copy back, and goes on from it."""
    async with serving(CLUSTER_MOCK, cluster=cluster_of(redis_server, "lost")) as server:
        async with connect(server.url("/ws/auction")) as bidder:
            await recv_json(bidder)
            await bidder.send(json.dumps({"type": "bid", "amount": 10}))
            assert (await recv_json(bidder))["seq"] == 1
            client = redis_server.client()
            assert client.keys("lost:state:*") == [b"lost:state:test.mock"]
            client.flushall()
            client.script_flush()
            await bidder.send(json.dumps({"type": "bid", "amount": 5}))
            assert await recv_json(bidder) == {"type": "refused", "amount": 5, "highest": 10}
            await bidder.send(json.dumps({"type": "bid", "amount": 20}))
            assert (await recv_json(bidder))["seq"] == 2
        stored = json.loads(redis_server.client().hget("lost:state:test.mock", "d"))
        assert stored == {"highest": 20, "accepted": 2}


@pytest.mark.e2e
@async_test
async def test_the_admin_apis_health_shows_the_backplane(redis_server: RedisServer) -> None:
    async with (
        serving(CLUSTER_MOCK, cluster=cluster_of(redis_server, "health"), admin=True) as server,
        connect(server.url("/ws/chat")) as ws,
    ):
        await recv_json(ws)
        await ws.send(json.dumps({"type": "shout", "text": "hello"}))
        await wait_until_async(lambda: server.cluster.backplane.published == 1)
        status, _, answer = await asyncio.to_thread(
            http_call, server.port, "GET", "/__admin/health"
        )
    assert status == 200
    backplane = answer["backplane"]
    assert backplane["url"] == redis_server.url() and backplane["prefix"] == "health"
    assert backplane["connected"] is True and backplane["leader"] is True
    assert (backplane["published"], backplane["dropped"], backplane["outages"]) == (1, 0, 0)

"""``serve --workers N``: real supervisors and workers joined by a real Redis, real clients
over real sockets.

Which worker served a client is read from the journal, where every event says its ``worker``.
Each cluster has a backplane prefix of its own: clusters of two tests never hear each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    BOUND,
    NEEDS_REDIS,
    ROOT,
    SCENARIOS,
    UNIT,
    LogTail,
    RedisServer,
    ServedMock,
    async_test,
    closed,
    recv,
    run_cli,
    run_cli_process,
    self_signed_certificate,
    start_mock,
    wait_until,
)
from websockets.asyncio.client import ClientConnection, connect

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="serve --workers needs Linux"),
    *NEEDS_REDIS,
]

ECHO = SCENARIOS / "echo.mock"
#: Enough clients that both workers get some: the kernel hashes each connection's addresses
#: to one of them, so all 16 land on one worker once in 2**15 runs.
CLIENTS = 16


def worker_pids(served: ServedMock) -> dict[int, int]:
    """Each worker's pid by index, as the supervisor logged them when they listened and
    when one was restarted."""
    served.log.wait_for("workers listening:")
    pids: dict[int, int] = {}
    for line in served.log.lines:
        if "workers listening:" in line:
            pids.update({int(i): int(p) for i, p in re.findall(r"(\d+) \(pid (\d+)\)", line)})
        elif match := re.search(r"worker (\d+) restarted \(pid (\d+)\)", line):
            pids[int(match[1])] = int(match[2])
    return pids


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def journal_events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def accepted_by(journal: Path) -> dict[str, object]:
    """The worker that accepted each connection of the journal, by connection id."""
    return {
        str(event["connection"]): event["worker"]
        for event in journal_events(journal)
        if event["event"] == "connect"
    }


def workers_of_clients(journal: Path) -> dict[int, object]:
    """The worker that served each client of ``echo_clients``, by the client's number (read
    from its first message)."""
    return {
        int(str(event["text"]).removeprefix("hello ")): event["worker"]
        for event in journal_events(journal)
        if event["event"] == "in" and str(event["text"]).startswith("hello ")
    }


async def echo_clients(served: ServedMock, count: int = CLIENTS) -> list[ClientConnection]:
    """``count`` clients of /echo, each answered once."""
    clients = [await connect(served.url("/echo"), open_timeout=BOUND) for _ in range(count)]
    for n, ws in enumerate(clients):
        await ws.send(f"hello {n}")
        assert await recv(ws) == f"hello {n}"
    return clients


def two_workers(redis: RedisServer, prefix: str) -> tuple[str, ...]:
    """The command-line words that make a cluster of two workers, apart from the others on
    ``redis`` by ``prefix``; with short timings, so that a worker killed holding the lease or
    a state's turn is taken over at once."""
    return (
        *("--workers", "2", "--backplane", redis.url(), "--backplane-prefix", prefix),
        *("--backplane-lease", str(0.3 * UNIT), "--backplane-retry", str(0.2 * UNIT)),
    )


@pytest.fixture
def workers(redis_server: RedisServer, request: pytest.FixtureRequest) -> tuple[str, ...]:
    """``two_workers`` with a prefix of the test's own."""
    return two_workers(redis_server, request.node.name)


def start_cluster(journal: Path, workers: tuple[str, ...]) -> ServedMock:
    """Two workers serving echo.mock, with a journal file."""
    return start_mock(ECHO, extra=(*workers, "--journal", str(journal)))


def stop_cluster(served: ServedMock) -> None:
    """Kill what is left of a cluster: the supervisor, and workers it left behind."""
    pids = worker_pids(served).values()
    if served.process.poll() is None:
        served.stop(signal.SIGKILL)
    for pid in pids:
        signal_pid(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[tuple[ServedMock, Path]]:
    """One cluster for the tests that leave it as they found it."""
    journal = tmp_path_factory.mktemp("shared") / "journal.jsonl"
    served = start_cluster(journal, two_workers(redis_server, "shared"))
    yield served, journal
    stop_cluster(served)


@pytest.fixture
def cluster(tmp_path: Path, workers: tuple[str, ...]) -> Iterator[tuple[ServedMock, Path]]:
    """A cluster of the test's own, for the tests that stop or kill a part of it."""
    journal = tmp_path / "journal.jsonl"
    served = start_cluster(journal, workers)
    yield served, journal
    stop_cluster(served)


def signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# ---- refusals --------------------------------------------------------------------------------


def test_more_than_one_worker_without_a_backplane_is_refused() -> None:
    result = run_cli("serve", ECHO, "--workers", "2")
    assert result.status == 2
    assert result.stderr.startswith("scenario-engine: error: --workers 2 needs --backplane")
    assert "rooms, broadcasts and state would be split between them" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_workers_must_be_a_positive_number() -> None:
    result = run_cli("serve", ECHO, "--workers", "0")
    assert result.status == 2
    assert "--workers: must be at least 1, not 0" in result.stderr


def test_the_worker_module_says_it_is_not_run_by_hand() -> None:
    worker = subprocess.run(
        [sys.executable, "-m", "scenario_engine.cli.worker"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20 * UNIT,
        stdin=subprocess.DEVNULL,
    )
    assert worker.returncode == 2
    assert worker.stderr == (
        "scenario-engine: error: scenario_engine.cli.worker is started by "
        "'scenario-engine serve --workers N', not by hand\n"
    )


# ---- a cluster at work -----------------------------------------------------------------------


@pytest.mark.e2e
@async_test
async def test_two_workers_share_one_port_and_the_clients(
    shared: tuple[ServedMock, Path],
) -> None:
    served, journal = shared
    assert served.ready.endswith(", 2 workers (Ctrl+C to stop)"), served.ready
    assert re.fullmatch(r"ready: 1 route on 127\.0\.0\.1:\d+, .+", served.ready)
    pids = worker_pids(served)
    assert sorted(pids) == [1, 2] and all(alive(pid) for pid in pids.values())
    before = set(accepted_by(journal))
    clients = await echo_clients(served)
    by_connection = {c: w for c, w in accepted_by(journal).items() if c not in before}
    assert len(by_connection) == CLIENTS
    assert set(by_connection.values()) == {1, 2}, by_connection
    for ws in clients:
        await ws.close()


@pytest.mark.e2e
@async_test
async def test_journal_lines_of_two_workers_stay_whole(shared: tuple[ServedMock, Path]) -> None:
    """Messages of 200 KB, echoed by both workers at once, journaled in one file: every line
    is one whole event, and says its worker."""
    served, journal = shared
    clients = await echo_clients(served, 8)
    big = ["x" * 200_000 + str(n) for n in range(len(clients))]
    await asyncio.gather(*(ws.send(text) for ws, text in zip(clients, big, strict=True)))
    for ws, text in zip(clients, big, strict=True):
        assert await recv(ws) == text
        await ws.close()
    events = journal_events(journal)  # json.loads fails on a line cut or mixed with another
    assert sorted(str(e["text"]) for e in events if e["event"] == "in" and e["text"] in big) == (
        sorted(big)
    )
    assert {e["worker"] for e in events} == {1, 2}


@pytest.mark.e2e
def test_journal_to_standard_output_passes_whole_lines(workers: tuple[str, ...]) -> None:
    """The same to standard output, which the supervisor passes on line by line."""
    served = start_mock(ECHO, extra=(*workers, "--journal", "-"))
    assert served.process.stdout is not None
    output = LogTail(served.process.stdout)
    big = ["y" * 100_000 + str(n) for n in range(8)]

    async def talk() -> None:
        clients = await echo_clients(served, 8)
        await asyncio.gather(*(ws.send(text) for ws, text in zip(clients, big, strict=True)))
        for ws, text in zip(clients, big, strict=True):
            assert await recv(ws) == text
            await ws.close()

    try:
        asyncio.run(asyncio.wait_for(talk(), 20 * UNIT))
    finally:
        assert served.stop() == 0
    output.join()
    shutdown = "shutting down: closing connections with 1001 (going away)"
    assert output.lines.count(shutdown) == 1
    events = [json.loads(line) for line in output.lines if line != shutdown]
    assert sorted(e["text"] for e in events if e["event"] == "in" and len(e["text"]) > 1000) == (
        sorted(big)
    )
    assert {e["worker"] for e in events} == {1, 2}


@pytest.mark.e2e
@async_test
async def test_a_killed_worker_is_restarted_and_serves(cluster: tuple[ServedMock, Path]) -> None:
    served, journal = cluster
    clients = await echo_clients(served)
    served_by = workers_of_clients(journal)
    victim = 1
    old = worker_pids(served)[victim]
    os.kill(old, signal.SIGKILL)
    served.log.wait_for(rf"worker {victim} \(pid {old}\) was killed by SIGKILL; restarting it")
    served.log.wait_for(rf"worker {victim} restarted \(pid \d+\)")
    new = worker_pids(served)[victim]
    assert new != old and alive(new)
    # The victim's clients were cut off; the other worker's are still served.
    for n, ws in enumerate(clients):
        if served_by[n] == victim:
            assert (await closed(ws))[0] == 1006
        else:
            await ws.send(f"still {n}")
            assert await recv(ws) == f"still {n}"
    # New clients are served by both workers, the restarted one among them.
    before = set(accepted_by(journal))
    await echo_clients(served)
    fresh = {c: w for c, w in accepted_by(journal).items() if c not in before}
    assert len(fresh) == CLIENTS and set(fresh.values()) == {1, 2}, fresh


@pytest.mark.e2e
@async_test
async def test_sigterm_closes_every_client_with_1001_and_every_process_exits(
    cluster: tuple[ServedMock, Path],
) -> None:
    served, journal = cluster
    clients = await echo_clients(served)
    assert set(workers_of_clients(journal).values()) == {1, 2}
    pids = worker_pids(served).values()
    served.process.send_signal(signal.SIGTERM)
    for ws in clients:
        assert await closed(ws) == (1001, "")
    assert await asyncio.to_thread(served.process.wait, BOUND) == 0
    assert not any(alive(pid) for pid in pids)
    closes = [e for e in journal_events(journal) if e["event"] == "close"]
    assert sorted(e["code"] for e in closes) == [1001] * CLIENTS  # type: ignore[type-var]


@pytest.mark.e2e
@async_test
async def test_workers_stop_when_the_supervisor_is_killed(
    cluster: tuple[ServedMock, Path],
) -> None:
    served, journal = cluster
    clients = await echo_clients(served)
    assert set(workers_of_clients(journal).values()) == {1, 2}
    pids = worker_pids(served).values()
    served.process.kill()
    # Each worker sees its link to the supervisor end, and stops as on SIGTERM.
    for ws in clients:
        assert await closed(ws) == (1001, "")
    assert await asyncio.to_thread(wait_until, lambda: not any(alive(p) for p in pids))


@pytest.mark.e2e
def test_a_worker_that_keeps_dying_at_start_is_restarted_ever_later(
    tmp_path: Path, workers: tuple[str, ...]
) -> None:
    """A worker restarted while the files have an error exits at once: the supervisor waits
    longer before each new try, says so, and serves with it again once the files load."""
    scenario = tmp_path / "echo.mock"
    scenario.write_text(ECHO.read_text(encoding="utf-8"), encoding="utf-8")
    served = start_mock(scenario, extra=workers)
    try:
        victim = 2
        old = worker_pids(served)[victim]
        scenario.write_text("route /echo {\n  on message { sned raw }\n}\n", encoding="utf-8")
        os.kill(old, signal.SIGKILL)
        served.log.wait_for(rf"worker {victim} \(pid {old}\) was killed by SIGKILL; restarting it$")
        served.log.wait_for(r"echo\.mock:2:\d+: error: ")  # what the new worker says
        served.log.wait_for(
            rf"worker {victim} \(pid \d+\) exited with status 1 [\d.]+ s after it started, "
            r"2 times in a row; restarting it in 0\.5 s"
        )
        served.log.wait_for(r"3 times in a row; restarting it in 1 s")
        scenario.write_text(ECHO.read_text(encoding="utf-8"), encoding="utf-8")
        served.log.wait_for(rf"worker {victim} restarted \(pid \d+\)")
        assert alive(worker_pids(served)[victim])
    finally:
        assert served.stop() == 0


@pytest.mark.e2e
def test_a_port_in_use_is_reported_once(workers: tuple[str, ...]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli_process("serve", ECHO, "--port", str(port), *workers)
    assert result.returncode == 1
    assert result.stderr == (
        f"scenario-engine: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


@pytest.mark.e2e
def test_a_cluster_does_not_share_the_port_of_another(
    shared: tuple[ServedMock, Path], workers: tuple[str, ...]
) -> None:
    """SO_REUSEPORT would let a second cluster of the same user join the first one's port and
    take half its clients: it is refused instead."""
    served, _ = shared
    result = run_cli_process("serve", ECHO, "--port", str(served.port), *workers)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"scenario-engine: error: cannot listen on 127.0.0.1:{served.port}: Address already "
        "in use (a server of this user listens there with SO_REUSEPORT"
    )


VERSION = """
route /version {
  on connect { send { version: VERSION } }
}
"""


@pytest.mark.e2e
@async_test
async def test_every_worker_serves_tls_and_reloads_what_it_watches(
    tmp_path: Path, workers: tuple[str, ...]
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    app, journal = tmp_path / "app.mock", tmp_path / "journal.jsonl"
    app.write_text(VERSION.replace("VERSION", "1"), encoding="utf-8")
    tls = ("--certfile", str(cert), "--keyfile", str(key))
    served = start_mock(app, extra=(*workers, *tls, "--watch", "--journal", str(journal)))
    trusting = ssl.create_default_context(cafile=str(cert))

    async def versions() -> dict[object, set[object]]:
        """The versions each worker served to new clients (from the journal's ``out``)."""
        for _ in range(CLIENTS):
            async with connect(served.url("/version"), ssl=trusting, open_timeout=BOUND) as ws:
                await recv(ws)
        sent = [e for e in journal_events(journal) if e["event"] == "out"][-CLIENTS:]
        by_worker: dict[object, set[object]] = {}
        for event in sent:
            by_worker.setdefault(event["worker"], set()).add(
                json.loads(str(event["text"]))["version"]
            )
        return by_worker

    try:
        assert served.urls == [served.url("/version")] and served.base.startswith("wss://")
        assert await versions() == {1: {1}, 2: {1}}
        app.write_text(VERSION.replace("VERSION", "2"), encoding="utf-8")
        served.log.wait_for(r"INFO \[worker 1\] reloaded \S*app\.mock")
        served.log.wait_for(r"INFO \[worker 2\] reloaded \S*app\.mock")
        assert await versions() == {1: {2}, 2: {2}}
    finally:
        assert await asyncio.to_thread(served.stop) == 0


@pytest.mark.e2e
@async_test
async def test_ctrl_c_of_the_process_group_stops_the_cluster_once(
    cluster: tuple[ServedMock, Path],
) -> None:
    """A terminal's Ctrl+C signals every process of the group: the workers leave it to the
    supervisor, which stops them, instead of stopping on their own and being restarted."""
    served, _ = cluster
    clients = await echo_clients(served, 4)
    # The workers first: were they to stop, the supervisor would see them die.
    for pid in (*worker_pids(served).values(), served.process.pid):
        os.kill(pid, signal.SIGINT)
    for ws in clients:
        assert await closed(ws) == (1001, "")
    assert await asyncio.to_thread(served.process.wait, BOUND) == 0
    assert "restarting" not in served.stderr_text()

"""``serve --watch``, end to end: a real server process watching a real folder, real clients,
files edited on disk as editors save them.

Each step waits for the reload's log line (never for a fixed time), then checks what the
clients see: kept clients still served with their rooms and session, the others closed with
1012, the new version served to new clients, a version with errors reported and not served.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from support import (
    BOUND,
    ServedMock,
    async_test,
    closed,
    handshake_status,
    http_call,
    recv_json,
    self_signed_certificate,
    serving,
    wait_until,
    wait_until_async,
)
from websockets.asyncio.client import ClientConnection, connect

from scenario_engine.language.loader import load_source
from scenario_engine.language.source import Source
from scenario_engine.runtime.compiler import compile_program

pytestmark = pytest.mark.e2e

RESTART = (1012, "Service restart")

APP = """
route /keep {
  on message type "join" {
    join "lobby"
    set session.name = msg.name
    send { type: "joined", name: msg.name }
  }
  on message type "say" {
    broadcast { type: "said", by: session.name, text: msg.text } to "lobby" include self
  }
}

route /change {
  on connect { send { version: 1 } }
}

route /remove {
  on connect { send { type: "here" } }
}
"""

#: /keep as it was (two lines further down), /change edited, /remove gone, /add new.
APP_EDITED = (
    "# a comment: /keep moves down, and is not changed by that\n\n"
    + APP.replace("version: 1", "version: 2").split("route /remove")[0]
    + 'route /add {\n  on connect { send { type: "added" } }\n}\n'
)


def save(path: Path, text: str) -> None:
    """Save as editors do: into a temporary file renamed over the original."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def logged(served: ServedMock, pattern: str, within: float = BOUND) -> str:
    """The first line logged since the last one this returned that matches ``pattern``."""
    regex = re.compile(pattern)
    found: list[str] = []

    def look() -> bool:
        for index, line in enumerate(served.log.since_mark()):
            if regex.search(line):
                found.append(line)
                served.log.start += index + 1
                return True
        return False

    assert wait_until(look, within), (
        f"no log line matching {pattern!r} within {within:.1f}s; log:\n"
        + "\n".join(served.log.lines[-30:])
    )
    return found[0]


async def drained(ws: ClientConnection, within: float = BOUND) -> tuple[int | None, str | None]:
    """Read what is still sent until the server closes; (code, reason)."""
    try:
        while True:
            await recv_json(ws, within, "the close")
    except AssertionError:  # what recv says of a close, or of nothing within the bound
        if ws.close_code is None:
            raise
    return ws.close_code, ws.close_reason


@async_test
async def test_unchanged_routes_keep_their_clients_changed_ones_restart(
    tmp_path: Path, serve: Callable[..., ServedMock]
) -> None:
    app = tmp_path / "app.mock"
    app.write_text(APP, encoding="utf-8")
    served = serve(tmp_path, extra=("--watch",))
    async with (
        connect(served.url("/keep")) as ann,
        connect(served.url("/keep")) as bob,
        connect(served.url("/change")) as changing,
        connect(served.url("/remove")) as removed,
    ):
        for ws, name in ((ann, "Ann"), (bob, "Bob")):
            await ws.send(json.dumps({"type": "join", "name": name}))
            assert await recv_json(ws) == {"type": "joined", "name": name}
        assert await recv_json(changing) == {"version": 1}
        assert await recv_json(removed) == {"type": "here"}

        save(app, APP_EDITED)
        line = logged(served, r"reloaded ")
        assert re.search(
            r"reloaded \S*app\.mock in \d+ ms: added /add; changed /change; removed /remove; "
            r"kept 2 clients, closed 2 \(1012\)$",
            line,
        ), line
        assert await closed(changing) == RESTART
        assert await closed(removed) == RESTART
        # Ann and Bob are still connected, in their room, with their session.
        await bob.send(json.dumps({"type": "say", "text": "still here?"}))
        said = {"type": "said", "by": "Bob", "text": "still here?"}
        assert await recv_json(ann) == said and await recv_json(bob) == said
        async with connect(served.url("/keep")) as carol:
            await carol.send(json.dumps({"type": "join", "name": "Carol"}))
            assert await recv_json(carol) == {"type": "joined", "name": "Carol"}
            await carol.send(json.dumps({"type": "say", "text": "hi"}))
            # In the same room as the clients of the version before.
            assert (await recv_json(ann))["by"] == "Carol"
            assert (await recv_json(bob))["by"] == "Carol"
        async with connect(served.url("/change")) as again:
            assert await recv_json(again) == {"version": 2}
        async with connect(served.url("/add")) as added:
            assert await recv_json(added) == {"type": "added"}
        assert (await handshake_status(served.url("/remove"))).response.status_code == 404

        # A version with an error is reported as `check` reports it, and not served.
        broken = APP_EDITED.replace("send { version: 2 }", "sned { version: 3 }")
        save(app, broken)
        error = logged(served, r"app\.mock:\d+:\d+: error: ")
        at = served.log.lines.index(error)
        row = re.search(r":(\d+):(\d+): error", error)
        assert row is not None
        assert served.log.lines[at + 1].startswith(f"{int(row[1]):>5} | ")
        assert "sned" in served.log.lines[at + 1] and "^" in served.log.lines[at + 2]
        assert re.search(
            r"not reloaded \(\S*app\.mock changed\): \d+ errors?; serving the previous version$",
            logged(served, r"not reloaded"),
        )
        async with connect(served.url("/change")) as still:
            assert await recv_json(still) == {"version": 2}
        await ann.send(json.dumps({"type": "say", "text": "and now?"}))
        assert (await recv_json(bob))["text"] == "and now?"


COUNTER = """
state { count: 0 }

route /count {
  on message type "add" {
    set state.count = state.count + 1
    send { count: state.count }
  }
}

route /tick {
  every 50ms { broadcast { n: timer.count } }
}
"""


#: A reload that changed something. On a loaded machine a burst of writes may reach the
#: watcher in two batches, and the second (the file as the first left it) changes nothing.
CHANGED = r"reloaded \S+ in \d+ ms: (?!no route changed)"


async def ticks(ws: ClientConnection, count: int) -> list[int]:
    return [(await recv_json(ws))["n"] for _ in range(count)]


@async_test
async def test_state_and_route_timers_across_reloads(
    tmp_path: Path, serve: Callable[..., ServedMock]
) -> None:
    counter = tmp_path / "counter.mock"
    counter.write_text(COUNTER, encoding="utf-8")
    served = serve(tmp_path, extra=("--watch",))
    async with connect(served.url("/count")) as adding, connect(served.url("/tick")) as ticking:
        for expected in (1, 2):
            await adding.send('{"type": "add"}')
            assert await recv_json(adding) == {"count": expected}
        before = await ticks(ticking, 2)

        # A burst of writes, as an editor's save, and files that are not scenarios: one
        # reload, of the scenario only.
        edited = COUNTER.replace("send { count: state.count }", "send { count: state.count, v: 2 }")
        for attempt in range(5):
            counter.write_text(edited if attempt % 2 else COUNTER, encoding="utf-8")
            save(counter, edited)
        for noise in (".counter.mock.swp", "counter.mock~", "4913", "notes.txt"):
            (tmp_path / noise).write_text("not a scenario {", encoding="utf-8")
        os.symlink("someone@host.4242:1", tmp_path / ".#counter.mock")  # Emacs's lock file
        line = logged(served, CHANGED)
        assert re.search(
            r"reloaded \S*/counter\.mock in \d+ ms: changed /count; state of \S*counter\.mock "
            r"kept; kept 1 client, closed 1 \(1012\)$",
            line,
        ), line
        assert await closed(adding) == RESTART
        async with connect(served.url("/count")) as again:
            await again.send('{"type": "add"}')
            assert await recv_json(again) == {"count": 3, "v": 2}
        # The route timer of the unchanged /tick went on through the reload: no tick lost,
        # none doubled.
        after = await ticks(ticking, 6)
        assert after == list(range(before[-1] + 1, before[-1] + 7))

        # A new state block: the state starts over, and every route of its file restarts.
        save(counter, edited.replace("count: 0", "count: 100"))
        line = logged(served, CHANGED)
        assert re.search(
            r"changed /count, /tick; state of \S*counter\.mock reset; kept 0 clients, "
            r"closed 1 \(1012\)$",
            line,
        ), line
        assert await drained(ticking) == RESTART
        async with connect(served.url("/count")) as fresh, connect(served.url("/tick")) as new:
            await fresh.send('{"type": "add"}')
            assert await recv_json(fresh) == {"count": 101, "v": 2}
            assert await ticks(new, 3) == [1, 2, 3]  # one new timer
    reloads = [line for line in served.log.lines if "reloaded " in line]
    assert len(reloads) == 2, reloads


@async_test
async def test_the_admin_api_and_the_journal_across_a_reload(
    tmp_path: Path, serve: Callable[..., ServedMock]
) -> None:
    app = tmp_path / "app.mock"
    app.write_text(APP, encoding="utf-8")
    journal = tmp_path / "journal.jsonl"
    served = serve(
        tmp_path,
        extra=("--watch", "--admin", "--journal", str(journal), "--loop", "asyncio"),
    )
    assert "asyncio loop" in served.ready
    async with connect(served.url("/keep")) as ann:
        await ann.send(json.dumps({"type": "join", "name": "Ann"}))
        await recv_json(ann)
        save(app, APP_EDITED)
        logged(served, r"reloaded ")
        status, _, health = http_call(served.port, "GET", "/__admin/health")
        assert status == 200 and health["routes"] == ["/keep", "/change", "/add"]
        status, _, listed = http_call(served.port, "GET", "/__admin/connections")
        assert status == 200
        assert [(c["route"], c["session"]) for c in listed["connections"]] == [
            ("/keep", {"name": "Ann"})
        ]
        status, _, _ = http_call(
            served.port, "POST", "/__admin/send", {"route": "/keep", "message": {"to": "all"}}
        )
        assert status == 200 and await recv_json(ann) == {"to": "all"}
    events = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    (reload,) = [event for event in events if event["event"] == "reload"]
    assert {key: reload[key] for key in ("added", "changed", "removed", "kept", "closed")} == {
        "added": ["/add"],
        "changed": ["/change"],
        "removed": ["/remove"],
        "kept": 1,
        "closed": 0,
    }


@async_test
async def test_a_single_file_over_tls(tmp_path: Path, serve: Callable[..., ServedMock]) -> None:
    """A file given by name is watched too (through its folder: editors replace the file)."""
    cert, key = self_signed_certificate(tmp_path)
    app = tmp_path / "app.mock"
    app.write_text(APP, encoding="utf-8")
    served = serve(app, extra=("--watch", "--certfile", str(cert), "--keyfile", str(key)))
    trusting = ssl.create_default_context(cafile=str(cert))
    async with connect(served.url("/keep"), ssl=trusting) as ann:
        await ann.send(json.dumps({"type": "join", "name": "Ann"}))
        await recv_json(ann)
        save(app, APP_EDITED)
        logged(served, r"reloaded \S*app\.mock .*kept 1 client, closed 0$")
        async with connect(served.url("/change"), ssl=trusting) as again:
            assert await recv_json(again) == {"version": 2}
        await ann.send(json.dumps({"type": "say", "text": "over TLS"}))
        assert (await recv_json(ann))["by"] == "Ann"


SLOW_AUTH = """
route /slow {
  auth {
    wait 300ms
    accept { who: "anyone" }
  }
  on connect { send { version: 1 } }
}

route /other {
  on connect { send { type: "other" } }
}
"""


@async_test
async def test_a_handshake_waiting_for_its_auth_block_meets_the_new_version() -> None:
    """In this process, the reload called directly: the handshake began on the old version
    of its route; when its auth block is done, that version is gone, and the client gets 1012."""
    async with serving(SLOW_AUTH) as server:

        async def open_slow() -> ClientConnection:
            return await connect(server.url("/slow"), open_timeout=BOUND)

        slow = asyncio.create_task(open_slow())
        assert await wait_until_async(lambda: server._authenticating)
        edited, errors = load_source(
            Source("test.mock", SLOW_AUTH.replace("version: 1", "version: 2"))
        )
        assert edited is not None and not errors
        reloaded = server.reload(compile_program([edited], server.engine.program))
        assert reloaded.changes.changed == ("/slow",) and reloaded.changes.kept == ("/other",)
        ws = await slow
        assert await closed(ws) == RESTART
        async with connect(server.url("/slow")) as again:
            assert await recv_json(again) == {"version": 2}

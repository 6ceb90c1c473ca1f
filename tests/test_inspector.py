"""``serve --ui``: the inspector page in a real browser, its files and headers, and its feed.

The browser tests drive headless Chromium with Selenium and Debian's chromedriver, one browser
for the module, against one ``serve scenarios/ --ui``: real clients (websockets' own) connect
and talk, and the page must show them; what the page does (a push, a close, a new state) must
reach the clients and the admin API. Every wait is on a condition, bounded by BOUND.

The feed's checks (who may open it) and its bounds are tested with plain clients, in a process
or in this one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html.parser
import importlib.resources
import json
import logging
import os
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    BOUND,
    SCENARIOS,
    SELENIUM_MISSING,
    UNIT,
    ServedMock,
    async_test,
    handshake_status,
    http_call,
    needs,
    recv_json,
    run_cli,
    selenium_chromium,
    serving,
    start_mock,
    wait_until,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection as SyncClient
from websockets.sync.client import connect as sync_connect
from websockets.typing import Origin

from scenario_engine.runtime import inspector
from scenario_engine.runtime.background import BackgroundServer

pytestmark = pytest.mark.e2e

browser_test = needs(
    SELENIUM_MISSING is not None, reason=f"the inspector's browser tests: {SELENIUM_MISSING}"
)

CHAT = "/api/ws/chat"
ECHO = "/echo"
PAGE_FILES = ("index.html", "inspector.js", "inspector.css", "favicon.svg")
#: A route that sends every message back, served in this process.
ECHO_SCENARIO = "route /echo {\n  on message {\n    send raw\n  }\n}\n"


@pytest.fixture(scope="module")
def inspected() -> Iterator[ServedMock]:
    """Every example scenario served with the inspector, for the whole module."""
    served = start_mock(SCENARIOS, extra=("--ui",))
    yield served
    served.stop()


def feed_url(served: ServedMock) -> str:
    return served.url(inspector.FEED_PATH)


# ---- the page's files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/__admin/", "text/html; charset=utf-8"),
        ("/__admin", "text/html; charset=utf-8"),
        ("/__admin/inspector.js", "text/javascript; charset=utf-8"),
        ("/__admin/inspector.css", "text/css; charset=utf-8"),
        ("/__admin/favicon.svg", "image/svg+xml"),
    ],
)
def test_the_page_is_served_with_its_type_and_strict_headers(
    inspected: ServedMock, path: str, content_type: str
) -> None:
    status, response, body = http_call(inspected.port, "GET", path)
    assert status == 200, body
    assert response.getheader("Content-Type") == content_type
    policy = response.getheader("Content-Security-Policy") or ""
    directives = {part.split()[0]: part.split()[1:] for part in policy.split("; ")}
    assert directives["default-src"] == ["'none'"], policy
    assert directives["script-src"] == ["'self'"], policy  # no inline script, no other site
    assert directives["connect-src"] == ["'self'"], policy
    assert directives["frame-ancestors"] == ["'none'"], policy
    assert response.getheader("X-Frame-Options") == "DENY"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Cache-Control") == "no-store"


def test_the_page_is_refused_like_the_admin_api(inspected: ServedMock) -> None:
    status, _, body = http_call(
        inspected.port, "GET", "/__admin/", headers={"Host": "evil.example"}
    )
    assert status == 403 and "evil.example is not a name of this server" in body
    status, response, _ = http_call(inspected.port, "POST", "/__admin/inspector.js", body="x")
    assert status == 405 and response.getheader("Allow") == "GET, HEAD"


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data


def test_the_page_has_no_inline_script_or_style() -> None:
    # The policy would block them anyway: this keeps the page working under it.
    parser = _Tags()
    parser.feed(_page_file("index.html").decode())
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"src": "/__admin/inspector.js", "defer": None}]
    assert parser.script_text.strip() == ""
    for tag, attrs in parser.tags:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
        assert "style" not in attrs, (tag, attrs)
    # Nothing of what clients send may become markup: the script writes text only.
    code = re.sub(r"^\s*//.*$", "", _page_file("inspector.js").decode(), flags=re.M)
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", code)


def test_the_page_files_ship_in_the_package() -> None:
    """Read as the installed package reads them (importlib.resources): the wheel carries
    whatever is in the package's folder."""
    page = _page_file("index.html").decode()
    for name in PAGE_FILES:
        assert _page_file(name), name
        if name != "index.html":
            assert f"/__admin/{name}" in page, name


def _page_file(name: str) -> bytes:
    files = importlib.resources.files("scenario_engine.runtime")
    return files.joinpath("inspector_page", name).read_bytes()


# ---- the feed --------------------------------------------------------------------------------


@async_test
async def test_the_feed_sends_a_snapshot_then_what_happens(inspected: ServedMock) -> None:
    async with connect(feed_url(inspected), open_timeout=BOUND) as feed:
        snapshot = await recv_json(feed, what="the snapshot")
        assert snapshot["type"] == "snapshot" and snapshot["version"] == 1
        assert CHAT in [route["path"] for route in snapshot["routes"]]
        assert any(file.endswith("auction.mock") for file in snapshot["files"])
        assert {"connections", "state", "events", "last"} <= set(snapshot)
        async with connect(inspected.url(CHAT), open_timeout=BOUND) as chat:
            conn_id = (await recv_json(chat))["id"]
            await chat.send(json.dumps({"type": "join", "username": "Feed"}))
            events: list[dict[str, Any]] = []
            row: dict[str, Any] = {}
            deadline = time.monotonic() + BOUND
            while not (row.get("rooms") == ["chat"] and _has(events, "in", conn_id)):
                assert time.monotonic() < deadline, (events, row)
                update = await recv_json(feed, what="an update")
                assert update["type"] == "update", update
                events += update.get("events", [])
                row = next((r for r in update.get("connections", []) if r["id"] == conn_id), row)
            assert _has(events, "connect", conn_id)
            assert row["route"] == CHAT and row["ip"] == "127.0.0.1", row
            seqs = [event["seq"] for event in events]
            assert seqs == sorted(seqs), "events come oldest first"
        removed: list[str] = []
        while conn_id not in removed:
            removed += (await recv_json(feed, what="the row's removal")).get("removed", [])


def _has(events: list[dict[str, Any]], kind: str, conn_id: str) -> bool:
    return any(e["event"] == kind and e.get("connection") == conn_id for e in events)


@async_test
async def test_the_feed_opens_for_its_own_origin_and_for_clients_without_one(
    inspected: ServedMock,
) -> None:
    own = Origin(f"http://127.0.0.1:{inspected.port}")
    for origin in (own, None):
        async with connect(feed_url(inspected), origin=origin, open_timeout=BOUND) as feed:
            assert (await recv_json(feed))["type"] == "snapshot"


@async_test
async def test_the_feed_refuses_a_page_of_another_site(inspected: ServedMock) -> None:
    """Cross-site WebSocket hijacking: a page of another site may make the browser open a
    WebSocket to 127.0.0.1, with that page's Origin."""
    for origin in ("http://evil.example", f"http://localhost.evil.example:{inspected.port}"):
        refusal = await handshake_status(feed_url(inspected), origin=Origin(origin))
        assert refusal.response.status_code == 403
        assert b"cross-site request refused" in refusal.response.body


def test_the_feed_refuses_a_host_that_is_not_this_server(inspected: ServedMock) -> None:
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 reaches the
    port, but its handshake says ``Host: evil.example``."""
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    for host, origin in (("evil.example", "http://evil.example"), ("evil.example:80", None)):
        headers = {**upgrade, "Host": host, **({"Origin": origin} if origin else {})}
        status, _, body = http_call(inspected.port, "GET", inspector.FEED_PATH, headers=headers)
        assert status == 403, body
        assert "is not a name of this server" in body, body


@async_test
async def test_without_ui_the_feed_is_an_admin_path_like_any_other() -> None:
    async with serving("route /ws {\n}\n", admin=True) as server:
        refusal = await handshake_status(server.url(inspector.FEED_PATH))
        assert refusal.response.status_code == 404  # answered by the admin API, not upgraded
        assert server.inspector is None


@async_test
async def test_a_fast_stream_is_batched_and_what_is_left_out_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inspector, "MAX_BATCH_EVENTS", 20)
    async with (
        serving(ECHO_SCENARIO, admin=True, inspector=True) as server,
        connect(server.url(inspector.FEED_PATH), open_timeout=BOUND) as feed,
        connect(server.url("/echo"), open_timeout=BOUND) as client,
    ):
        await recv_json(feed, what="the snapshot")
        for n in range(500):
            await client.send(json.dumps({"n": n}))
        for _ in range(500):
            await recv_json(client, what="an echo")
        seen, dropped, last = 0, 0, 0
        while last < server.journal.last_seq:
            update = await recv_json(feed, what="an update")
            events = update.get("events", [])
            assert len(events) <= 20, len(events)
            seen += len(events)
            dropped += update.get("dropped", 0)
            last = update["last"]
        assert seen + dropped == server.journal.last_seq  # the connect, 500 in, 500 out
        assert dropped > 0


@async_test
async def test_with_no_feed_open_the_inspector_does_nothing() -> None:
    """--ui with no page open costs nothing beyond the journal: nothing reads it, before the
    first feed or after the last."""
    async with (
        serving(ECHO_SCENARIO, admin=True, inspector=True) as server,
        connect(server.url("/echo"), open_timeout=BOUND) as client,
    ):
        looks: list[int] = []
        latest = server.journal.latest
        server.journal.latest = lambda *args: looks.append(1) or latest(*args)

        async def talk() -> None:
            for n in range(20):
                await client.send(str(n))
                await client.recv()
            await asyncio.sleep(3 * inspector.BATCH_INTERVAL)  # updates would have gone out

        await talk()
        assert looks == []
        async with connect(server.url(inspector.FEED_PATH), open_timeout=BOUND) as feed:
            await recv_json(feed, what="the snapshot")
            await client.send("seen")
            await client.recv()
            await recv_json(feed, what="an update")
            assert looks
        await asyncio.sleep(2 * inspector.BATCH_INTERVAL)  # the timer's last turn
        looks.clear()
        await talk()
        assert looks == []


@async_test
async def test_a_feed_that_does_not_read_is_closed_1008(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A page that stopped reading must not grow the server's memory: past MAX_FEED_QUEUED
    bytes unread, its feed is closed (1008) as any slow client's connection is."""
    monkeypatch.setattr(inspector, "MAX_FEED_QUEUED", 64 * 1024)
    monkeypatch.setattr(inspector, "BATCH_INTERVAL", 0.005)
    monkeypatch.setattr(inspector, "SLOW_CLOSE_TIMEOUT", 0.1)
    caplog.set_level(logging.WARNING, logger="scenario_engine")
    async with serving(ECHO_SCENARIO, admin=True, inspector=True) as server:
        sleeper = socket.socket()
        sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up fast
        sleeper.connect(("127.0.0.1", server.port))
        try:
            sleeper.sendall(
                f"GET {inspector.FEED_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n".encode()
            )
            big = "x" * 4000  # each event is cut at MAX_EVENT_TEXT: ~4 KB in the feed
            async with connect(server.url("/echo"), open_timeout=BOUND) as client:

                def slow_feed_closed() -> bool:
                    return any("too slow" in r.getMessage() for r in caplog.records)

                async def flood() -> None:
                    while not slow_feed_closed():
                        await client.send(big)
                        await client.recv()

                await asyncio.wait_for(flood(), BOUND)
                # It does not read the close frame either: it is cut off, its buffers freed.
                assert await asyncio.to_thread(_ends, sleeper)
                await client.send("still serving")
                assert await client.recv() == "still serving"
        finally:
            sleeper.close()


def _ends(sock: socket.socket) -> bool:
    """Read a socket until the server ends the connection; whether it did within BOUND."""
    sock.settimeout(BOUND)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


# ---- in a browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, driven by Debian's chromedriver."""
    driver = selenium_chromium()
    driver.set_page_load_timeout(BOUND)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser: Any, inspected: ServedMock) -> Any:
    """The inspector, freshly loaded, once its feed is live."""
    browser.get(f"http://127.0.0.1:{inspected.port}/__admin/")
    wait(browser, lambda d: d.find_element("id", "status").get_attribute("data-state") == "live")
    return browser


def wait(driver: Any, condition: Callable[[Any], Any], what: str = "") -> Any:
    """Wait for a condition of the page (never a fixed sleep)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver,
        BOUND,
        poll_frequency=0.05 * UNIT,
        ignored_exceptions=[StaleElementReferenceException],
    ).until(condition, what)


class Chatter:
    """A client of the chat route: its connection and its id."""

    def __init__(self, served: ServedMock, name: str, ws: SyncClient) -> None:
        self.name = name
        self.port = served.port
        self.ws = ws
        self.id: str = self.next()["id"]

    def send(self, **message: Any) -> None:
        self.ws.send(json.dumps(message))

    def next(self, kind: str | None = None) -> dict[str, Any]:
        """The next message (of type ``kind``, if given; others are passed over)."""
        deadline = time.monotonic() + BOUND
        while True:
            message: dict[str, Any] = json.loads(self.ws.recv(max(deadline - time.monotonic(), 0)))
            if kind is None or message.get("type") == kind:
                return message

    def join(self) -> None:
        """Join the room "chat", and wait until the server has handled it (the chat route
        answers a join to the others only)."""
        self.send(type="join", username=self.name)

        def joined() -> bool:
            _, _, answer = http_call(self.port, "GET", "/__admin/connections")
            return any(c["id"] == self.id and "chat" in c["rooms"] for c in answer["connections"])

        assert wait_until(joined), f"{self.name} did not join"


@pytest.fixture
def chatters(inspected: ServedMock) -> Iterator[Callable[[str], Chatter]]:
    """Chat clients, closed when the test ends."""
    with contextlib.ExitStack() as stack:

        def make(name: str) -> Chatter:
            ws = stack.enter_context(sync_connect(inspected.url(CHAT), open_timeout=BOUND))
            return Chatter(inspected, name, ws)

        yield make


def row(driver: Any, conn_id: str) -> Any:
    found = driver.find_elements("css selector", f'tr[data-id="{conn_id}"]')
    return found[0] if found else None


def cell_text(driver: Any, conn_id: str, css: str) -> str | None:
    tr = row(driver, conn_id)
    return None if tr is None else tr.find_element("css selector", css).text


def shown_events(driver: Any, kind: str = "") -> list[str]:
    """The summary lines of the events shown (of one kind: in, out…), newest first. Read in one
    script: WebDriver's visible text of 500 events takes seconds."""
    script = "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)"
    selector = f"#events li.event{'-' + kind if kind else ''} summary"
    texts: list[str] = driver.execute_script(script, selector)
    return texts


@browser_test
def test_the_page_shows_the_connections_their_rooms_and_their_messages(
    page: Any, chatters: Callable[[str], Chatter]
) -> None:
    alice, bob = chatters("Alice"), chatters("Bob")
    alice.join()
    bob.join()
    alice.send(type="message", username="Alice", message="Hello from Alice")
    bob.next("chat-message")

    for who in (alice, bob):
        wait(
            page, lambda d, w=who: cell_text(d, w.id, ".rooms-cell") == "chat", f"{who.name}'s row"
        )
        assert cell_text(page, who.id, "td:nth-child(2)") == "127.0.0.1"
    block = page.find_element("css selector", f'section[data-route="{CHAT}"]')
    wait(page, lambda d: "chat (2)" in block.find_element("css selector", ".rooms").text)
    assert block.find_element("css selector", "h3 .count").text == "2 connections"

    wait(page, lambda d: any("Hello from Alice" in text for text in shown_events(d)))
    message = page.find_element(
        "xpath", "//ol[@id='events']/li[contains(@class, 'event-in')][contains(., 'Hello from')]"
    )
    assert alice.id in message.find_element("tag name", "summary").text
    message.find_element("tag name", "summary").click()
    (pretty,) = wait(page, lambda d: message.find_elements("css selector", "pre.json"))
    assert pretty.is_displayed()
    assert '"message": "Hello from Alice"' in pretty.text  # pretty-printed JSON
    assert any("chat-message" in text for text in shown_events(page, "out"))

    # Newest first: Alice's message came after Bob's join.
    texts = shown_events(page, "in")
    first = next(i for i, text in enumerate(texts) if "Hello from Alice" in text)
    assert first < next(i for i, text in enumerate(texts) if '"username": "Bob"' in text)

    # Filtered by connection: only what concerns Bob.
    row(page, bob.id).find_element("css selector", 'button[data-action="filter"]').click()

    def only_bobs(driver: Any) -> bool:
        sent = shown_events(driver, "in")
        return bool(sent) and all(bob.id in text for text in sent)

    wait(page, only_bobs, "only Bob's messages")
    # What Alice sent is not shown; what it made the mock send to Bob is.
    received = shown_events(page, "in")
    assert not any("Hello from Alice" in text for text in received), received
    assert any("Hello from Alice" in text for text in shown_events(page))
    page.find_element("id", "filter-clear").click()
    wait(page, lambda d: any("Hello from Alice" in text for text in shown_events(d)))

    bob.ws.close()
    wait(page, lambda d: row(d, bob.id) is None, "Bob's row removed")


@browser_test
def test_what_clients_send_is_shown_as_text_never_as_markup(
    page: Any, chatters: Callable[[str], Chatter]
) -> None:
    mallory = chatters("Mallory")
    mallory.join()
    attack = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
    mallory.send(type="message", username="Mallory", message=attack)
    mallory.next("chat-message")
    wait(page, lambda d: any("<img src=x" in text for text in shown_events(d)))
    assert page.find_elements("css selector", "#events img, #events script") == []
    assert page.title == "scenario-engine inspector"


@browser_test
def test_a_message_sent_from_the_page_reaches_the_client(
    page: Any, chatters: Callable[[str], Chatter]
) -> None:
    from selenium.webdriver.support.ui import Select

    carol, dave = chatters("Carol"), chatters("Dave")
    carol.join()
    dave.join()
    wait(page, lambda d: row(d, carol.id) is not None)
    row(page, carol.id).find_element("css selector", 'button[data-action="send"]').click()
    assert page.find_element("id", "send-connection").get_attribute("value") == carol.id
    fill(page, "send-message", '{"type": "notice", "text": "from the page", "n": 1}')
    page.find_element("id", "send-submit").click()
    assert carol.next("notice") == {"type": "notice", "text": "from the page", "n": 1}
    wait(page, lambda d: d.find_element("id", "send-result").text == "delivered to 1 connection")

    # To a room: everyone in it.
    Select(page.find_element("id", "send-target")).select_by_value("room")
    Select(page.find_element("id", "send-route")).select_by_value(CHAT)
    fill(page, "send-room", "chat")
    fill(page, "send-message", '{"type": "announcement"}')
    page.find_element("id", "send-submit").click()
    assert carol.next("announcement") == {"type": "announcement"}
    assert dave.next("announcement") == {"type": "announcement"}


@browser_test
def test_a_close_from_the_page_closes_the_client_with_its_code_and_reason(
    page: Any, chatters: Callable[[str], Chatter]
) -> None:
    erin = chatters("Erin")
    wait(page, lambda d: row(d, erin.id) is not None)
    row(page, erin.id).find_element("css selector", 'button[data-action="close"]').click()
    assert page.find_element("id", "close-connection").get_attribute("value") == erin.id
    fill(page, "close-code", "4001")
    fill(page, "close-reason", "Kicked by the inspector")
    page.find_element("id", "close-submit").click()
    with pytest.raises(ConnectionClosed):
        while True:
            erin.ws.recv(BOUND)
    assert erin.ws.close_code == 4001
    assert erin.ws.close_reason == "Kicked by the inspector"
    wait(page, lambda d: row(d, erin.id) is None, "Erin's row removed")
    wait(page, lambda d: any("4001 Kicked by the inspector" in t for t in shown_events(d)))


@browser_test
def test_the_state_edited_on_the_page_is_the_servers(page: Any, inspected: ServedMock) -> None:
    from selenium.webdriver.support.ui import Select

    choice = Select(page.find_element("id", "state-file"))
    auction = next(
        option.get_attribute("value")
        for option in choice.options
        if option.get_attribute("value").endswith("auction.mock")
    )
    choice.select_by_value(auction)
    page.find_element("id", "state-edit").click()
    editor = page.find_element("id", "state-editor")
    wait(page, lambda d: editor.is_displayed() and '"highest"' in editor.get_attribute("value"))
    fill(page, "state-editor", '{"highest": 999, "bidder": "the inspector"}')
    page.find_element("id", "state-save").click()
    wait(page, lambda d: "saved" in d.find_element("id", "state-result").text)
    status, _, answer = http_call(inspected.port, "GET", f"/__admin/state?file={auction}")
    assert status == 200 and answer["state"] == {"highest": 999, "bidder": "the inspector"}
    wait(page, lambda d: '"highest": 999' in d.find_element("id", "state-view").text)
    http_call(inspected.port, "PUT", f"/__admin/state?file={auction}", {"highest": 0})


@browser_test
def test_a_fast_stream_keeps_a_bounded_window_and_says_what_it_did_not_show(
    page: Any, inspected: ServedMock
) -> None:
    with sync_connect(inspected.url(ECHO), open_timeout=BOUND) as echo:
        for n in range(3000):
            echo.send(f"burst {n}")
        for _ in range(3000):
            echo.recv(BOUND)
    wait(page, lambda d: any("burst 2999" in text for text in shown_events(d)))
    behind = page.find_element("id", "behind")
    wait(page, lambda d: behind.is_displayed() and behind.text.endswith("events not shown"))
    assert int(behind.text.split()[0].replace(",", "")) > 0
    assert len(page.find_elements("css selector", "#events li.event")) <= 500


def fill(driver: Any, element_id: str, text: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(text)


@browser_test
def test_a_handler_error_is_shown_with_its_file_and_line(browser: Any, tmp_path: Path) -> None:
    scenario = tmp_path / "faulty.mock"
    scenario.write_text('route /bye {\n  on message {\n    close 4000 "${raw}"\n  }\n}\n')
    with BackgroundServer.from_paths([scenario], admin=True, inspector=True) as mock:
        browser.get(f"http://127.0.0.1:{mock.port}/__admin/")
        wait(
            browser, lambda d: d.find_element("id", "status").get_attribute("data-state") == "live"
        )
        with sync_connect(mock.url("/bye"), open_timeout=BOUND) as ws:
            ws.send("x" * 200)  # a close reason longer than 123 bytes: the handler fails
            with pytest.raises(ConnectionClosed):
                ws.recv(BOUND)
        wait(browser, lambda d: any(f"{scenario}:3:" in t for t in shown_events(d, "error")))
        (error,) = browser.find_elements("css selector", "#events li.event-error")
        error.find_element("tag name", "summary").click()
        wait(browser, lambda d: f"at {scenario}:3:" in error.text)


@browser_test
def test_a_reset_from_the_page_closes_everyone_with_1012(
    page: Any, chatters: Callable[[str], Chatter]
) -> None:
    frank = chatters("Frank")
    wait(page, lambda d: row(d, frank.id) is not None)
    page.find_element("id", "reset").click()
    page.switch_to.alert.accept()  # "Close every connection…?"
    with pytest.raises(ConnectionClosed):
        while True:
            frank.ws.recv(BOUND)
    assert frank.ws.close_code == 1012
    wait(page, lambda d: "reset: " in d.find_element("id", "status").text)
    wait(page, lambda d: row(d, frank.id) is None)


@browser_test
def test_serve_ui_watch_an_edit_is_served_while_the_page_and_other_clients_stay(
    browser: Any, tmp_path: Path
) -> None:
    # What a person does: serve the examples with --ui --watch, watch the page, edit chat.mock.
    # Chat clients are restarted (1012) onto the new version; the echo client and the page's
    # feed go on, and the page shows the new version's traffic.
    scenarios = tmp_path / "scenarios"
    shutil.copytree(SCENARIOS, scenarios)
    served = start_mock(scenarios, extra=("--ui", "--watch"))
    try:
        browser.get(f"http://127.0.0.1:{served.port}/__admin/")

        def live(driver: Any) -> bool:
            return bool(driver.find_element("id", "status").get_attribute("data-state") == "live")

        wait(browser, live)
        with (
            sync_connect(served.url(CHAT), open_timeout=BOUND) as alice,
            sync_connect(served.url(ECHO), open_timeout=BOUND) as echo,
        ):
            alice_id = json.loads(alice.recv(BOUND))["id"]
            echo.send("before the edit")
            assert echo.recv(BOUND) == "before the edit"
            wait(browser, lambda d: row(d, alice_id) is not None, "alice on the page")

            chat = scenarios / "chat.mock"
            chat.write_text(
                chat.read_text().replace(
                    'send { type: "connected", id: conn.id }',
                    'send { type: "connected", id: conn.id, version: 2 }',
                )
            )
            # scenarios/ holds chat.mock and chat.yaml, one scenario in two spellings: edited
            # alone, the .mock disagrees with its twin, and the previous version goes on...
            served.log.wait_for(r"chat\.yaml:\d+:\d+: error: this file and chat\.mock")
            served.log.wait_for(r"not reloaded .*serving the previous version")
            echo.send("between the edits")
            assert echo.recv(BOUND) == "between the edits"
            # ...until the twin is written from it, as the error's hint says.
            converted = run_cli(
                "convert", str(chat), "--to", "yaml", "-o", str(scenarios / "chat.yaml")
            )
            assert converted.status == 0, converted.stderr
            served.log.wait_for(r"reloaded .*changed /api/ws/chat")
            with pytest.raises(ConnectionClosed):
                alice.recv(BOUND)
            assert alice.close_code == 1012
            echo.send("after the edit")  # the echo route did not change: still connected
            assert echo.recv(BOUND) == "after the edit"
            with sync_connect(served.url(CHAT), open_timeout=BOUND) as again:
                welcome = json.loads(again.recv(BOUND))
                assert welcome["version"] == 2
                # The page never reconnected: its feed shows the new connection and the echo.
                assert live(browser)
                wait(browser, lambda d: row(d, welcome["id"]) is not None, "the new client")
                wait(browser, lambda d: row(d, alice_id) is None, "alice gone")
                wait(browser, lambda d: any("after the edit" in t for t in shown_events(d)))
    finally:
        served.stop()

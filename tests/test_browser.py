"""A real browser's WebSocket against the served scenarios: headless Chromium.

A tiny page, served by a local ``http.server`` thread, runs the chat and private scenarios with
the browser's own ``WebSocket`` and POSTs what it saw back to that server; the test waits for
the POST (not for a fixed time), then checks the results. Browsers hide the HTTP status of a
refused handshake from scripts, which is why the private route rejects with close codes (4001,
4002) after the handshake: ``onclose`` must see them with their reasons.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support import UNIT, ServedMock, needs, run_cli, start_record

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.e2e,
    needs(
        CHROMIUM is None,
        reason="`chromium` is not on PATH (Debian: apt-get install chromium): browser tests "
        "skipped",
    ),
]

#: How long the page may take to run every scenario and report.
PAGE_BOUND = 15 * UNIT
#: Per-step bound inside the page (milliseconds), for each awaited message or close.
STEP_MS = round(4000 * UNIT)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>scenario-engine browser test</title></head>
<body><pre id="out">running</pre>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const BASE = params.get("ws");
const STEP_MS = Number(params.get("step"));

// A WebSocket whose messages are queued from the start, so none is missed.
function open(path) {
  const ws = new WebSocket(BASE + path);
  const client = { ws, messages: [], waiters: [], closed: null, errors: 0, opened: false };
  ws.onopen = () => { client.opened = true; };
  ws.onerror = () => { client.errors += 1; };
  ws.onmessage = (event) => {
    client.messages.push(JSON.parse(event.data));
    client.waiters.splice(0).forEach((wake) => wake());
  };
  client.closed = new Promise((resolve) => {
    ws.onclose = (event) => {
      resolve({ code: event.code, reason: event.reason, wasClean: event.wasClean,
                opened: client.opened });
      client.waiters.splice(0).forEach((wake) => wake());
    };
  });
  return client;
}

function bounded(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out waiting for " + what)), STEP_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The first queued message for which test(message) holds (removed from the queue).
function next(client, test, what) {
  return bounded(new Promise((resolve, reject) => {
    const look = () => {
      const i = client.messages.findIndex(test);
      if (i >= 0) { resolve(client.messages.splice(i, 1)[0]); return; }
      if (client.ws.readyState === WebSocket.CLOSED) {
        reject(new Error("closed while waiting for " + what)); return;
      }
      client.waiters.push(look);
    };
    look();
  }), what);
}

async function chat() {
  const c = open("/api/ws/chat");
  const connected = await next(c, (m) => m.type === "connected", "connected");
  c.ws.send(JSON.stringify({ type: "join", username: "Chromium" }));
  c.ws.send(JSON.stringify({ type: "message", username: "Chromium",
                            message: "hi from a browser" }));
  const chatMessage = await next(c, (m) => m.type === "chat-message", "chat-message");
  c.ws.close(1000, "done");
  const closed = await bounded(c.closed, "chat close");
  return { connected, chatMessage, closed, now: Date.now() };
}

async function rejected(path) {
  const c = open(path);
  const closed = await bounded(c.closed, "close of " + path);
  return { closed, messages: c.messages };
}

async function alice() {
  const c = open("/api/ws/private?token=alice-token");
  const message = await next(c, () => true, "authenticated");
  c.ws.close();
  await bounded(c.closed, "private close");
  return { message, extra: c.messages };
}

async function main() {
  const steps = {
    chat,
    noToken: () => rejected("/api/ws/private"),
    badToken: () => rejected("/api/ws/private?token=forged"),
    noRoute: () => rejected("/api/ws/no-such-route"),
    alice,
  };
  const results = { userAgent: navigator.userAgent };
  for (const [name, step] of Object.entries(steps)) {
    try {
      results[name] = await step();
    } catch (error) {
      results[name] = { error: String(error) };
    }
  }
  document.getElementById("out").textContent = JSON.stringify(results);
  await fetch("/result", { method: "POST", body: JSON.stringify(results) });
}
main().catch((error) =>
  fetch("/result", { method: "POST", body: JSON.stringify({ fatal: String(error) }) }));
</script></body></html>
"""


class PageServer:
    """Serves PAGE at / and receives the page's POST at /result."""

    def __init__(self) -> None:
        self.results: queue.Queue[Any] = queue.Queue()
        results = self.results

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = PAGE.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                results.put(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5 * UNIT)


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


def run_page(page_server: PageServer, ws_base: str, profile: Path) -> dict[str, Any]:
    """Open the page in headless Chromium and return what it POSTed."""
    assert CHROMIUM is not None
    url = f"http://127.0.0.1:{page_server.port}/?ws={ws_base}&step={STEP_MS}"
    log = profile.parent / "chromium.log"
    with log.open("wb") as output:
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--no-default-browser-check",
                f"--user-data-dir={profile}",
                url,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return page_server.results.get(timeout=PAGE_BOUND)  # type: ignore[no-any-return]
        except queue.Empty:
            raise AssertionError(
                f"the page did not report within {PAGE_BOUND:.0f}s; chromium exit status "
                f"{browser.poll()}; its log:\n" + log.read_text(errors="replace")[-3000:]
            ) from None
        finally:
            # Chromium starts helper processes in its own session: end that group (ours).
            if browser.poll() is None:
                os.killpg(browser.pid, signal.SIGTERM)
                try:
                    browser.wait(timeout=5 * UNIT)
                except subprocess.TimeoutExpired:
                    os.killpg(browser.pid, signal.SIGKILL)
                    browser.wait(timeout=5 * UNIT)


def test_browser_websocket_chat_and_private(
    mock_server: ServedMock, page_server: PageServer, tmp_path: Path
) -> None:
    assert_page_results(run_page(page_server, mock_server.base, tmp_path / "profile"))


def test_browser_through_the_recording_proxy_sees_the_server_and_is_recorded(
    mock_server: ServedMock, page_server: PageServer, tmp_path: Path
) -> None:
    """``record`` in front of the mock: the browser sees exactly what it sees without the
    proxy (close codes and reasons, clean closes, a refused handshake), and Ctrl+C writes a
    scenario that checks clean."""
    out = tmp_path / "recorded.mock"
    recorder = start_record(mock_server.base, out, "--quiet")
    try:
        assert_page_results(run_page(page_server, recorder.url, tmp_path / "profile"))
    finally:
        status = recorder.stop()
    assert status == 0, "\n".join(recorder.err.lines)
    checked = run_cli("check", out)
    assert checked.status == 0, checked.stdout + checked.stderr + out.read_text("utf-8")
    recorded = out.read_text("utf-8")
    assert "route /api/ws/chat {" in recorded and "route /api/ws/private {" in recorded, recorded


def assert_page_results(results: dict[str, Any]) -> None:
    assert "fatal" not in results, results
    assert "Chrome/" in results["userAgent"], results["userAgent"]

    chat = results["chat"]
    assert "error" not in chat, f"chat: {chat}"
    assert chat["connected"]["type"] == "connected"
    assert isinstance(chat["connected"]["id"], str) and chat["connected"]["id"], chat
    message = chat["chatMessage"]
    assert message["username"] == "Chromium" and message["message"] == "hi from a browser", chat
    assert isinstance(message["timestamp"], int | float), chat
    assert abs(message["timestamp"] - chat["now"]) < 60_000 * UNIT, (
        "timestamp is epoch milliseconds"
    )
    assert chat["closed"]["code"] == 1000 and chat["closed"]["wasClean"], chat

    for name, code, reason in (
        ("noToken", 4001, "No token provided"),
        ("badToken", 4002, "Invalid token"),
    ):
        outcome = results[name]
        assert "error" not in outcome, f"{name}: {outcome}"
        closed = outcome["closed"]
        assert (closed["code"], closed["reason"]) == (code, reason), f"{name}: {closed}"
        assert closed["opened"], f"{name}: the handshake completes before the close"
        assert closed["wasClean"], f"{name}: a clean close, with a close frame: {closed}"
        assert outcome["messages"] == [], f"{name}: nothing is sent before the close"

    no_route = results["noRoute"]  # HTTP 404 at the handshake: scripts see only 1006
    assert "error" not in no_route, f"noRoute: {no_route}"
    assert no_route["closed"]["code"] == 1006 and not no_route["closed"]["opened"], no_route

    alice = results["alice"]
    assert "error" not in alice, f"alice: {alice}"
    assert alice["message"] == {"type": "authenticated", "user": {"name": "Alice"}}, alice

"""End to end: real `scenario-engine serve` processes, real clients, real sockets.

Every scenario in scenarios/ is driven with websockets' client and checked against the
reference's examples (message types, fields, who receives what, close codes and reasons).
A private scenario written into a temporary directory covers what the shipped scenarios do not:
HTTP rejections, closes, handler errors, size and type limits, invalid UTF-8, path parameters,
request data, ping/pong actions and the heartbeat. Signals and invalid scenarios get servers of
their own.

"Nobody else receives it" is never checked by waiting for silence: after the message that must
not arrive, a *sentinel* message that must arrive is sent along the same path (same sender, same
server task), so the receiver's next message is the sentinel if and only if nothing arrived
before it. Every wait is bounded and a multiple of UNIT.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    BOUND,
    SCENARIOS,
    TEST_BOUND,
    UNIT,
    RawClient,
    ServedMock,
    assert_alive,
    async_test,
    close_of,
    closed,
    handshake_status,
    line_of,
    needs,
    recv,
    recv_json,
    run_cli,
    run_cli_process,
    run_process,
    start_mock,
)
from websockets.asyncio.client import connect
from websockets.frames import Close, Frame, Opcode

pytestmark = pytest.mark.e2e

#: The heartbeat of the private scenario's /heartbeat route, in seconds.
HEARTBEAT = 0.4 * UNIT


def stray_user_left(known: set[str]) -> Callable[[Any], bool]:
    """Skip ``user-left`` of chat connections other tests left closing (not ours)."""
    return lambda m: m.get("type") == "user-left" and m.get("userId") not in known


# ---- the shipped scenarios -------------------------------------------------------------------


@async_test
async def test_basic_welcomes_and_broadcasts_to_everyone_including_sender(
    mock_server: ServedMock,
) -> None:
    url = mock_server.url("/api/ws/basic")
    async with connect(url) as a, connect(url) as b:
        for ws in (a, b):
            assert await recv_json(ws) == {"type": "welcome", "message": "Welcome!"}
        sent = {"type": "hello", "n": 1, "nested": {"list": [1, "two", None]}}
        await a.send(json.dumps(sent))
        assert await recv_json(a) == sent, "the sender gets its own message back"
        assert await recv_json(b) == sent, "every other client gets the message"
        await b.send("plain text, not JSON")
        assert await recv(a) == "plain text, not JSON"
        assert await recv(b) == "plain text, not JSON"
        await a.send(b"\x00\x01binary")
        assert await recv(a) == b"\x00\x01binary", "a binary message stays binary"
        assert await recv(b) == b"\x00\x01binary"


@async_test
async def test_chat_connected_id_and_join_notifies_only_the_others(mock_server: ServedMock) -> None:
    url = mock_server.url("/api/ws/chat")
    async with connect(url) as a, connect(url) as b:
        hello_a, hello_b = await recv_json(a), await recv_json(b)
        for hello in (hello_a, hello_b):
            assert hello["type"] == "connected"
            assert isinstance(hello["id"], str) and hello["id"], hello
            assert set(hello) == {"type", "id"}, hello
        assert hello_a["id"] != hello_b["id"], "every connection has its own id"
        skip = stray_user_left({hello_a["id"], hello_b["id"]})

        await a.send(json.dumps({"type": "join", "username": "Alice"}))
        await a.send(json.dumps({"type": "message", "username": "Alice", "message": "first"}))
        mine = await recv_json(a, skip=skip)
        assert mine["type"] == "chat-message", f"the joiner must not get its own join: {mine}"

        await b.send(json.dumps({"type": "join", "username": "Bob"}))
        assert await recv_json(a, skip=skip) == {"type": "user-joined", "username": "Bob"}
        await b.send(json.dumps({"type": "message", "username": "Bob", "message": "hi"}))
        first_for_b = await recv_json(b, skip=skip)
        assert first_for_b["type"] == "chat-message", (
            f"Bob must not be told about his own join: {first_for_b}"
        )
        assert (await recv_json(a, skip=skip))["message"] == "hi"


@async_test
async def test_chat_message_reaches_the_room_and_sender_but_not_outsiders(
    mock_server: ServedMock,
) -> None:
    url = mock_server.url("/api/ws/chat")
    async with connect(url) as a, connect(url) as b, connect(url) as outsider:
        ids = {(await recv_json(ws))["id"] for ws in (a, b, outsider)}
        skip = stray_user_left(ids)
        for ws, name in ((a, "Alice"), (b, "Bob")):
            await ws.send(json.dumps({"type": "join", "username": name}))
        assert await recv_json(a, skip=skip) == {"type": "user-joined", "username": "Bob"}

        before = time.time() * 1000
        await a.send(json.dumps({"type": "message", "username": "Alice", "message": "hello"}))
        got_a = await recv_json(a, skip=skip)
        got_b = await recv_json(b, skip=skip)
        after = time.time() * 1000
        assert got_a == got_b, "sender and room member get the same message"
        assert set(got_a) == {"type", "username", "message", "timestamp"}, got_a
        assert got_a["type"] == "chat-message"
        assert got_a["username"] == "Alice" and got_a["message"] == "hello"
        stamp = got_a["timestamp"]
        assert isinstance(stamp, int | float) and not isinstance(stamp, bool), stamp
        assert before - 1000 * UNIT <= stamp <= after + 1000 * UNIT, (
            f"timestamp {stamp} is not now in milliseconds ({before:.0f}..{after:.0f})"
        )

        # Sentinel: "typing" reaches everyone on the route but its sender, joined or not.
        await a.send(json.dumps({"type": "typing", "username": "Alice"}))
        assert await recv_json(outsider, skip=skip) == {"type": "typing", "username": "Alice"}, (
            "a client that never joined 'chat' must not get chat-message"
        )


@async_test
async def test_chat_typing_reaches_everyone_on_the_route_except_the_sender(
    mock_server: ServedMock,
) -> None:
    url = mock_server.url("/api/ws/chat")
    async with connect(url) as a, connect(url) as joined, connect(url) as loner:
        ids = {(await recv_json(ws))["id"] for ws in (a, joined, loner)}
        skip = stray_user_left(ids)
        await joined.send(json.dumps({"type": "join", "username": "Jo"}))
        await a.send(json.dumps({"type": "typing", "username": "Alice"}))
        for ws in (joined, loner):
            assert await recv_json(ws, skip=skip) == {"type": "typing", "username": "Alice"}
        # Sentinel for the sender: its next message is the one it sends to itself via 'chat'.
        await a.send(json.dumps({"type": "join", "username": "Alice"}))
        await a.send(json.dumps({"type": "message", "username": "Alice", "message": "m"}))
        nxt = await recv_json(a, skip=skip)
        assert nxt["type"] == "chat-message", f"the sender must not get its own typing: {nxt}"


@async_test
async def test_chat_user_left_carries_the_leavers_connected_id(mock_server: ServedMock) -> None:
    url = mock_server.url("/api/ws/chat")
    async with connect(url) as stayer, connect(url) as other:
        stay_id = (await recv_json(stayer))["id"]
        other_id = (await recv_json(other))["id"]
        async with connect(url) as leaver:
            leaver_id = (await recv_json(leaver))["id"]
            await leaver.send(json.dumps({"type": "join", "username": "Lea"}))
        skip = stray_user_left({stay_id, other_id, leaver_id})
        for ws in (stayer, other):  # user-left goes to everyone on the route, joined or not
            left = await recv_json(ws, skip=skip, what="user-left from the on close handler")
            assert left == {"type": "user-left", "userId": leaver_id}


@async_test
async def test_rooms_join_notifies_members_with_username_and_room(mock_server: ServedMock) -> None:
    url = mock_server.url("/api/ws/rooms")
    async with connect(url) as x, connect(url) as y:
        await x.send(json.dumps({"type": "join-room", "room": "red", "username": "Xi"}))
        # x's own message to red proves x's join was processed (and that x got no user-joined).
        await x.send(
            json.dumps({"type": "message", "room": "red", "username": "Xi", "text": "anyone?"})
        )
        assert await recv_json(x) == {"type": "chat-message", "from": "Xi", "text": "anyone?"}
        await y.send(json.dumps({"type": "join-room", "room": "red", "username": "Yan"}))
        assert await recv_json(x) == {"type": "user-joined", "username": "Yan", "room": "red"}
        await y.send(
            json.dumps({"type": "message", "room": "red", "username": "Yan", "text": "me"})
        )
        assert await recv_json(y) == {"type": "chat-message", "from": "Yan", "text": "me"}, (
            "the joiner is not told about its own join"
        )
        assert await recv_json(x) == {"type": "chat-message", "from": "Yan", "text": "me"}


@async_test
async def test_rooms_messages_stay_in_their_room(mock_server: ServedMock) -> None:
    url = mock_server.url("/api/ws/rooms")
    async with connect(url) as red, connect(url) as blue:
        await red.send(json.dumps({"type": "join-room", "room": "red", "username": "R"}))
        await blue.send(json.dumps({"type": "join-room", "room": "blue", "username": "B"}))
        await red.send(
            json.dumps({"type": "message", "room": "red", "username": "R", "text": "red only"})
        )
        assert await recv_json(red) == {"type": "chat-message", "from": "R", "text": "red only"}
        # Sentinel: the same sender now talks to blue (of which it is not a member).
        await red.send(
            json.dumps({"type": "message", "room": "blue", "username": "R", "text": "to blue"})
        )
        assert await recv_json(blue) == {"type": "chat-message", "from": "R", "text": "to blue"}, (
            "room red's message must not reach room blue"
        )
        await red.send(
            json.dumps({"type": "message", "room": "red", "username": "R", "text": "again"})
        )
        assert await recv_json(red) == {"type": "chat-message", "from": "R", "text": "again"}, (
            "include self only includes a sender that is in the room"
        )


@async_test
async def test_rooms_leave_stops_delivery(mock_server: ServedMock) -> None:
    url = mock_server.url("/api/ws/rooms")
    async with connect(url) as speaker, connect(url) as member:
        await speaker.send(json.dumps({"type": "join-room", "room": "red", "username": "S"}))
        # The two clients' messages reach the server on two sockets, in no set order: the
        # speaker's own message to red coming back says its join is done before member's.
        await speaker.send(
            json.dumps({"type": "message", "room": "red", "username": "S", "text": "joined"})
        )
        assert await recv_json(speaker) == {"type": "chat-message", "from": "S", "text": "joined"}
        for room in ("red", "side"):
            await member.send(json.dumps({"type": "join-room", "room": room, "username": "M"}))
        assert await recv_json(speaker) == {"type": "user-joined", "username": "M", "room": "red"}
        await speaker.send(
            json.dumps({"type": "message", "room": "red", "username": "S", "text": "both"})
        )
        assert await recv_json(member) == {"type": "chat-message", "from": "S", "text": "both"}

        await member.send(json.dumps({"type": "leave-room", "room": "red"}))
        # member's message to side is processed after its leave: once it arrives, the leave is
        # done.
        await member.send(
            json.dumps({"type": "message", "room": "side", "username": "M", "text": "left red"})
        )
        assert await recv_json(member) == {"type": "chat-message", "from": "M", "text": "left red"}
        await speaker.send(
            json.dumps({"type": "message", "room": "red", "username": "S", "text": "after leave"})
        )
        await speaker.send(
            json.dumps({"type": "message", "room": "side", "username": "S", "text": "sentinel"})
        )
        assert await recv_json(member) == {
            "type": "chat-message",
            "from": "S",
            "text": "sentinel",
        }, "after leave-room the client must not get that room's messages"


@async_test
async def test_private_without_token_closes_4001(mock_server: ServedMock) -> None:
    for query in ("", "?token=", "?other=1"):
        async with connect(mock_server.url("/api/ws/private" + query)) as ws:
            assert await closed(ws) == (4001, "No token provided"), query
    async with connect(mock_server.url("/api/ws/private?token=alice-token")) as ws:
        assert (await recv_json(ws))["type"] == "authenticated", "served after rejections"


@async_test
async def test_private_unknown_token_closes_4002(mock_server: ServedMock) -> None:
    for token in ("nope", "Alice", "alice-token2"):
        async with connect(mock_server.url(f"/api/ws/private?token={token}")) as ws:
            assert await closed(ws) == (4002, "Invalid token"), token
    async with connect(mock_server.url("/api/ws/private?token=bob-token")) as ws:
        assert (await recv_json(ws))["type"] == "authenticated", "served after rejections"


@async_test
async def test_private_known_tokens_authenticate(mock_server: ServedMock) -> None:
    for token, name in (("alice-token", "Alice"), ("bob-token", "Bob")):
        async with connect(mock_server.url(f"/api/ws/private?token={token}")) as ws:
            assert await recv_json(ws) == {"type": "authenticated", "user": {"name": name}}
            await ws.send("ignored: the route has no message handler")
            pong = await ws.ping()
            await asyncio.wait_for(pong, BOUND)  # still open after an unhandled message
    async with connect(mock_server.url("/api/ws/private")) as ws:
        assert (await closed(ws))[0] == 4001, "a rejection after successes still rejects"


@async_test
async def test_game_lobby_create_join_and_actions(mock_server: ServedMock) -> None:
    url = mock_server.url("/api/ws/game")
    async with connect(url) as host, connect(url) as guest, connect(url) as lobby_only:
        for ws in (host, guest, lobby_only):
            assert await recv_json(ws) == {"type": "joined-lobby"}

        await host.send(json.dumps({"type": "create-game"}))
        created = await recv_json(host)
        assert set(created) == {"type", "gameId"} and created["type"] == "game-created", created
        game = created["gameId"]
        assert isinstance(game, str) and game.startswith("game-") and len(game) > 5, game

        await guest.send(json.dumps({"type": "join-game", "gameId": game}))
        joined = await recv_json(host)
        assert set(joined) == {"type", "playerId"} and joined["type"] == "player-joined", joined
        guest_id = joined["playerId"]
        assert isinstance(guest_id, str) and guest_id, joined

        await guest.send(json.dumps({"type": "game-action", "gameId": game, "action": "move"}))
        expected = {"type": "game-update", "action": "move", "playerId": guest_id}
        assert await recv_json(guest) == expected, (
            "the joiner's first message is its own update (no player-joined for itself)"
        )
        assert await recv_json(host) == expected, "playerId is the same id player-joined gave"

        await host.send(
            json.dumps({"type": "game-action", "gameId": game, "action": {"x": 1, "y": 2}})
        )
        update = await recv_json(guest)
        assert update["action"] == {"x": 1, "y": 2}, update
        host_id = update["playerId"]
        assert isinstance(host_id, str) and host_id and host_id != guest_id, update
        assert await recv_json(host) == update

        # Sentinel: an action addressed to the lobby room reaches the lobby-only client.
        await host.send(
            json.dumps({"type": "game-action", "gameId": "lobby", "action": "sentinel"})
        )
        got = await recv_json(lobby_only)
        assert got == {"type": "game-update", "action": "sentinel", "playerId": host_id}, (
            f"a lobby-only client must not get the game's messages: {got}"
        )

        await lobby_only.send(json.dumps({"type": "create-game"}))
        other = (await recv_json(lobby_only))["gameId"]
        assert other.startswith("game-") and other != game, "every game id is fresh"


@async_test
async def test_echo_returns_text_and_binary_unchanged(mock_server: ServedMock) -> None:
    messages: list[str | bytes] = [
        "not JSON at all",
        '{ "type" :  "odd",\n\t"spacing" : [1,2 ,3] , "n": 1.50 }',
        '{"b":1,"a":2}',
        "",
        "héllo ✓ 🎉",
        "null",
        '"a JSON string"',
        b"",
        bytes(range(256)),
        b'{"type": "binary JSON stays binary"}',
    ]
    async with connect(mock_server.url("/echo")) as ws:
        for message in messages:
            await ws.send(message)
            back = await recv(ws)
            assert type(back) is type(message), f"{message!r} came back as {back!r}"
            assert back == message, f"{message!r} came back as {back!r}"


@async_test
async def test_unknown_path_is_http_404_and_the_server_keeps_serving(
    mock_server: ServedMock,
) -> None:
    for path in ("/nope", "/api/ws", "/api/ws/chat/extra", "/echo/x"):
        refused = await handshake_status(mock_server.url(path))
        assert refused.response.status_code == 404, (path, refused.response.status_code)
    async with connect(mock_server.url("/api/ws/basic")) as ws:
        assert (await recv_json(ws))["type"] == "welcome"


# ---- a private scenario of every other feature -----------------------------------------------

FEATURES = """\
# Written by tests/test_server_e2e.py: one route per feature under test.
route /alive {
  on message { send raw }
}

route /auth401 {
  auth {
    reject http 401 "Unauthorized" unless headers.authorization
    accept { token: headers.authorization }
  }
  on connect { send { type: "welcome", token: auth.token } }
}

route /auth500 {
  auth {
    accept { x: query.a.b }  # AUTH-FAILS
  }
  on connect { send { type: "unreachable" } }
}

route /close-normal { on connect { close } }
route /close-custom { on connect { close 4000 "bye" } }
route /close-later {
  on message type "quit" { close 4999 "bye ${msg.who}" }
}

route /crash {
  on message {
    send { x: msg.a.b }  # HANDLER-FAILS
  }
}

route /close-too-long {
  on message { close 4000 "${raw}" }  # REASON-TOO-LONG
}

route /close-too-long-handled {
  on message type "close" { close 4000 "${msg.text}" }
  on message type "ok" { send { type: "ok" } }
  on error { send { type: "error", message: error.message } }
}

route /ping-too-long {
  on message { ping raw }  # PING-TOO-LONG
}

route /reject-too-long {
  auth {
    reject 4001 "${query.r}" if query.r  # REJECT-TOO-LONG
  }
  on connect { send { type: "welcome" } }
}

route /crash-handled {
  on message type "boom" { send { x: msg.a.b } }
  on message type "ok" { send { type: "ok" } }
  on error { send { type: "error", message: error.message } }
}

route /crash-twice {
  on message { send { x: msg.a.b } }
  on error { send { y: error.message.deeper } }
}

route /typed-only {
  on message type "hello" { send { type: "hi" } }
}

route /typed-and-binary {
  on message type "hello" { send { type: "hi" } }
  on message binary { send raw }
}

route /limited {
  max message 1KB
  on message { send { type: "accepted", size: len(raw) } }
}

route /ws/room/:name {
  on connect { send { room: params.name } }
}

route /info {
  on connect {
    send { type: "info", query: query, agent: headers["user-agent"],
           custom: headers["x-custom"], ip: conn.ip, path: conn.path, rooms: conn.rooms }
  }
  on message type "join" { join msg.room  send { type: "rooms", rooms: conn.rooms } }
  on message type "leave" { leave msg.room  send { type: "rooms", rooms: conn.rooms } }
  on message type "ping-me" { ping "hello" }
  on message type "ping-empty" { ping }
  on message type "pong-me" { pong "unsolicited" }
}

route /broadcasts {
  on message type "join" { join msg.room  send { type: "joined", rooms: conn.rooms } }
  on message type "announce" { broadcast { type: "announcement", text: msg.text } }
  on message type "to-rooms" {
    broadcast { type: "room-message", text: msg.text } to ["general", "dev"]
  }
  on message type "echo-me" { send { type: "echo" } }
}

route /heartbeat {
  heartbeat HEARTBEAT_MS
  on message { send raw }
}
""".replace("HEARTBEAT_MS", f"{round(HEARTBEAT * 1000)}ms")


class Features:
    def __init__(self, served: ServedMock, path: Path) -> None:
        self.served = served
        self.path = path
        self.log = served.log

    def url(self, path: str) -> str:
        return self.served.url(path)

    async def assert_alive(self) -> None:
        """Another client still gets served, and the server has logged no traceback."""
        await assert_alive(self.served)


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Features]:
    path = tmp_path_factory.mktemp("features") / "features.mock"
    path.write_text(FEATURES, encoding="utf-8")
    served = start_mock(path)
    yield Features(served, path)
    served.stop()
    served.log.join()


@async_test
async def test_broadcast_to_several_rooms_and_to_all(features: Features) -> None:
    """The reference's "Broadcast to Rooms" (each member once) and "Broadcast to All"."""
    url = features.url("/broadcasts")
    async with (
        connect(url) as both,
        connect(url) as dev,
        connect(url) as none,
        connect(url) as sender,
    ):
        for ws, rooms in ((both, ["general", "dev"]), (dev, ["dev"])):
            for room in rooms:
                await ws.send(json.dumps({"type": "join", "room": room}))
            assert await recv_json(ws) == {"type": "joined", "rooms": rooms[:1]}
            if len(rooms) > 1:
                assert await recv_json(ws) == {"type": "joined", "rooms": sorted(rooms)}
        await sender.send(json.dumps({"type": "to-rooms", "text": "hello rooms"}))
        await sender.send(json.dumps({"type": "announce", "text": "to all"}))
        for ws in (both, dev):
            assert await recv_json(ws) == {"type": "room-message", "text": "hello rooms"}
            assert await recv_json(ws) == {"type": "announcement", "text": "to all"}, (
                "a member of two of the rooms gets the message once"
            )
        assert await recv_json(none) == {"type": "announcement", "text": "to all"}, (
            "a client in none of the rooms gets only the broadcast to all"
        )
        await sender.send(json.dumps({"type": "echo-me"}))
        assert await recv_json(sender) == {"type": "echo"}, (
            "a broadcast excludes its sender unless `include self`"
        )


@async_test
async def test_http_reject_answers_the_handshake_with_401(features: Features) -> None:
    refused = await handshake_status(features.url("/auth401"))
    assert refused.response.status_code == 401
    assert refused.response.body is not None and b"Unauthorized" in refused.response.body, (
        refused.response.body
    )
    async with connect(
        features.url("/auth401"), additional_headers={"Authorization": "Bearer abc"}
    ) as ws:
        assert await recv_json(ws) == {"type": "welcome", "token": "Bearer abc"}
    await features.assert_alive()


@async_test
async def test_error_inside_auth_is_http_500_and_logged(features: Features) -> None:
    for query in ("", "?a=text"):
        refused = await handshake_status(features.url("/auth500" + query))
        assert refused.response.status_code == 500, query
    line = line_of(FEATURES, "AUTH-FAILS")
    features.log.wait_for(rf"features\.mock:{line}:\d+:.*auth failed")
    await features.assert_alive()


@async_test
async def test_close_action_codes_and_reasons(features: Features) -> None:
    async with connect(features.url("/close-normal")) as ws:
        assert await closed(ws) == (1000, "")
    async with connect(features.url("/close-custom")) as ws:
        assert await closed(ws) == (4000, "bye")
    async with connect(features.url("/close-later")) as ws:
        await ws.send(json.dumps({"type": "quit", "who": "Ann"}))
        assert await closed(ws) == (4999, "bye Ann")
    await features.assert_alive()


@async_test
async def test_handler_error_without_on_error_closes_1011_and_logs_the_line(
    features: Features,
) -> None:
    async with connect(features.url("/crash")) as ws:
        await ws.send(json.dumps({"b": 1}))
        code, reason = await closed(ws)
        assert code == 1011, (code, reason)
        assert reason == "Internal error"
    line = line_of(FEATURES, "HANDLER-FAILS")
    logged = features.log.wait_for(rf"features\.mock:{line}:\d+:.*handler failed")
    assert "cannot read 'b' of null" in logged, logged
    await features.assert_alive()


@async_test
async def test_handler_error_with_on_error_reports_and_stays_connected(features: Features) -> None:
    async with connect(features.url("/crash-handled")) as ws:
        await ws.send(json.dumps({"type": "boom"}))
        assert await recv_json(ws) == {"type": "error", "message": "cannot read 'b' of null"}
        await ws.send(json.dumps({"type": "ok"}))
        assert await recv_json(ws) == {"type": "ok"}, "the connection stays usable"
        await ws.send(json.dumps({"type": "boom"}))
        assert (await recv_json(ws))["type"] == "error"
    async with connect(features.url("/crash-twice")) as ws:
        await ws.send("{}")
        assert await closed(ws) == (1011, "Internal error"), "on error failed as well"
    await features.assert_alive()


@async_test
async def test_a_close_reason_too_long_fails_the_handler_at_its_line(features: Features) -> None:
    """A templated reason longer than a close frame can carry (123 bytes) is a failed action:
    1011 and the scenario's file:line in the log, not an error inside websockets."""
    async with connect(features.url("/close-too-long")) as ws:
        await ws.send("r" * 124)
        assert await closed(ws) == (1011, "Internal error")
    line = line_of(FEATURES, "REASON-TOO-LONG")
    logged = features.log.wait_for(rf"features\.mock:{line}:\d+:.*handler failed")
    assert "close reason is 124 bytes; the protocol allows 123" in logged, logged
    async with connect(features.url("/close-too-long")) as ws:
        await ws.send("r" * 123)
        assert await closed(ws) == (4000, "r" * 123), "123 bytes fit"
    async with connect(features.url("/ping-too-long")) as ws:
        await ws.send("p" * 126)
        assert await closed(ws) == (1011, "Internal error")
    line = line_of(FEATURES, "PING-TOO-LONG")
    logged = features.log.wait_for(rf"features\.mock:{line}:\d+:.*handler failed")
    assert "ping data is 126 bytes; the protocol allows 125" in logged, logged
    assert not [x for x in features.log.lines if "control frame too long" in x]
    await features.assert_alive()


@async_test
async def test_a_close_reason_too_long_runs_on_error(features: Features) -> None:
    async with connect(features.url("/close-too-long-handled")) as ws:
        await ws.send(json.dumps({"type": "close", "text": "é" * 62}))
        assert await recv_json(ws) == {
            "type": "error",
            "message": "close reason is 124 bytes; the protocol allows 123",
        }
        await ws.send(json.dumps({"type": "ok"}))
        assert await recv_json(ws) == {"type": "ok"}, "the connection stays usable"


@async_test
async def test_an_auth_close_reason_too_long_is_http_500_and_logged(features: Features) -> None:
    refused = await handshake_status(features.url("/reject-too-long?r=" + "r" * 124))
    assert refused.response.status_code == 500
    line = line_of(FEATURES, "REJECT-TOO-LONG")
    logged = features.log.wait_for(rf"features\.mock:{line}:\d+:.*auth failed")
    assert "close reason is 124 bytes; the protocol allows 123" in logged, logged
    async with connect(features.url("/reject-too-long?r=" + "r" * 123)) as ws:
        assert await closed(ws) == (4001, "r" * 123)
    async with connect(features.url("/reject-too-long")) as ws:
        assert await recv_json(ws) == {"type": "welcome"}


@async_test
async def test_an_unknown_path_is_logged_like_other_refusals(features: Features) -> None:
    await handshake_status(features.url("/no-such-route"))
    features.log.wait_for(
        r"refused 127\.0\.0\.1 /no-such-route: HTTP 404 No WebSocket route "
        r"at /no-such-route$"
    )


@async_test
async def test_binary_to_a_route_without_binary_handler_closes_1003(features: Features) -> None:
    async with connect(features.url("/typed-only")) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        assert await recv_json(ws) == {"type": "hi"}
        await ws.send(json.dumps({"type": "unknown"}))  # unmatched text: ignored, not 1003
        await ws.send(b"\x01\x02")
        code, reason = await closed(ws)
        assert code == 1003, (code, reason)
    async with connect(features.url("/typed-and-binary")) as ws:
        await ws.send(b"\x01\x02")
        assert await recv(ws) == b"\x01\x02", "an `on message binary` handler takes binary"
    await features.assert_alive()


@async_test
async def test_max_message_closes_1009(features: Features) -> None:
    async with connect(features.url("/limited")) as ws:
        await ws.send("a" * 1024)
        assert await recv_json(ws) == {"type": "accepted", "size": 1024}, (
            "a message of exactly the limit is accepted"
        )
        await ws.send("b" * 2048)
        code, reason = await closed(ws)
        assert code == 1009, (code, reason)
        assert reason is not None and "limit of 1024 bytes" in reason, reason
    async with connect(features.url("/limited")) as ws:
        await ws.send(b"\x00" * 1025)  # binary counts the same
        assert (await closed(ws))[0] == 1009
    await features.assert_alive()


@async_test
async def test_default_message_limit_is_16_mib(features: Features) -> None:
    async with await RawClient.open(features.url("/alive")) as raw:
        # Only the header of a masked text frame one byte over 16 MiB, and a little payload:
        # the limit is enforced on the header's length.
        length = 16 * 1024 * 1024 + 1
        raw.send_raw(
            bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big") + b"\0\0\0\0" + b"x" * 100
        )
        close = close_of(await raw.next_frame())
        assert close.code == 1009, close
    await features.assert_alive()


@async_test
async def test_invalid_utf8_in_a_text_frame_closes_1007(features: Features) -> None:
    async with await RawClient.open(features.url("/alive")) as raw:
        raw.send_text_bytes("valid é".encode())
        echoed = await raw.next_frame()
        assert echoed.opcode is Opcode.TEXT and echoed.data == "valid é".encode()
        raw.send_text_bytes(b"invalid \xff\xfe here")
        close = close_of(await raw.next_frame())
        assert close.code == 1007, close
    await features.assert_alive()


@pytest.mark.parametrize(
    ("frame", "what"),
    [
        (bytes([0x81, 0x02]) + b"hi", "an unmasked client frame"),
        (bytes([0x83, 0x80]) + b"\0\0\0\0", "a reserved opcode"),
        (bytes([0xC1, 0x80]) + b"\0\0\0\0", "RSV1 without a negotiated extension"),
    ],
    ids=["unmasked", "reserved-opcode", "rsv1"],
)
@async_test
async def test_protocol_errors_close_1002(features: Features, frame: bytes, what: str) -> None:
    async with await RawClient.open(features.url("/alive")) as raw:
        raw.send_raw(frame)
        close = close_of(await raw.next_frame())
        assert close.code == 1002, f"{what}: {close}"
    await features.assert_alive()


@async_test
async def test_path_parameters_are_delivered(features: Features) -> None:
    for path, name in (
        ("/ws/room/lobby", "lobby"),
        ("/ws/room/caf%C3%A9", "café"),
        ("/ws/room/42/", "42"),
    ):
        async with connect(features.url(path)) as ws:
            assert await recv_json(ws) == {"room": name}, path
    refused = await handshake_status(features.url("/ws/room/a/b"))
    assert refused.response.status_code == 404, "a parameter matches one segment only"


@async_test
async def test_request_data_query_headers_ip_and_rooms(features: Features) -> None:
    url = features.url("/info?a=1&b=two%20words&empty=&name=J%C3%BCrgen")
    async with connect(
        url, additional_headers={"X-Custom": "custom value"}, user_agent_header="e2e-agent/1.0"
    ) as ws:
        info = await recv_json(ws)
        assert info == {
            "type": "info",
            "query": {"a": "1", "b": "two words", "empty": "", "name": "Jürgen"},
            "agent": "e2e-agent/1.0",
            "custom": "custom value",
            "ip": "127.0.0.1",
            "path": "/info",
            "rooms": [],
        }
        for room in ("b", "a", "a"):
            await ws.send(json.dumps({"type": "join", "room": room}))
            last = await recv_json(ws)
        assert last == {"type": "rooms", "rooms": ["a", "b"]}
        await ws.send(json.dumps({"type": "leave", "room": "b"}))
        assert await recv_json(ws) == {"type": "rooms", "rooms": ["a"]}
    async with connect(features.url("/info")) as ws:
        info = await recv_json(ws)
        assert info["query"] == {} and info["custom"] is None, info
        assert info["agent"].startswith("Python/") and "websockets/" in info["agent"], info


@async_test
async def test_ping_and_pong_actions(features: Features) -> None:
    async with await RawClient.open(features.url("/info")) as raw:
        assert (await raw.next_frame()).opcode is Opcode.TEXT  # the info message
        raw.send_text_bytes(b'{"type": "ping-me"}')
        ping = await raw.next_frame()
        assert ping.opcode is Opcode.PING and ping.data == b"hello", ping
        raw.send_text_bytes(b'{"type": "ping-empty"}')
        ping = await raw.next_frame()
        assert ping.opcode is Opcode.PING and ping.data == b"", ping
        raw.send_text_bytes(b'{"type": "pong-me"}')
        pong = await raw.next_frame()
        assert pong.opcode is Opcode.PONG and pong.data == b"unsolicited", pong
        raw.send_text_bytes(b'{"type": "join", "room": "r"}')
        rooms = await raw.next_frame()
        assert json.loads(bytes(rooms.data)) == {"type": "rooms", "rooms": ["r"]}, (
            "the connection is still open after the ping and pong actions"
        )
    async with connect(features.url("/info")) as ws:  # websockets answers the ping itself
        await recv_json(ws)
        await ws.send(json.dumps({"type": "ping-me"}))
        await ws.send(json.dumps({"type": "join", "room": "z"}))
        assert await recv_json(ws) == {"type": "rooms", "rooms": ["z"]}


@async_test
async def test_heartbeat_pings_at_the_interval(features: Features) -> None:
    async with await RawClient.open(features.url("/heartbeat")) as raw:
        start = asyncio.get_running_loop().time()
        pings: list[float] = []
        while len(pings) < 3:
            frame = await raw.next_frame(within=3 * HEARTBEAT + BOUND)
            assert frame.opcode is Opcode.PING, f"unexpected {frame}"
            pings.append(asyncio.get_running_loop().time() - start)
        assert pings[0] >= 0.8 * HEARTBEAT, f"first ping too early: {pings}"
        assert pings[2] >= 2.5 * HEARTBEAT, f"pings more often than the heartbeat: {pings}"
        raw.send_text_bytes(b"answered every ping")
        echo = await raw.next_frame()
        while echo.opcode is Opcode.PING:
            echo = await raw.next_frame()
        assert echo.data == b"answered every ping", "still connected after three pings"


@async_test
async def test_heartbeat_keeps_an_answering_client_connected(features: Features) -> None:
    async with connect(features.url("/heartbeat"), ping_interval=None) as ws:
        # The client library answers the server's pings; nothing else happens for 3.5 beats.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(ws.wait_closed()), 3.5 * HEARTBEAT)
        await ws.send("still here")
        assert await recv(ws) == "still here"


@async_test
async def test_heartbeat_closes_a_client_that_stops_answering(features: Features) -> None:
    raw = await RawClient.open(features.url("/heartbeat"), answer=False)
    loop = asyncio.get_running_loop()
    start = loop.time()
    frames: list[Frame] = []
    try:
        while True:
            try:
                frames.append(await raw.next_frame(within=4 * HEARTBEAT + BOUND))
            except EOFError:
                break
        elapsed = loop.time() - start
    finally:
        await raw.aclose()
    kinds = [f.opcode for f in frames]
    assert kinds and kinds[0] is Opcode.PING, kinds
    assert kinds[-1] is Opcode.CLOSE, f"expected a close frame before EOF: {kinds}"
    close = close_of(frames[-1])
    assert (close.code, close.reason) == (1011, "keepalive ping timeout"), close
    assert 1.8 * HEARTBEAT <= elapsed <= 3 * HEARTBEAT + BOUND / 2, (
        f"TCP closed after {elapsed:.2f}s, heartbeat {HEARTBEAT:.2f}s"
    )
    await features.assert_alive()


# ---- signals and invalid scenarios -----------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_clients_with_1001_and_exits_0(
    serve: Callable[..., ServedMock], sig: signal.Signals
) -> None:
    served = serve(SCENARIOS / "echo.mock", SCENARIOS / "chat.mock")

    async def clients() -> None:
        async with (
            connect(served.url("/echo")) as echo,
            connect(served.url("/api/ws/chat")) as chat,
        ):
            await echo.send("up")
            assert await recv(echo) == "up"
            assert (await recv_json(chat))["type"] == "connected"
            served.process.send_signal(sig)
            assert await closed(echo) == (1001, "")
            assert await closed(chat) == (1001, "")

    asyncio.run(asyncio.wait_for(clients(), TEST_BOUND))
    try:
        status = served.process.wait(timeout=5 * UNIT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"serve did not exit within {5 * UNIT}s of {sig.name}") from None
    assert status == 0, f"exit status {status} after {sig.name}: {served.stderr_text()}"
    assert served.process.stdout is not None
    assert "closing connections with 1001" in served.process.stdout.read()


try:
    import uvloop
except ImportError:
    uvloop = None

NO_UVLOOP = needs(uvloop is None, "uvloop is not installed (pip install -e '.[test]')")


@pytest.mark.parametrize(
    ("loop", "named"),
    [
        ("asyncio", "asyncio loop"),
        pytest.param("uvloop", "uvloop", marks=NO_UVLOOP),
        pytest.param("auto", "uvloop", marks=NO_UVLOOP),
    ],
)
def test_serve_runs_on_the_loop_chosen_and_says_which(
    serve: Callable[..., ServedMock], loop: str, named: str
) -> None:
    """Every loop serves the same protocol: messages in one frame and in fragments, pings,
    a broadcast, closes in both directions, a refused handshake."""
    served = serve(SCENARIOS / "echo.mock", SCENARIOS / "basic.mock", extra=("--loop", loop))
    assert named in served.ready, served.ready

    async def clients() -> None:
        async with connect(served.url("/echo")) as echo:
            for message in ("text", "héllo ✓", b"\x00\xff", "x" * 70_000):
                await echo.send(message)
                assert await recv(echo) == message
            await echo.send(["frag", "ments ", "✓"])
            assert await recv(echo) == "fragments ✓"
            await asyncio.wait_for(await echo.ping(b"p"), BOUND)
        async with connect(served.url("/api/ws/basic")) as one:
            assert (await recv_json(one))["type"] == "welcome"
            async with connect(served.url("/api/ws/basic")) as two:
                assert (await recv_json(two))["type"] == "welcome"
                await one.send(json.dumps({"type": "hello", "n": 1}))
                assert await recv_json(two) == await recv_json(one)
            await one.close(4000, "bye")
            assert one.close_code == 4000
        assert (await handshake_status(served.url("/nowhere"))).response.status_code == 404

    asyncio.run(asyncio.wait_for(clients(), TEST_BOUND))
    assert served.stop() == 0


def test_loop_uvloop_without_uvloop_is_a_usage_error_and_auto_falls_back(
    tmp_path: Path,
) -> None:
    hide = "import sys; sys.modules['uvloop'] = None; from scenario_engine.cli import main; "
    asked = run_process(
        sys.executable,
        "-c",
        hide + "sys.exit(main(['serve', 'scenarios/echo.mock', '--loop', 'uvloop']))",
    )
    assert asked.returncode == 2, asked
    assert "uvloop is not installed" in asked.stderr and "[fast]" in asked.stderr, asked.stderr
    assert "ready" not in asked.stdout, asked.stdout
    script = tmp_path / "serve_auto.py"
    script.write_text(
        hide + "sys.exit(main(['serve', 'scenarios/echo.mock', '--port', '0']))\n",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=SCENARIOS.parent
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        assert "asyncio loop" in lines[1], lines
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10 * UNIT) == 0


BAD_SCENARIO = """\
route /x {
  on connect {
    brodcast { type: "typing" }
  }
}

route /y {
  heartbeat 10 parsecs
  on message { send raw }
}
"""


def test_serve_refuses_a_scenario_with_errors_like_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mock"
    bad.write_text(BAD_SCENARIO, encoding="utf-8")
    serving = run_cli_process("serve", bad, "--port", "0", timeout=20 * UNIT)
    checked = run_cli("check", bad)
    out, err = serving.stdout, serving.stderr
    assert checked.status == 1, checked
    assert serving.returncode == 1, f"serve exited {serving.returncode}: {out}{err}"
    assert "serving" not in out and "ready" not in out, out
    headline = re.compile(r"^.*bad\.mock:\d+:\d+: error: .*$", re.MULTILINE)
    check_errors = headline.findall(checked.stdout)
    assert check_errors, checked.stdout
    assert headline.findall(err) == check_errors, f"serve:\n{err}\ncheck:\n{checked.stdout}"
    report = checked.stdout.rsplit("\n\n", 1)[0]  # every error block, without the summary
    assert report.strip() in err, f"serve:\n{err}\ncheck:\n{checked.stdout}"


@async_test
async def test_close_between_fragments_closes_normally(features: Features) -> None:
    # RFC 6455 §5.4: a control frame, close included, may come between the fragments of a
    # message. The unfinished message is dropped and the client's code echoed (Autobahn 7.1.5).
    async with await RawClient.open(features.url("/alive")) as raw:
        raw.send_raw(Frame(Opcode.TEXT, b"fragment1", fin=False).serialize(mask=True))
        raw.send_raw(Frame(Opcode.CLOSE, Close(1000, "").serialize()).serialize(mask=True))
        raw.send_raw(Frame(Opcode.CONT, b"fragment2").serialize(mask=True))
        frame = await raw.next_frame()
        assert close_of(frame).code == 1000, f"echoed {frame} instead of the close"
    await features.assert_alive()


@async_test
async def test_a_message_may_come_in_65537_fragments(features: Features) -> None:
    # websockets 17 stops at 4096 frames (1009); the RFC sets no limit (Autobahn 9.3.1 sends
    # 4 MiB in 65537 frames).
    async with await RawClient.open(features.url("/alive")) as raw:
        fragment = Frame(Opcode.CONT, b"x", fin=False).serialize(mask=True)
        raw.send_raw(
            Frame(Opcode.TEXT, b"x", fin=False).serialize(mask=True)
            + fragment * 65535
            + Frame(Opcode.CONT, b"x").serialize(mask=True)
        )
        frame = await raw.next_frame()
        assert frame.opcode is Opcode.TEXT and frame.data == b"x" * 65537, frame
    await features.assert_alive()


def test_a_port_in_use_is_one_line_saying_so_and_exit_1() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli_process("serve", SCENARIOS, "--port", str(port))
    assert result.returncode == 1
    assert f"scenario-engine: error: cannot listen on 127.0.0.1:{port}:" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr

"""IR → text: a canonical `.mock` file (``emit_mock``) or a YAML file (``emit_yaml``).

The contract is the round trip: ``parse_mock(emit_mock(ir))`` gives back ``ir`` itself, and
``yaml.safe_load(emit_yaml(ir))`` too, for every IR the `.mock` language can spell (the few it
cannot are listed under ``emit_mock``).

Expressions are copied verbatim, never re-printed: the `.mock` front end copies their source
text into the IR, so the only spelling that round-trips is the one already in the IR. The work
here is choosing, for each expression, a place in the text where it is read back whole and as
an expression — bare (``send conn.id``) where that is safe, else inside a string literal
(``send "${1}"``), whose ``${…}`` pieces are also kept verbatim.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

import yaml

from ..errors import EmitError, ExpressionSyntaxError, StringSyntaxError
from ..expr.parse import parse_expression
from ..expr.strings import Piece, split_literal, split_template
from ..expr.syntax import (
    ArrayLit,
    Expr,
    Literal,
    ObjectLit,
    StringLit,
    keywords,
    name_regex,
    negative_number,
    terminal_regex,
)
from .schema import ACTION_NAMES
from .source import escape_pointer

__all__ = ["emit_mock", "emit_yaml"]

#: Lines longer than this have their object and array literals broken across lines.
WIDTH = 90
_INDENT = "  "

_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_EVENTS = ("connect", "message", "close", "error")


# ---- .mock ------------------------------------------------------------------------------------


def emit_mock(ir: Mapping[str, Any], expand: Collection[str] = ()) -> str:
    """The canonical `.mock` text of an IR document (raises EmitError on a malformed IR).

    ``expand`` holds the JSON pointers of object and array values and of blocks to write open,
    one member or statement per line, even when they are empty or would fit on one line (a
    value's enclosing values must be in it too); an ``else`` block in it stays ``else { if … }``
    rather than ``else if …``, and a ``broadcast``'s ``to`` list keeps its brackets. ``fmt``
    opens what holds comments this way. The text reads back as ``ir`` whatever ``expand`` is.

    Not every IR has a `.mock` spelling; these come back changed but meaning the same:

    * ``compression`` other than ``{"enabled": false}``, ``{"enabled": true}`` or
      ``{"threshold": X}`` (``{"enabled": true, "threshold": X}`` is written
      ``compression threshold X``; ``enabled: false`` with a threshold, ``compression off``;
      ``{}`` is ``compression on``);
    * ``"binary": false``, ``"includeSelf": false``, a ``close`` with a reason but no code
      (written ``close 1000 …``), empty ``on``/``message``/``let`` collections (omitted);
    * an EXPR written with surrounding blanks or comments (written trimmed);
    * a ``${…}`` that no `.mock` string literal can hold — its text has a line break or both
      quote characters — is written as an expression: ``(e)`` alone, else ``"text" + (e)``
      (``+`` with a string operand joins text exactly as interpolation does).
    """
    return _MockWriter(expand).document(ir)


class _MockWriter:
    """Writes one document; each method returns the lines (or text) of one IR node."""

    def __init__(self, expand: Collection[str] = ()) -> None:
        self.expand = expand
        # One-line renderings of the containers of the IR (alive during the call, so their
        # ids are stable), keyed by id and the slot's optional flag.
        self.flat_memo: dict[tuple[int, bool], str] = {}

    # ---- structure -----------------------------------------------------------------------
    def document(self, ir: Mapping[str, Any]) -> str:
        _expect(ir, dict, "", "a scenario document is an object")
        _only(ir, ("prefix", "let", "state", "routes", "tests"), "")
        sections: list[list[str]] = []
        if "prefix" in ir:
            sections.append([f"prefix {self.path(ir['prefix'], '/prefix')}"])
        constants = ir.get("let") or {}
        _expect(constants, dict, "/let", "'let' is an object of name → value")
        if constants:
            sections.append(
                [
                    self.let_line(name, value, f"/let/{escape_pointer(name)}", "")
                    for name, value in constants.items()
                ]
            )
        if "state" in ir:
            _expect(ir["state"], dict, "/state", "'state' is an object")
            sections.append([self.statement("", "state ", ir["state"], "/state")])
        routes = ir.get("routes", [])
        _expect(routes, list, "/routes", "'routes' is a list")
        for i, route in enumerate(routes):
            sections.append(self.route(route, f"/routes/{i}"))
        tests = ir.get("tests", [])
        _expect(tests, list, "/tests", "'tests' is a list")
        for i, test in enumerate(tests):
            sections.append(self.test(test, f"/tests/{i}"))
        return "\n\n".join("\n".join(lines) for lines in sections) + "\n"

    def route(self, route: dict[str, Any], pointer: str) -> list[str]:
        _expect(route, dict, pointer, "a route is an object")
        _only(
            route,
            (
                "path",
                "heartbeat",
                "compression",
                "maxMessage",
                "maxConnections",
                "maxRooms",
                "maxTimers",
                "maxSession",
                "origins",
                "subprotocols",
                "latency",
                "auth",
                "on",
                "every",
            ),
            pointer,
        )
        inner = _INDENT
        settings: list[str] = []
        if "heartbeat" in route:
            settings.append(
                inner + "heartbeat " + self.quantity(route["heartbeat"], pointer + "/heartbeat")
            )
        if "compression" in route:
            settings.append(
                inner + self.compression(route["compression"], pointer + "/compression")
            )
        if "maxMessage" in route:
            settings.append(
                inner + "max message " + self.quantity(route["maxMessage"], pointer + "/maxMessage")
            )
        if "maxConnections" in route:
            count = route["maxConnections"]
            _expect(count, int, pointer + "/maxConnections", "'maxConnections' is a number")
            settings.append(f"{inner}max connections {count}")
        for key, words in (("maxRooms", "max rooms"), ("maxTimers", "max timers")):
            if key in route:
                settings.append(f"{inner}{words} {_integer(route[key], f'{pointer}/{key}')}")
        if "maxSession" in route:
            settings.append(
                inner + "max session " + self.quantity(route["maxSession"], pointer + "/maxSession")
            )
        if "origins" in route:
            origins = route["origins"]
            _expect(origins, list, pointer + "/origins", "'origins' is a list of strings")
            settings.append(
                inner + "origins [" + ", ".join(_plain_literal(o) for o in origins) + "]"
            )
        if "subprotocols" in route:
            settings.append(inner + self.subprotocols(route["subprotocols"], pointer))
        if "latency" in route:
            latency = route["latency"]
            _expect(latency, str, pointer + "/latency", "'latency' is a duration or a range")
            settings.append(
                inner
                + "latency "
                + "..".join(
                    self.quantity(part, pointer + "/latency") for part in latency.split("..")
                )
            )
        sections = [settings] if settings else []
        if "auth" in route:
            steps = route["auth"]
            _expect(steps, list, pointer + "/auth", "'auth' is a list of steps")
            body = [
                self.auth_step(step, f"{pointer}/auth/{i}", inner + _INDENT)
                for i, step in enumerate(steps)
            ]
            sections.append(_block(inner + "auth", body, inner, pointer + "/auth" in self.expand))
        handlers = route.get("on", {})
        _expect(handlers, dict, pointer + "/on", "'on' is an object of event → handlers")
        for event in handlers:
            if event not in _EVENTS:
                raise EmitError(
                    f"{pointer}/on/{escape_pointer(event)}",
                    f"unknown event '{event}' (expected one of {', '.join(_EVENTS)})",
                )
        for event in _EVENTS:
            if event not in handlers:
                continue
            where = f"{pointer}/on/{event}"
            if event == "message":
                _expect(handlers[event], list, where, "'message' is a list of handlers")
                for i, handler in enumerate(handlers[event]):
                    sections.append(self.message_handler(handler, f"{where}/{i}", inner))
            else:
                sections.append(self.block(inner + "on " + event, handlers[event], where, inner))
        timers = route.get("every", [])
        _expect(timers, list, pointer + "/every", "'every' is a list of route timers")
        for i, timer in enumerate(timers):
            where = f"{pointer}/every/{i}"
            _expect(timer, dict, where, "a route timer is an object")
            _only(timer, ("interval", "times", "do"), where)
            head = inner + "every " + self.delay(timer.get("interval"), where + "/interval")
            if "times" in timer:
                head += f" times {_integer(timer['times'], where + '/times')}"
            sections.append(self.block(head, timer.get("do", []), where + "/do", inner))
        head = f"route {self.path(route.get('path'), pointer + '/path')}"
        if not sections:
            return _block(head, [], "", pointer in self.expand)
        body = [
            line for i, section in enumerate(sections) for line in ([""] if i else []) + section
        ]
        return [head + " {", *body, "}"]

    def path(self, value: Any, pointer: str) -> str:
        _expect(value, str, pointer, "a path is a string")
        # A bare PATH token where the grammar's PATH allows it; anything else (spaces, '#',
        # non-ASCII) as a string literal, which the front end reads without ${} meaning.
        return value if terminal_regex("PATH").fullmatch(value) else _plain_literal(value)

    def quantity(self, value: Any, pointer: str) -> str:
        _expect(value, str, pointer, "a duration or size is a string like 10s or 1KB")
        if not terminal_regex("QUANTITY").fullmatch(value):
            raise EmitError(pointer, f"'{value}' is not a number followed by a unit")
        return str(value)

    def subprotocols(self, value: Any, pointer: str) -> str:
        where = pointer + "/subprotocols"
        _expect(value, dict, where, "'subprotocols' is an object")
        _only(value, ("names", "required"), where)
        names = value.get("names")
        _expect(names, list, where + "/names", "'names' is a list of strings")
        required = value.get("required", False)
        _expect(required, bool, where + "/required", "'required' is true or false")
        listed = ", ".join(_plain_literal(name) for name in names)
        return f"subprotocols [{listed}]" + (" required" if required else "")

    def delay(self, value: Any, pointer: str) -> str:
        """A timer's interval or a wait: the duration as written, or its expression."""
        _expect(value, str, pointer, "a delay is a duration like 500ms, or '${EXPR}'")
        if terminal_regex("QUANTITY").fullmatch(value):
            return str(value)
        return self.template(value, pointer, 0, "", optional=True)

    def timer_name(self, value: Any, pointer: str) -> str:
        """A timer's name: a plain word bare (it is read back as that word); anything else as
        a string literal or an expression that is not a bare name (a bare name is a word)."""
        if (
            isinstance(value, str)
            and "${" not in value
            and name_regex().fullmatch(value)
            and value not in keywords()
        ):
            return value
        if isinstance(value, str):
            parts = _template_parts(value, pointer)
            literal = _quoted_literal(parts)
            return literal if literal is not None else self.concatenation(parts, pointer)
        return "(" + self.flat(value, pointer) + ")"

    def compression(self, value: Any, pointer: str) -> str:
        _expect(value, dict, pointer, "'compression' is an object")
        _only(value, ("enabled", "threshold"), pointer)
        _expect(
            value.get("enabled", True), bool, pointer + "/enabled", "'enabled' is true or false"
        )
        if value.get("enabled", True) is False:
            return "compression off"  # a threshold means nothing when compression is off
        if "threshold" in value:
            return "compression threshold " + self.quantity(
                value["threshold"], pointer + "/threshold"
            )
        return "compression on"

    # ---- auth -----------------------------------------------------------------------------
    def auth_step(self, step: Any, pointer: str, indent: str) -> str:
        name, body = _single(step, pointer, ("reject", "accept", "let", "wait"))
        where = f"{pointer}/{name}"
        if name == "accept":
            return self.statement(indent, "accept ", body, where)
        if name == "wait":
            return indent + "wait " + self.delay(body, where)
        if name == "let":
            return self.let_action(body, where, indent)
        _expect(body, dict, where, "'reject' is an object")
        _only(body, ("code", "status", "reason", "if", "unless"), where)
        if ("code" in body) == ("status" in body):
            raise EmitError(where, "a reject has either a 'code' or an HTTP 'status'")
        head = (
            f"reject {_integer(body['code'], where + '/code')}"
            if "code" in body
            else f"reject http {_integer(body['status'], where + '/status')}"
        )
        line = indent + head
        if "reason" in body:
            line += " " + self.template(
                body["reason"], where + "/reason", len(line) + 1, indent, optional=True
            )
        if "if" in body and "unless" in body:
            raise EmitError(where, "a reject has 'if' or 'unless', not both")
        for word in ("if", "unless"):
            if word in body:
                line += f" {word} " + self.expression(body[word], f"{where}/{word}")
        return line

    # ---- handlers and actions -------------------------------------------------------------
    def message_handler(self, handler: Any, pointer: str, indent: str) -> list[str]:
        _expect(handler, dict, pointer, "a message handler is an object")
        _only(handler, ("type", "where", "binary", "do"), pointer)
        head = indent + "on message"
        # The grammar's order: binary, type, where.
        binary = handler.get("binary", False)
        _expect(binary, bool, pointer + "/binary", "'binary' is true or false")
        if binary:
            head += " binary"
        if "type" in handler:
            _expect(handler["type"], str, pointer + "/type", "'type' is a string")
            head += " type " + _plain_literal(handler["type"])
        if "where" in handler:
            where = self.expression(handler["where"], pointer + "/where")
            head = _clause(head, "where " + where, indent)
        return self.block(head, handler.get("do", []), pointer + "/do", indent)

    def block(self, head: str, actions: Any, pointer: str, indent: str) -> list[str]:
        _expect(actions, list, pointer, "a block is a list of actions")
        body: list[str] = []
        for i, action in enumerate(actions):
            body.extend(self.action(action, f"{pointer}/{i}", indent + _INDENT))
        return _block(head, body, indent, pointer in self.expand)

    def action(self, action: Any, pointer: str, indent: str) -> list[str]:
        _expect(action, dict, pointer, "an action is an object")
        if "if" in action:
            return self.if_action(action, pointer, indent)
        name, body = _single(action, pointer, ACTION_NAMES)
        where = f"{pointer}/{name}"
        if name in ("send", "join", "leave", "log"):
            return [self.statement(indent, name + " ", body, where)]
        if name == "let":
            return [self.let_action(body, where, indent)]
        if name in ("every", "after"):
            return self.timer(name, body, where, indent)
        if name == "cancel":
            return [indent + "cancel " + self.timer_name(body, where)]
        if name == "wait":
            return [indent + "wait " + self.delay(body, where)]
        if name == "unset":
            return [indent + "unset " + self.expression(body, where)]
        if name == "set":
            _expect(body, dict, where, "'set' is an object with 'path' and 'value'")
            _only(body, ("path", "value"), where)
            head = f"{indent}set {self.expression(body.get('path'), where + '/path')} = "
            return [head + self.template(body.get("value"), where + "/value", len(head), indent)]
        if name == "drop":
            _expect(body, dict, where, "'drop' is an empty object")
            _only(body, (), where)
            return [indent + "drop"]
        _expect(body, dict, where, f"'{name}' is an object")
        _only(
            body,
            {"broadcast": ("data", "to", "includeSelf"), "close": ("code", "reason")}.get(
                name, ("data",)
            ),
            where,
        )
        if name == "broadcast":
            return [self.broadcast(body, where, indent)]
        if name == "close":
            line = indent + "close"
            if "code" in body:
                line += f" {_integer(body['code'], where + '/code')}"
            if "reason" in body:
                if "code" not in body:
                    line += " 1000"  # the grammar has no reason without a code; 1000 is the default
                line += " " + self.template(
                    body["reason"], where + "/reason", len(line) + 1, indent, optional=True
                )
            return [line]
        # ping / pong
        line = indent + name
        if "data" in body:
            line += " " + self.template(
                body["data"], where + "/data", len(line) + 1, indent, optional=True
            )
        return [line]

    def timer(self, name: str, body: Any, pointer: str, indent: str) -> list[str]:
        _expect(body, dict, pointer, f"'{name}' is an object")
        first = "interval" if name == "every" else "delay"
        _only(
            body, (first, "times", "as", "do") if name == "every" else (first, "as", "do"), pointer
        )
        head = f"{indent}{name} {self.delay(body.get(first), f'{pointer}/{first}')}"
        if "times" in body:
            head += f" times {_integer(body['times'], pointer + '/times')}"
        if "as" in body:
            head += " as " + self.timer_name(body["as"], pointer + "/as")
        return self.block(head, body.get("do", []), pointer + "/do", indent)

    def broadcast(self, body: dict[str, Any], pointer: str, indent: str) -> str:
        line = self.statement(indent, "broadcast ", body.get("data"), pointer + "/data")
        if "to" in body:
            rooms = body["to"]
            _expect(rooms, list, pointer + "/to", "'to' is a list of rooms")
            # `to x` is read as the list [x] unless x is an array literal, which is read as the
            # list itself; so a single room is written alone only when it is not a list.
            single = len(rooms) == 1 and not isinstance(rooms[0], list)
            value = rooms[0] if single and pointer + "/to" not in self.expand else rooms
            tail = _last_line(line) + " to "
            line += " to " + self.template(
                value, pointer + ("/to/0" if value is not rooms else "/to"), len(tail), indent
            )
        include = body.get("includeSelf", False)
        _expect(include, bool, pointer + "/includeSelf", "'includeSelf' is true or false")
        if include:
            line = _clause(line, "include self", indent)
        return line

    def if_action(self, action: dict[str, Any], pointer: str, indent: str) -> list[str]:
        _only(action, ("if", "then", "else"), pointer)
        head = indent + "if " + self.expression(action["if"], pointer + "/if")
        lines = self.block(head, action.get("then", []), pointer + "/then", indent)
        if "else" not in action:
            return lines
        otherwise = action["else"]
        _expect(otherwise, list, pointer + "/else", "'else' is a list of actions")
        if (
            len(otherwise) == 1
            and isinstance(otherwise[0], dict)
            and "if" in otherwise[0]
            and pointer + "/else" not in self.expand
        ):
            # `else if` reads back as an else list holding that one if action.
            chained = self.if_action(otherwise[0], pointer + "/else/0", indent)
            return [*lines[:-1], lines[-1] + " else " + chained[0].lstrip(), *chained[1:]]
        tail = self.block("", otherwise, pointer + "/else", indent)
        return [*lines[:-1], lines[-1] + " else" + tail[0], *tail[1:]]

    def let_action(self, body: Any, pointer: str, indent: str) -> str:
        _expect(body, dict, pointer, "'let' is an object with 'name' and 'value'")
        _only(body, ("name", "value"), pointer)
        return self.let_line(
            body.get("name"),
            body.get("value"),
            pointer,
            indent,
            name_pointer=pointer + "/name",
            value_pointer=pointer + "/value",
        )

    def let_line(
        self,
        name: Any,
        value: Any,
        pointer: str,
        indent: str,
        name_pointer: str | None = None,
        value_pointer: str | None = None,
    ) -> str:
        _expect(name, str, name_pointer or pointer, "a name is a string")
        if not name_regex().fullmatch(name):
            raise EmitError(
                name_pointer or pointer,
                f"'{name}' is not a name (letters, digits and _, not starting with a digit)",
            )
        return self.statement(indent, f"let {name} = ", value, value_pointer or pointer)

    def statement(self, indent: str, head: str, value: Any, pointer: str) -> str:
        start = indent + head
        return start + self.template(value, pointer, len(start), indent)

    # ---- tests -----------------------------------------------------------------------------
    def test(self, test: Any, pointer: str) -> list[str]:
        _expect(test, dict, pointer, "a test is an object")
        _only(test, ("name", "strict", "steps"), pointer)
        _expect(test.get("name"), str, pointer + "/name", "a test's name is a string")
        strict = test.get("strict", False)
        _expect(strict, bool, pointer + "/strict", "'strict' is true or false")
        head = "test " + _plain_literal(test["name"]) + (" strict" if strict else "")
        steps = test.get("steps", [])
        _expect(steps, list, pointer + "/steps", "'steps' is a list")
        body: list[str] = []
        for i, step in enumerate(steps):
            body.append(self.test_step(step, f"{pointer}/steps/{i}", _INDENT))
        return _block(head, body, "", pointer + "/steps" in self.expand)

    def test_step(self, step: Any, pointer: str, indent: str) -> str:
        _expect(step, dict, pointer, "a test step is an object")
        if "connect" in step:
            return self.connect_step(step, pointer, indent)
        if "wait" in step:
            _only(step, ("wait",), pointer)
            return f"{indent}wait {self.delay(step['wait'], pointer + '/wait')}"
        if "let" in step:
            _only(step, ("let",), pointer)
            return self.let_action(step["let"], pointer + "/let", indent)
        client = step.get("client")
        _expect(
            client,
            str,
            pointer + "/client",
            "a step without 'connect', 'wait' or 'let' names its 'client'",
        )
        if not name_regex().fullmatch(client):
            raise EmitError(pointer + "/client", f"'{client}' is not a name")
        line = f"{indent}{client} "
        if "send" in step:
            _only(step, ("client", "send", "binary"), pointer)
            binary = step.get("binary", False)
            _expect(binary, bool, pointer + "/binary", "'binary' is true or false")
            line += "send binary " if binary else "send "
            return line + self.template(
                step["send"], pointer + "/send", len(line), indent, optional=True
            )
        if "expect" in step:
            _only(step, ("client", "expect", "within", "capture"), pointer)
            line += "expect "
            line += self.template(
                step["expect"], pointer + "/expect", len(_last_line(line)), indent, optional=True
            )
            if "within" in step:
                line += " within " + self.quantity(step["within"], pointer + "/within")
            captured = step.get("capture", {})
            _expect(captured, dict, pointer + "/capture", "'capture' is an object")
            pieces = []
            for name, value in captured.items():
                where = f"{pointer}/capture/{escape_pointer(name)}"
                if not name_regex().fullmatch(name):
                    raise EmitError(where, f"'{name}' is not a name")
                pieces.append(f"{name} = " + self.template(value, where, 0, indent))
            if pieces:
                line = _clause(line, "capture " + ", ".join(pieces), indent)
            return line
        if "expectNoMessage" in step:
            _only(step, ("client", "expectNoMessage"), pointer)
            return (
                line
                + "expect no message for "
                + self.quantity(step["expectNoMessage"], pointer + "/expectNoMessage")
            )
        name = "close" if "close" in step else "expectClose"
        _only(
            step,
            ("client", "close") if name == "close" else ("client", "expectClose", "within"),
            pointer,
        )
        line += "close" if name == "close" else "expect close"
        body = step.get(name)
        where = f"{pointer}/{name}"
        _expect(body, dict, where, f"'{name}' is an object")
        _only(body, ("code", "reason"), where)
        if "code" in body:
            line += f" {_integer(body['code'], where + '/code')}"
        if "reason" in body:
            reason = body["reason"]
            _expect(reason, str, where + "/reason", "a test's close reason is a string")
            if "code" not in body:
                if name == "expectClose":
                    raise EmitError(where, "an expected close reason needs a code")
                line += " 1000"  # the grammar has no reason without a code; 1000 is the default
            literal = _quoted_literal(_template_parts(reason, where + "/reason"))
            if literal is None:
                raise EmitError(
                    where + "/reason",
                    "no .mock string literal can hold this "
                    "reason (a test's close reason is a string literal)",
                )
            line += " " + literal
        if "within" in step:
            line += " within " + self.quantity(step["within"], pointer + "/within")
        return line

    def connect_step(self, step: dict[str, Any], pointer: str, indent: str) -> str:
        _only(
            step,
            ("connect", "path", "query", "headers", "protocols", "within", "expectReject"),
            pointer,
        )
        client = step["connect"]
        _expect(client, str, pointer + "/connect", "'connect' is a client name")
        if not name_regex().fullmatch(client):
            raise EmitError(pointer + "/connect", f"'{client}' is not a name")
        path: str = step.get("path")  # type: ignore[assignment]
        _expect(path, str, pointer + "/path", "a path is a string")
        written = (
            path
            if terminal_regex("PATH").fullmatch(path)
            else _quoted_literal(_template_parts(path, pointer + "/path"))
        )
        if written is None:
            raise EmitError(pointer + "/path", "no .mock string literal can hold this path")
        line = f"{indent}connect {client} to {written}"
        for key in ("query", "headers", "protocols"):
            if key in step:
                line += f" {key} " + self.template(
                    step[key],
                    f"{pointer}/{key}",
                    len(_last_line(line)) + len(key) + 2,
                    indent,
                    optional=True,
                )
        if "within" in step:
            line += " within " + self.quantity(step["within"], pointer + "/within")
        if "expectReject" in step:
            line += f" expect reject {_integer(step['expectReject'], pointer + '/expectReject')}"
        return line

    # ---- expressions and templates --------------------------------------------------------
    def expression(self, value: Any, pointer: str) -> str:
        """An EXPR slot: the text itself, since the front end copies the slot's text."""
        _expect(value, str, pointer, "an expression is a string")
        text: str = value
        span = _parse_span(text)
        if span is None:
            raise EmitError(pointer, f"not an expression: {text!r}")
        # Blanks or a comment around the expression are dropped: a trailing comment would
        # swallow the rest of the line.
        return text[span[0] : span[1]]

    def template(
        self, value: Any, pointer: str, column: int, indent: str, optional: bool = False
    ) -> str:
        """A TEMPLATE value as a `.mock` expression starting at ``column`` of a line indented
        by ``indent``: on one line if it fits, else with one member per line. ``optional``:
        the slot's expression may be left out (``ping``), so a statement keyword there would
        be read as the next statement."""
        collection = isinstance(value, dict | list)
        if not collection or pointer not in self.expand:
            flat = self.flat(value, pointer, optional)
            if not collection or not value or _fits(flat, column):
                return flat
        inner = indent + _INDENT
        if isinstance(value, dict):
            lines = [
                f"{inner}{key}: {self.template(v, p, len(inner) + len(key) + 2, inner)},\n"
                for key, v, p in self.members(value, pointer)
            ]
            return "{\n" + "".join(lines) + indent + "}"
        lines = [
            f"{inner}{self.template(v, f'{pointer}/{i}', len(inner), inner)},\n"
            for i, v in enumerate(value)
        ]
        return "[\n" + "".join(lines) + indent + "]"

    def flat(self, value: Any, pointer: str, optional: bool = False) -> str:
        """``value`` on one line (but for line breaks inside expressions), memoised per node
        so that deciding where to break stays linear in the size of the template."""
        memo_key = (id(value), optional)
        if memo_key in self.flat_memo:
            return self.flat_memo[memo_key]
        if isinstance(value, dict):
            text = (
                "{ "
                + ", ".join(
                    f"{key}: {self.flat(v, p)}" for key, v, p in self.members(value, pointer)
                )
                + " }"
            )
            text = text if value else "{}"
        elif isinstance(value, list):
            text = (
                "[" + ", ".join(self.flat(v, f"{pointer}/{i}") for i, v in enumerate(value)) + "]"
            )
        elif isinstance(value, str):
            text = self.string(value, pointer, optional)
        elif value is None or isinstance(value, bool):
            text = json.dumps(value)
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise EmitError(pointer, f"{value} is not a JSON number")
            text = repr(value)
        else:
            raise EmitError(pointer, f"{type(value).__name__} is not a JSON value")
        if isinstance(value, dict | list):
            # Only containers: ids of other values (small ints, interned strings) are shared.
            self.flat_memo[memo_key] = text
        return text

    @staticmethod
    def members(value: dict[str, Any], pointer: str) -> list[tuple[str, Any, str]]:
        return [(_key(k, pointer), v, f"{pointer}/{escape_pointer(k)}") for k, v in value.items()]

    def string(self, value: str, pointer: str, optional: bool) -> str:
        parts = _template_parts(value, pointer)
        if len(parts) == 1 and isinstance(parts[0], Piece):
            text = parts[0].text
            if _bare_ok(text, optional):
                return text
        literal = _quoted_literal(parts)
        return literal if literal is not None else self.concatenation(parts, pointer)

    def concatenation(self, parts: list[str | Piece], pointer: str) -> str:
        """The last resort, for a ${…} no string literal can hold (a line break, or both quote
        characters): the same value built with `+`, which joins text as interpolation does.
        A lone expression is just parenthesised; otherwise the first operand is a string, so
        that `+` never adds two numbers."""
        operands: list[str] = []
        for part in parts:
            if isinstance(part, str):
                operands.append(_template_literal(part))
                continue
            span = _parse_span(part.text)
            if span is None:
                raise EmitError(
                    pointer,
                    f"cannot write ${{{part.text}}} in a .mock file: it is "
                    "not an expression, and no string literal can hold it",
                )
            operands.append("(" + part.text[span[0] : span[1]] + ")")
        if len(parts) > 1 and not isinstance(parts[0], str):
            operands.insert(0, '""')
        return " + ".join(operands)


def _block(head: str, body: list[str], indent: str, expand: bool = False) -> list[str]:
    if not body and not expand:
        return [head + " {}"]
    return [head + " {", *body, indent + "}"]


def _fits(flat: str, column: int) -> bool:
    return "\n" not in flat and column + len(flat) <= WIDTH


def _last_line(text: str) -> str:
    return text.rsplit("\n", 1)[-1]


def _clause(line: str, clause: str, indent: str) -> str:
    """``line`` followed by a clause of its statement (``where …``, ``include self``,
    ``capture …``): on the same line when it fits in WIDTH, else on the next one, indented
    two steps past the statement (as a continuation, not a statement of a block)."""
    if len(_last_line(line)) + 1 + len(clause) <= WIDTH:
        return f"{line} {clause}"
    return f"{line}\n{indent}{_INDENT * 2}{clause}"


def _key(key: Any, pointer: str) -> str:
    if not isinstance(key, str):
        raise EmitError(pointer, f"object keys are strings, not {type(key).__name__}")
    # Keywords are fine bare: after '{' or ',' the contextual lexer expects only a NAME or a
    # STRING, so `{ if: 1, on: 2 }` reads back as keys.
    return key if name_regex().fullmatch(key) else _plain_literal(key)


def _parse_span(text: str) -> tuple[int, int] | None:
    """Where the one expression of ``text`` starts and ends, or None if it is no expression."""
    node = _parse(text)
    return None if node is None else (node.start, node.end)


@functools.lru_cache(maxsize=4096)
def _bare_ok(text: str, optional: bool) -> bool:
    """Whether ``text`` written bare in a template slot reads back as ``${text}``.

    It must be one expression spanning the whole text (no blanks or comments around it, which
    the front end would drop), not a literal (`5`, `"x"`, `[…]`, `{…}`, also parenthesised —
    the front end turns those into JSON values, not ``${…}``), and, in a slot whose expression
    is optional, must not start with a word the grammar could take for the next statement or
    clause (`ping send` is a ping and a send).

    Parentheses would make any expression safe, but they become part of the expression's
    text, so a string literal ``"${…}"`` (verbatim) is the fallback instead.
    """
    node = _parse(text)
    if node is None or (node.start, node.end) != (0, len(text)):
        return False
    if isinstance(node, Literal | StringLit | ObjectLit | ArrayLit):
        return False
    if negative_number(node) is not None:
        return False  # -5 reads back as the number -5
    if optional:
        word = name_regex().match(text)
        if word is not None and word.group() in keywords():
            return False
    return True


def _parse(text: str) -> Expr | None:
    """The expression of ``text`` (parsed once per text, nesting-guarded), or None."""
    try:
        return parse_expression(text)
    except ExpressionSyntaxError:
        return None


def _template_parts(value: str, pointer: str) -> list[str | Piece]:
    """The text and ``${…}`` pieces of the IR template string at ``pointer``."""
    try:
        return split_template(value)
    except StringSyntaxError as err:
        raise EmitError(pointer, f"{err.message} in {value!r}") from None


def _quoted_literal(parts: list[str | Piece]) -> str | None:
    """A `.mock` string literal reading back as the template ``parts``, or None: double quotes
    first (the JSON habit), then single quotes (the ``${…}`` pieces are copied raw, so an
    expression holding a ``"`` can only sit in a ``'…'`` literal)."""
    return _literal(parts, '"') or _literal(parts, "'")


def _literal(parts: list[str | Piece], quote: str) -> str | None:
    """A `.mock` string literal reading back as the template ``parts``, or None.

    Built, then checked the way the front end will read it (the STRING token, then the
    ``${…}`` split), since a piece copied raw may hold the quote, a line break, or text that
    would end the literal or the piece early."""
    body = "".join(_escape(p, quote) if isinstance(p, str) else "${" + p.text + "}" for p in parts)
    raw = quote + body + quote
    if not terminal_regex("STRING").fullmatch(raw):
        return None
    try:
        back = split_literal(raw)
    except StringSyntaxError:
        return None
    same = [p if isinstance(p, str) else p.text for p in back]
    return raw if same == [p if isinstance(p, str) else p.text for p in parts] else None


def _escape(text: str, quote: str, template: bool = True) -> str:
    """``text`` inside a `.mock` string literal delimited by ``quote``. In a template literal
    ``\\${`` keeps a literal ``${`` from opening an expression (elsewhere ``${`` means nothing).
    Invisible characters (controls, line separators, odd spaces) are written as ``\\uXXXX`` so
    the file shows them; those beyond U+FFFF stay raw, since ``\\u`` takes four digits."""
    out: list[str] = []
    for i, c in enumerate(text):
        if c in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[c])
        elif c == quote:
            out.append("\\" + c)
        elif template and c == "$" and text.startswith("{", i + 1):
            out.append("\\$")
        elif not c.isprintable() and c != " " and c <= "\uffff":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def _plain_literal(text: str) -> str:
    """A double-quoted literal for a key, path or message type (read without ${} meaning)."""
    return '"' + _escape(text, '"', template=False) + '"'


def _template_literal(text: str) -> str:
    return '"' + _escape(text, '"') + '"'


def _integer(value: Any, pointer: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EmitError(pointer, "a code is a whole number")
    return value


def _single(value: Any, pointer: str, names: tuple[str, ...]) -> tuple[str, Any]:
    _expect(value, dict, pointer, "expected an object with one key")
    if len(value) != 1:
        raise EmitError(pointer, f"expected one key, one of {', '.join(names)}")
    ((name, body),) = value.items()
    if name not in names:
        raise EmitError(pointer, f"unknown '{name}' (expected one of {', '.join(names)})")
    return name, body


def _only(value: Mapping[str, Any], keys: tuple[str, ...], pointer: str) -> None:
    """Refuse unknown keys: writing the rest would silently drop them."""
    for key in value:
        if key not in keys:
            raise EmitError(pointer, f"unexpected key '{key}' (expected {', '.join(keys)})")


def _expect(value: Any, kind: type, pointer: str, message: str) -> None:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise EmitError(pointer, message)


# ---- YAML -------------------------------------------------------------------------------------


def emit_yaml(ir: Mapping[str, Any]) -> str:
    """The IR as YAML (block style, keys in IR order), loading back as the same IR with
    ``yaml.safe_load`` and with ``yaml_loader.load_yaml``."""
    return yaml.dump(
        ir,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1 << 30,
    )


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        # An IR built in code may share one object in two places; anchors and aliases would
        # load back the same but read badly, so each place gets its own copy.
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Items of a list indented under their key, as people write YAML (and as
        # scenarios/*.yaml are written), rather than PyYAML's flush-left default.
        super().increase_indent(flow, False)


# Strings a YAML reader might take for something else even though PyYAML (YAML 1.1) would
# write them plain: YAML 1.2 numbers (`1e3`, `0o17`, `.5`), and 1.1 booleans PyYAML forgets.
_YAML12_NON_STRING = re.compile(
    r"[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
    r"|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})
# Starts quoted although a YAML reader would manage them plain: ${ looks like a flow mapping
# to a person, and the others are YAML indicators (safer quoted for every reader).
_QUOTED_STARTS = ("${", "{", "[", "*", "&", "!", "%", "@", "`")


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style: str | None = None
    if any(c in data for c in "\r\x85\u2028\u2029"):
        # PyYAML writes these raw in plain, single-quoted and block styles, where a reader
        # takes them for line breaks (folded or normalised); double quotes escape them.
        style = '"'
    elif "\n" in data:
        # A literal block reads best; PyYAML falls back to a quoted style when the text cannot
        # be one (trailing spaces, special characters).
        style = "|"
    elif (
        data.lower() in _YAML_WORDS
        or _YAML12_NON_STRING.fullmatch(data)
        or data.startswith(_QUOTED_STARTS)
    ):
        style = "'"  # PyYAML switches to double quotes when single ones cannot hold the text
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_representer: Callable[[yaml.SafeDumper, str], yaml.ScalarNode] = _represent_str
_Dumper.add_representer(str, _representer)

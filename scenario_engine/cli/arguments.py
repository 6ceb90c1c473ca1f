"""Types of command-line values: each checks a value and says what it expects."""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
from typing import Any

from ..expr.syntax import name_regex

__all__ = [
    "assignment",
    "header_line",
    "host_name",
    "network",
    "positive_float",
    "positive_int",
    "redis_url",
    "ws_url",
]

#: A DNS name: labels of letters, digits, hyphens and underscores, separated by dots.
_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
#: An HTTP header's name: a token of RFC 9110 §5.1.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a network (CIDR, e.g. 10.0.0.0/8): {text!r}"
        ) from None


def host_name(text: str) -> str:
    """A name a server is reached under, as a Host header gives it without the port: a DNS
    name, an IP address (IPv6 with or without brackets), or ``*``."""
    if text == "*" or _NAME.fullmatch(text):
        return text
    try:
        return str(ipaddress.ip_address(text.removeprefix("[").removesuffix("]")))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a host name (a name or an address, without scheme or port, or *): {text!r}"
        ) from None


def ws_url(text: str) -> str:
    if not text.startswith(("ws://", "wss://")):
        raise argparse.ArgumentTypeError(f"must be a ws:// or wss:// URL, not {text!r}")
    from ..testing.conversation import check_target

    try:
        return check_target(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def redis_url(text: str) -> str:
    """A Redis server's URL: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or rediss:// (TLS)."""
    if not text.startswith(("redis://", "rediss://")):
        raise argparse.ArgumentTypeError(
            f"expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB, not {text!r}"
        )
    return text


def assignment(text: str) -> tuple[str, Any]:
    name, equals, value = text.partition("=")
    if not equals or not name_regex().fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value  # not JSON: the text itself


def header_line(text: str) -> tuple[str, str]:
    """``Name: value``, an HTTP header as it is written in a request."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _HEADER_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"expected 'NAME: VALUE', not {text!r}")
    if any(c in value for c in "\r\n\0"):
        raise argparse.ArgumentTypeError(f"a header's value is one line: {text!r}")
    return name, value

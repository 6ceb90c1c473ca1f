"""Durations (``30s``, ``500ms``) and sizes (``1KB``, ``1MB``) as written in scenarios."""

from __future__ import annotations

import re

from ..errors import QuantityError

__all__ = ["DURATION_UNITS", "SIZE_UNITS", "parse_duration", "parse_size"]

#: Seconds per unit.
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: Bytes per unit: powers of 1024, as Node's ws and the reference's 1024-byte threshold.
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}

_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)\Z")


def _split(text: str, what: str, example: str) -> tuple[float, str]:
    match = _QUANTITY.match(text)
    if match is None:
        raise QuantityError(f"'{text}' is not a {what}; write for example {example}")
    return float(match.group(1)), match.group(2)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``; QuantityError with a readable message otherwise."""
    number, unit = _split(text, "duration", "30s or 500ms")
    if unit not in DURATION_UNITS:
        raise QuantityError(f"unknown unit '{unit}' in duration '{text}'; use ms, s, m or h")
    return number * DURATION_UNITS[unit]


def parse_size(text: str) -> int:
    """Bytes in a size such as ``64KB``; QuantityError with a readable message otherwise."""
    number, unit = _split(text, "size", "64KB or 1MB")
    if unit not in SIZE_UNITS:
        raise QuantityError(f"unknown unit '{unit}' in size '{text}'; use B, KB, MB or GB")
    return int(number * SIZE_UNITS[unit])

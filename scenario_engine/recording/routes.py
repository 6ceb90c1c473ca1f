"""The routes of a recording: one per path seen, a ``:param`` where paths differ only in an
id-like segment (``/ws/game/41`` and ``/ws/game/57`` are ``/ws/game/:gameId``).

A served mock's journal names each connection's route pattern: those are taken as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .shapes import is_id_like

__all__ = ["match_pattern", "route_patterns"]


def route_patterns(paths: Iterable[str], known: Sequence[str] = ()) -> dict[str, str]:
    """Each path → its route pattern, given the patterns already ``known``; patterns are
    made in the order their first path comes."""
    found: dict[str, str] = {}
    clusters: list[list[list[str]]] = []  # per cluster, per segment, the values seen
    members: list[list[str]] = []
    for path in paths:
        if path in found:
            continue
        pattern = next((p for p in known if match_pattern(p, path) is not None), None)
        if pattern is not None:
            found[path] = pattern
            continue
        segments = path.split("/")
        for cluster, paths_of in zip(clusters, members, strict=True):
            if _joins(cluster, segments):
                for values, segment in zip(cluster, segments, strict=True):
                    if segment not in values:
                        values.append(segment)
                paths_of.append(path)
                break
        else:
            clusters.append([[segment] for segment in segments])
            members.append([path])
        found[path] = ""
    for cluster, paths_of in zip(clusters, members, strict=True):
        pattern = _pattern(cluster)
        for path in paths_of:
            found[path] = pattern
    return found


def match_pattern(pattern: str, path: str) -> dict[str, str] | None:
    """The params of ``path`` if the route ``pattern`` takes it, else None."""
    want, have = pattern.split("/"), path.split("/")
    if len(want) != len(have):
        return None
    params: dict[str, str] = {}
    for w, h in zip(want, have, strict=True):
        if w.startswith(":") and h:
            params[w[1:]] = h
        elif w != h:
            return None
    return params


def _joins(cluster: list[list[str]], segments: list[str]) -> bool:
    """Whether a path of ``segments`` differs from the cluster's paths only in id-like
    segments, where theirs are id-like too."""
    if len(cluster) != len(segments):
        return False
    differs = False
    for values, segment in zip(cluster, segments, strict=True):
        if segment in values and len(values) == 1:
            continue
        if not (is_id_like(segment) and all(is_id_like(v) for v in values)):
            return False
        differs = True
    return differs


def _pattern(cluster: list[list[str]]) -> str:
    segments: list[str] = []
    names: set[str] = set()
    for i, values in enumerate(cluster):
        if len(values) == 1:
            segments.append(values[0])
            continue
        name = _param_name(cluster[i - 1][0] if i and len(cluster[i - 1]) == 1 else "")
        base, n = name, 2
        while name in names:
            name, n = f"{base}{n}", n + 1
        names.add(name)
        segments.append(":" + name)
    return "/".join(segments)


def _param_name(before: str) -> str:
    """``gameId`` after ``games`` or ``game``; ``id`` after anything else."""
    word = "".join(c for c in before.title() if c.isalnum())
    if not word.isalpha() or len(word) < 2:
        return "id"
    if word.endswith("ies") and len(word) > 3:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[0].lower() + word[1:] + "Id"

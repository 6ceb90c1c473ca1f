"""What a reload changes: two versions of the served scenarios compared, route by route.

A route is the same route in both versions when it has the same path (its file's prefix
included). It is *unchanged* when its definition is equal (``Route.definition``): its own IR,
its path, the file it is written in, that file's top-level constants (``let``) and its
``state`` block. Positions are not part of it, so a comment or a blank line does not change a
route; anything it is compiled from is, so an edited constant changes every route of its file
(whether a route reads that constant or not: the cautious answer, since a wrong "unchanged"
would leave clients on behaviour that is gone).

A file's state starts over when its state block changed, or when the constants the block
computes from changed. Since both are part of the definition of every route of the file, a
state that starts over never does so under a client that read the old one: the file's routes
all count as changed, and their clients are closed.

``compare`` is pure: the engine (``Engine.reload``) acts on what it finds.
"""

from __future__ import annotations

from dataclasses import dataclass

from .program import Program

__all__ = ["Changes", "Reloaded", "compare"]


@dataclass(frozen=True, slots=True)
class Changes:
    """What differs between two versions: routes by path, states by file name; each tuple in
    the order of the version it comes from."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    #: Files served before whose state starts over from its (new) initial value.
    reset: tuple[str, ...] = ()
    #: Files whose routes changed but whose state goes on as it was.
    kept_states: tuple[str, ...] = ()
    #: Files whose initial state the state store must learn: those reset, and files new to the
    #: server that have a state block.
    defined: tuple[str, ...] = ()

    def describe(self) -> str:
        """In words, for the reload's log line: "changed /chat; state of chat.mock kept"."""
        parts = [
            f"{verb} {', '.join(paths)}"
            for verb, paths in (
                ("added", self.added),
                ("changed", self.changed),
                ("removed", self.removed),
            )
            if paths
        ] or ["no route changed"]
        parts += [f"state of {name} reset" for name in self.reset]
        parts += [f"state of {name} kept" for name in self.kept_states]
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Reloaded:
    """A reload done: what changed, how many clients stayed connected and how many were
    closed (with 1012, Service Restart)."""

    changes: Changes
    kept: int
    closed: int


def compare(old: Program, new: Program) -> Changes:
    """What serving ``new`` instead of ``old`` changes."""
    before = {route.path: route for route in old.routes}
    after = {route.path: route for route in new.routes}
    added: list[str] = []
    changed: list[str] = []
    kept: list[str] = []
    for path, route in after.items():
        earlier = before.get(path)
        if earlier is None:
            added.append(path)
        elif earlier.definition == route.definition:
            kept.append(path)
        else:
            changed.append(path)
    removed = [path for path in before if path not in after]
    # Files with a route that is not kept as it was: the ones whose state the log mentions.
    touched = {route.file for route in old.routes if route.path not in kept}
    touched.update(route.file for route in new.routes if route.path not in kept)
    reset: list[str] = []
    kept_states: list[str] = []
    defined: list[str] = []
    for name, version in new.files.items():
        earlier_version = old.files.get(name)
        if earlier_version is None:
            if version.state:
                defined.append(name)
        elif earlier_version.state != version.state:
            reset.append(name)
            defined.append(name)
        elif version.state and name in touched:
            kept_states.append(name)
    return Changes(
        added=tuple(added),
        changed=tuple(changed),
        removed=tuple(removed),
        kept=tuple(kept),
        reset=tuple(reset),
        kept_states=tuple(kept_states),
        defined=tuple(defined),
    )

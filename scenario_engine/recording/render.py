"""A scenario as the text of a file: `.mock` in fmt's layout, or YAML, by the file's suffix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError
from ..language.emit import emit_mock, emit_yaml
from ..language.ir import Document

__all__ = ["render_scenario"]


def render_scenario(document: Document, path: Path, *, comments: Sequence[str] = ()) -> str:
    """The text of ``path`` holding ``document``: YAML for ``.yaml``/``.yml``, else `.mock`
    (in the layout ``scenario-engine fmt`` writes). ``comments`` (where it was recorded,
    what the recording could not say) go first, one ``#`` line each.

    Raises UsageError for another suffix."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        text = emit_yaml(document)
    elif suffix == ".mock":
        text = emit_mock(document)
    else:
        raise UsageError(f"{path}: a scenario file ends in .mock, .yaml or .yml")
    lines = [f"# {line}".rstrip() for comment in comments for line in comment.splitlines()]
    if not lines:
        return text
    return "\n".join(lines) + "\n" + ("\n" + text if text.strip() else "")

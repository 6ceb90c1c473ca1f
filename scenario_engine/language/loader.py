"""Reading scenario files from disk: either spelling, one file or whole directories.

``load_paths`` is what every command uses: it reads each file, runs its front end (`.mock` or
YAML), validates it, and checks routes across files, returning every error found.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import cast

from ..errors import ScenarioError, UsageError
from .ir import Document, Loaded
from .mock_frontend import parse_mock
from .source import Source, escape_pointer, locate
from .validate import check_duplicate_routes, validate
from .yaml_frontend import load_yaml

__all__ = [
    "SCENARIO_SUFFIXES",
    "load_file",
    "load_paths",
    "load_source",
    "read_source",
    "scenario_files",
]

#: Larger files are refused before parsing: a scenario is written by hand, and this keeps
#: a mistaken path (a log, a binary) from costing minutes.
MAX_FILE_BYTES = 16 * 1024 * 1024
SCENARIO_SUFFIXES = (".mock", ".yaml", ".yml")


def scenario_files(
    paths: Iterable[str | Path], suffixes: tuple[str, ...] = SCENARIO_SUFFIXES
) -> list[Path]:
    """The scenario files named by ``paths``: files as given, directories searched recursively,
    for files ending in one of ``suffixes`` (``fmt`` asks for ``.mock`` alone)."""
    kinds = ", ".join(f"*{suffix}" for suffix in suffixes if suffix != ".yml")
    expected = " or ".join(", ".join(suffixes).rsplit(", ", 1))
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix in suffixes and p.is_file())
            if not inside:
                raise UsageError(f"{raw}: no scenario files ({kinds}) in this directory")
            found.extend(inside)
        elif path.is_file():
            if path.suffix not in suffixes:
                raise UsageError(f"{raw}: not a scenario file (expected {expected})")
            found.append(path)
        elif path.exists():
            raise UsageError(f"{raw}: not a regular file")
        else:
            raise UsageError(f"{raw}: no such file or directory")
    return found


def read_source(path: Path) -> Source | ScenarioError:
    """The file's text, or an error saying why it is not readable text."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return ScenarioError(
                name,
                1,
                1,
                f"file is too large ({size:,} bytes; the limit is {MAX_FILE_BYTES:,})",
                "is this really a scenario file?",
            )
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"{name}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        shown = Source(name, data.decode("utf-8", "replace"))
        return shown.error(
            line,
            col,
            "file is not valid UTF-8 text",
            "scenario files are UTF-8 text; is this a binary file?",
        )
    if "\0" in text:
        source = Source(name, text)
        offset = text.index("\0")
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return source.error(
            line,
            col,
            "file contains a NUL character",
            "scenario files are text; is this a binary file?",
        )
    return Source(name, text)


def load_source(source: Source) -> tuple[Loaded | None, list[ScenarioError]]:
    """Run the front end for the source's spelling, then validate."""
    ir: object
    if source.name.endswith(".mock"):
        ir, source_map, errors = parse_mock(source)
    else:
        ir, source_map, errors = load_yaml(source)
    if errors or ir is None:
        return None, errors
    if not isinstance(ir, dict):
        return None, [source.error(1, 1, "a scenario must be a mapping")]
    # The trust boundary: a YAML mapping is typed as a Document before its shape is known.
    # validate() runs the schema first and walks the IR only once the schema accepted it (a
    # .mock IR has the shape by construction), and only a valid Loaded leaves this function.
    loaded = Loaded(source, cast(Document, ir), source_map)
    errors = validate(loaded)
    return (loaded if not errors else None), errors


def load_file(path: Path) -> tuple[Loaded | None, list[ScenarioError]]:
    source = read_source(path)
    if isinstance(source, ScenarioError):
        return None, [source]
    return load_source(source)


def load_paths(
    paths: Iterable[str | Path], reuse: MutableMapping[str, Loaded] | None = None
) -> tuple[list[Loaded], list[ScenarioError], int]:
    """Load every scenario named by ``paths``: (valid files, all errors, number of files).

    Files of one folder that differ only in their suffix (``chat.mock`` and ``chat.yaml``) are
    one scenario kept in both spellings: they must compile to the same IR, and count once.

    ``reuse``: valid files loaded before, by name (``serve --watch`` loads again on every
    change). A file whose text is the same is taken from it instead of being parsed and
    checked again: what a file's front end and checks find depends on its text alone. It is
    updated with this load's valid files.
    """
    files = scenario_files(paths)
    loaded: list[Loaded] = []
    errors: list[ScenarioError] = []
    spellings: dict[Path, Loaded] = {}
    for path in files:
        one, found = load_file(path) if reuse is None else _load_reusing(path, reuse)
        errors.extend(found)
        if one is None:
            continue
        twin = spellings.get(path.with_suffix(""))
        if twin is None:
            spellings[path.with_suffix("")] = one
            loaded.append(one)
        elif twin.ir != one.ir:
            errors.append(_spellings_differ(one, twin))
    errors.extend(check_duplicate_routes(loaded))
    return loaded, errors, len(files)


def _load_reusing(
    path: Path, reuse: MutableMapping[str, Loaded]
) -> tuple[Loaded | None, list[ScenarioError]]:
    source = read_source(path)
    if isinstance(source, ScenarioError):
        return None, [source]
    earlier = reuse.get(source.name)
    if earlier is not None and earlier.source.text == source.text:
        return earlier, []
    one, errors = load_source(source)
    if one is not None:
        reuse[source.name] = one
    return one, errors


def _spellings_differ(one: Loaded, twin: Loaded) -> ScenarioError:
    pointer = _first_difference(one.ir, twin.ir, "")
    message = (
        f"this file and {Path(twin.source.name).name} are one scenario in two "
        "spellings, but they differ here"
    )
    hint = (
        f"at {pointer or '/'} of the IR; make them agree (scenario-engine convert "
        "writes one from the other) or rename one"
    )
    return one.source.error_at(locate(one.source_map, pointer), message, hint)


def _first_difference(a: object, b: object, pointer: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(
                    a.get(key), b.get(key), f"{pointer}/{escape_pointer(str(key))}"
                )
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return _first_difference(x, y, f"{pointer}/{i}")
        if len(a) != len(b):
            return f"{pointer}/{min(len(a), len(b))}"
    return pointer

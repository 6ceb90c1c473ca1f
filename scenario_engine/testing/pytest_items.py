"""The test blocks of a ``.mock`` file as pytest items (see ``pytest_plugin``).

Kept apart from the plugin module so that the plugin, loaded in every pytest run of a machine
where scenario-engine is installed, imports the scenario machinery only when there is a
``.mock`` file to collect.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..errors import ScenarioErrors, ScenarioTestFailed
from ..language.loader import load_file
from .reports import failure_report
from .runner import RunOptions, TestCase, collect, run_tests

__all__ = ["ScenarioFile", "ScenarioTest", "shown_path"]


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioTest]:
        loaded, errors = load_file(shown_path(self.path))
        if loaded is None:
            raise self.CollectError(ScenarioErrors(errors).format_text())
        for case in collect([loaded]):
            yield ScenarioTest.from_parent(self, name=case.name, case=case)


class ScenarioTest(pytest.Item):
    def __init__(self, *, case: TestCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        # No fixtures, but the attribute pytest's own test functions have: plugins read it
        # from every item (pytest-lsp's call wrapper fails on an item without it).
        self.funcargs: dict[str, Any] = {}

    def runtest(self) -> None:
        options = RunOptions(
            target=self.config.getoption("scenario_target"), target_option="--scenario-target"
        )
        (result,) = asyncio.run(run_tests([self.case], options))
        if not result.passed:
            raise ScenarioTestFailed(failure_report(result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioTestFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Any, int, str]:
        line = self.case.span(self.case.pointer).line
        return self.path, line - 1, f"scenario test: {self.case.name}"


def shown_path(path: Path) -> Path:
    """``path`` spelt relative to the working directory when it is below it, as a user types
    it (errors and reports then name it so)."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else Path(relative)

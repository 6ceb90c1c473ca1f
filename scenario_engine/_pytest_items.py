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

from .errors import ScenarioError
from .loader import load_file
from .reports import failure_text
from .runner import RunOptions, TestCase, TestResult, collect, run_tests

__all__ = ["ScenarioFile", "ScenarioTest"]


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioTest]:
        # Named as the user would type it (relative to the working directory when below it),
        # which is how reports then point at it.
        relative = os.path.relpath(self.path)
        loaded, errors = load_file(self.path if relative.startswith(os.pardir)
                                   else Path(relative))
        if loaded is None:
            text = "\n\n".join(e.format_text() for e in sorted(errors,
                                                                key=ScenarioError.sort_key))
            raise self.CollectError(text)
        for case in collect([loaded]):
            yield ScenarioTest.from_parent(self, name=case.name, case=case)


class ScenarioTest(pytest.Item):
    def __init__(self, *, case: TestCase, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.result: TestResult | None = None

    def runtest(self) -> None:
        options = RunOptions(target=self.config.getoption("scenario_target"))
        (self.result,) = asyncio.run(run_tests([self.case], options))
        if not self.result.passed:
            raise ScenarioTestFailed(failure_text(self.result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioTestFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Any, int, str]:
        line = self.case.span(self.case.pointer).line
        return self.path, line - 1, f"scenario test: {self.case.name}"


class ScenarioTestFailed(AssertionError):
    """A test block failed; the message is its failure report."""

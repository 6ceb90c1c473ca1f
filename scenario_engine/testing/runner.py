"""``scenario-engine test``: find the tests of scenario files and run them, concurrently.

Without a target, every test gets a fresh mock of its own file, in this process, on a free
port: its rooms, connections and ids are its own, so the tests of a run are independent and run
side by side. With a target (the real backend, say), every test talks to that one server, whose
state they share: they run one at a time unless told otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..language.ir import Loaded
from ..language.source import Span, locate
from ..runtime.compiler import compile_program
from ..runtime.journal import Journal
from ..runtime.program import Program
from ..runtime.server import ScenarioServer
from .conversation import DEFAULT_TEST_TIMEOUT, Failure, Outcome, run_conversation

__all__ = [
    "DEFAULT_JOBS",
    "RunOptions",
    "TestCase",
    "TestResult",
    "collect",
    "run_tests",
    "unverified_tls",
]

#: Tests run at once against their own mocks: each is mostly waiting, so more than the CPUs.
DEFAULT_JOBS = 8
#: Events a test's mock keeps: a test is short, and only its errors are read.
_JOURNAL_SIZE = 1000


@dataclass(frozen=True)
class TestCase:
    """One ``test`` block of a loaded scenario file."""

    loaded: Loaded
    index: int

    @property
    def name(self) -> str:
        return self.loaded.ir["tests"][self.index]["name"]

    @property
    def pointer(self) -> str:
        return f"/tests/{self.index}"

    @property
    def file(self) -> str:
        return self.loaded.source.name

    @property
    def title(self) -> str:
        return f"{self.file}::{self.name}"

    def span(self, pointer: str) -> Span:
        """Where the IR node at ``pointer`` (or its nearest mapped parent) is in the file."""
        return locate(self.loaded.source_map, pointer)


@dataclass(frozen=True)
class TestResult:
    case: TestCase
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return self.outcome.failure is None


def collect(files: Iterable[Loaded], name_filter: str | None = None) -> list[TestCase]:
    """The tests of ``files`` in file order; with a filter, those whose name or
    ``file::name`` title contains it."""
    cases = []
    for loaded in files:
        for index in range(len(loaded.ir.get("tests", []))):
            case = TestCase(loaded, index)
            if name_filter is None or name_filter in case.title:
                cases.append(case)
    return cases


@dataclass(frozen=True)
class RunOptions:
    """How to run tests: where (``target``, a ws:// or wss:// URL; None: each against its
    own mock), how many at once, for how long at most, with which constants replaced (as the
    tests see them: values only the real server knows, such as tokens), and, for wss://
    targets, whether to skip certificate verification."""

    target: str | None = None
    jobs: int | None = None
    timeout: float = DEFAULT_TEST_TIMEOUT
    overrides: Mapping[str, Any] = field(default_factory=dict)
    insecure: bool = False
    #: How the caller spells "run against a server" (the command's option, pytest's …).
    target_option: str = "--target"


async def run_tests(
    cases: Sequence[TestCase],
    options: RunOptions = RunOptions(),
    on_result: Callable[[TestResult], None] | None = None,
) -> list[TestResult]:
    """Run ``cases``; the results come back in the order of ``cases``, and to ``on_result``
    as each finishes."""
    target = options.target
    limit = asyncio.Semaphore(options.jobs or (1 if target is not None else DEFAULT_JOBS))
    tls = unverified_tls() if options.insecure and (target or "").startswith("wss:") else None
    # Each file is compiled once, however many of its tests run (each on a mock of its own).
    programs = (
        {}
        if target is not None
        else {
            id(case.loaded): compile_program([case.loaded])
            for case in cases
            if case.loaded.ir.get("routes")
        }
    )

    async def run_one(case: TestCase) -> TestResult:
        async with limit:
            if target is not None:
                outcome = await _run_against(case, target, options, tls)
            else:
                outcome = await _run_against_mock(case, programs.get(id(case.loaded)), options)
        result = TestResult(case, outcome)
        if on_result is not None:
            on_result(result)
        return result

    # A test's mock logs as `serve` does; in a test run its errors reach the failure report
    # through the journal instead, so nothing is printed between the results.
    logger = logging.getLogger("scenario_engine")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        return list(await asyncio.gather(*(run_one(case) for case in cases)))
    finally:
        logger.setLevel(level)


async def _run_against(
    case: TestCase, base_url: str, options: RunOptions, tls: ssl.SSLContext | None = None
) -> Outcome:
    assert case.loaded.constants is not None  # validated
    constants = {**case.loaded.constants, **options.overrides}
    test = case.loaded.ir["tests"][case.index]
    return await run_conversation(test, case.pointer, base_url, constants, options.timeout, tls)


def unverified_tls() -> ssl.SSLContext:
    """TLS that accepts any certificate: for staging servers with self-signed ones."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _run_against_mock(
    case: TestCase, program: Program | None, options: RunOptions
) -> Outcome:
    if program is None:
        return Outcome(
            Failure(
                case.pointer,
                "this file has no routes to test: run its tests "
                f"against a server with {options.target_option} "
                "ws://HOST:PORT",
            ),
            0.0,
        )
    # The journal is read only for the mock's errors: a failure then says why the mock did
    # what it did (a handler that failed and closed with 1011, at its file:line).
    journal = Journal(_JOURNAL_SIZE)
    server = ScenarioServer(program, "127.0.0.1", 0, journal=journal)
    await server.start()
    try:
        outcome = await _run_against(case, f"ws://127.0.0.1:{server.port}", options)
    finally:
        await server.close()
    if outcome.failure is not None:
        outcome.failure.details.extend(
            f"the mock reported: {event['location']}: {event['message']}"
            for event in journal.events()
            if event["event"] == "error"
        )
    return outcome

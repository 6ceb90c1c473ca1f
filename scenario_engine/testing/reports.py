"""How test results are shown: a line per test, failures with the step's file:line, JUnit XML.

A failure reads like a compiler error pointing at the step that failed, followed by what was
expected and what was received::

    scenarios/chat.mock:41:3: error: bob did not receive the expected message within 1s
       41 |   bob expect { type: "user-joined", username: "Alicia" }
          |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
        expected {"type": "user-joined", "username": "Alicia"}
        received {"type": "user-joined", "username": "Alice"}
          at msg.username: expected "Alicia", received "Alice"
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from itertools import groupby

from ..errors import ScenarioError
from .runner import TestResult

__all__ = ["failure_annotation", "failure_report", "junit_xml", "result_line", "summary_lines"]


def result_line(result: TestResult) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    return f"{verdict}  {result.case.title}  ({_duration(result.outcome.duration)})"


def failure_report(result: TestResult) -> str:
    """The failure of a failed test: the step's position, the source line, the evidence."""
    failure = result.outcome.failure
    assert failure is not None
    lines = [_failure_error(result).format_text()]
    lines.extend(f"    {detail}" for detail in failure.details)
    return "\n".join(lines)


def failure_annotation(result: TestResult) -> str:
    """The failure as a GitHub Actions workflow command: an annotation on the step's line."""
    failure = result.outcome.failure
    assert failure is not None
    error = _failure_error(result)
    text = "\n".join([error.message, f"in test: {result.case.name}", *failure.details])
    return replace(error, message=text, hint=None).format_github()


def _failure_error(result: TestResult) -> ScenarioError:
    failure = result.outcome.failure
    assert failure is not None
    case = result.case
    return case.loaded.source.error_at(case.span(failure.pointer), failure.message)


def summary_lines(results: Sequence[TestResult], seconds: float) -> list[str]:
    """How long the run took, then the verdict alone on the last line, for scripts to read."""
    passed = sum(1 for r in results if r.passed)
    count = len(results)
    return [
        f"ran {count} test{'' if count == 1 else 's'} in {seconds:.2f}s",
        f"{passed} passed, {count - passed} failed",
    ]


def junit_xml(results: Sequence[TestResult]) -> str:
    """JUnit XML as CI systems read it: a testsuite per file, a testcase per test."""
    suites = ET.Element("testsuites", name="scenario-engine")
    total_failures = 0
    for file, group in groupby(results, key=lambda r: r.case.file):
        members = list(group)
        failures = sum(1 for r in members if not r.passed)
        total_failures += failures
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=file,
            tests=str(len(members)),
            failures=str(failures),
            errors="0",
            skipped="0",
            time=f"{sum(r.outcome.duration for r in members):.3f}",
        )
        for result in members:
            span = result.case.span(result.case.pointer)
            case = ET.SubElement(
                suite,
                "testcase",
                name=_xml_text(result.case.name),
                classname=file,
                file=file,
                line=str(span.line),
                time=f"{result.outcome.duration:.3f}",
            )
            if result.outcome.failure is not None:
                failed = ET.SubElement(
                    case,
                    "failure",
                    message=_xml_text(result.outcome.failure.message),
                    type="AssertionError",
                )
                failed.text = _xml_text(failure_report(result))
    suites.set("tests", str(len(results)))
    suites.set("failures", str(total_failures))
    suites.set("errors", "0")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


#: Characters XML 1.0 cannot hold at all, not even escaped: a report holding one is not XML.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """``text`` with the characters XML cannot hold written as ``\\xNN`` / ``\\uNNNN``, so
    a test name or a server's message with a control character never costs CI its report."""
    return _NOT_XML.sub(
        lambda m: f"\\x{ord(m.group()):02x}" if m.group() < "\x80" else f"\\u{ord(m.group()):04x}",
        text,
    )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"

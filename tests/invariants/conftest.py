"""Prints the invariant checker's figures after the test session."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    figures: dict[str, Any] | None = None
    failures: set[str] = set()
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "checker" and getattr(report, "when", "") == "call":
                    figures = value
                    if report.outcome != "passed" or hasattr(report, "wasxfail"):
                        failures.add(value["invariant"])
    if figures is not None:
        terminalreporter.write_line(
            f"invariant checker: {figures['runs']} runs, {figures['operations']} operations,"
            f" {figures['events']} events, {figures['invariants checked']} invariant checks,"
            f" failing invariants: {', '.join(sorted(failures)) or 'none'}")


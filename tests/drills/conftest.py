"""The drills' figures table: printed at the end of any pytest run that ran a drill (so `make test`
shows it too) and written as markdown to $WARMUP_DRILL_REPORT, or .data/drills.md by default."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.drills.support import RESULTS, Figures

REPORT_ENV = "WARMUP_DRILL_REPORT"
DEFAULT_REPORT = Path(__file__).resolve().parents[2] / ".data" / "drills.md"
COLUMNS = ("drill", "expected", "delivered", "duplicates", "lost", "ledger", "outcome", "s")


def _cells(f: Figures) -> list[str]:
    return [
        f.drill,
        str(f.expected),
        str(f.delivered),
        str(f.duplicates),
        str(f.lost),
        f.ledger_text(),
        f.outcome,
        f"{f.seconds:.0f}",
    ]


def table(rows: list[Figures]) -> str:
    """A plain-text table for the terminal."""
    cells = [list(COLUMNS), *(_cells(f) for f in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown(rows: list[Figures]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(c.replace("|", "/") for c in _cells(f)) + " |" for f in rows]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return "\n".join([f"# Fault drills, {stamp}", "", head, rule, *body, ""])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault drills: figures")
    terminalreporter.write_line(table(RESULTS))
    path = Path(os.environ.get(REPORT_ENV) or DEFAULT_REPORT)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown(RESULTS), encoding="utf-8")
    except OSError as exc:  # a read-only checkout must not turn a green run red
        terminalreporter.write_line(f"could not write {path}: {exc}")
        return
    terminalreporter.write_line(f"(written to {path})")

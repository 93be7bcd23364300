"""One clock: every operation takes ``now`` from its caller. Nothing under storage/ (nor the rules or the
jobs) reads the wall clock, and no column fills in a time by itself — a row an operation forgot to date
fails its NOT NULL at once instead of taking today's date (the suite also runs on moved clocks: TEST_CLOCK)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WALL_CLOCK = {"now", "utcnow", "today", "time", "monotonic_ns", "time_ns", "localtime", "gmtime"}
CLOCK_OWNERS = {"datetime", "date", "time"}


def _wall_clock_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WALL_CLOCK:
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in CLOCK_OWNERS:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("folder", ["storage", "rules", "scheduler/jobs", "handlers"])
def test_no_operation_reads_the_wall_clock(folder):
    reads = [read for path in sorted((ROOT / folder).rglob("*.py")) if "migrations" not in path.parts
             for read in _wall_clock_reads(path)]
    assert reads == []


def test_no_column_defaults_to_the_wall_clock():
    from storage.models import Base, UTCDateTime

    defaulted = [f"{table.name}.{column.name}" for table in Base.metadata.sorted_tables for column in table.columns
                 if isinstance(column.type, UTCDateTime) and (column.default is not None or column.onupdate is not None
                                                             or column.server_default is not None)]
    assert defaulted == []

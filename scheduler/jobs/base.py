"""What a scheduled job is: an id (its section under ``jobs:`` has the same name), a plan, and its changes."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from rules import Rules
from storage.outbox import Audience


@dataclass
class JobPlan:
    """What a job would do for one day: its audiences and anything worth saying."""

    occasion: str
    audiences: list[Audience] = field(default_factory=list)
    note: str | None = None
    changes: dict[str, int] = field(default_factory=dict)  # e.g. {"points expiring": 120}


@dataclass(frozen=True)
class Job:
    """One scheduled job. ``plan`` only reads (``push preview`` shows it; evaluations it makes are
    rolled back there); ``apply_before``/``apply_after`` make the job's changes when it runs, in the
    same transaction as the planning; ``apply_after`` returns the pushes it planned itself.

    Each takes the run's ``now`` (its local date is the day the job runs for): `push run --date D`
    runs at the clock's time of day on D, so what the job writes is dated D.
    """

    id: str
    plan: Callable[[Session, Rules, datetime], JobPlan]
    apply_before: Callable[[Session, Rules, datetime], int] | None = None
    apply_after: Callable[[Session, Rules, datetime, JobPlan], int] | None = None
    preview_values: dict[str, Any] = field(default_factory=dict)  # placeholders only a real run fills in

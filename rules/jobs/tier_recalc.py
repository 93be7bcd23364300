"""``jobs.tier_recalc``: nightly re-evaluation; tier changes take effect with a notice."""
from __future__ import annotations

from rules.jobs.base import JobSection


class TierRecalcJob(JobSection):
    upgrade_message: str | None  # None: no message
    downgrade_message: str | None
    downgrade_warning_message: str | None = None  # segments.downgrade_warning_days ahead, once

    def push_messages(self) -> list[str]:
        return [name for name in (self.upgrade_message, self.downgrade_message, self.downgrade_warning_message)
                if name]

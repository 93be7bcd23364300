"""``jobs.points_reset``: expiry of due lots, retention notices and resets, expiry reminders."""
from __future__ import annotations

from rules.jobs.base import JobSection


class PointsResetJob(JobSection):
    grace_message: str
    reminder_message: str
    reset_message: str
    expiry_reminder_message: str

    def push_messages(self) -> list[str]:
        return [self.grace_message, self.reminder_message, self.reset_message, self.expiry_reminder_message]

"""``jobs.monthly_bulletin``: the month's bulletin file to the tiers that get it."""
from __future__ import annotations

from pydantic import Field

from rules.jobs.base import JobSection


class BulletinJob(JobSection):
    day: int = Field(ge=1, le=28)
    tiers: list[str]
    folder: str
    message: str

    def cron_fields(self) -> dict[str, int]:
        return {**super().cron_fields(), "day": self.day}

    def push_messages(self) -> list[str]:
        return [self.message]

    def tiers_named(self) -> list[str]:
        return list(self.tiers)

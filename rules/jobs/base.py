"""What every job's rules have: when it runs, and the push messages and tiers it names."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from rules.base import ClockTime, Frozen, parse_clock


class JobSection(Frozen):
    at: ClockTime  # local time of day, in the rules' time zone

    def cron_fields(self) -> dict[str, int]:
        """APScheduler cron fields for this job (daily at ``at`` unless the section says a day)."""
        moment = parse_clock(self.at)
        return {"hour": moment.hour, "minute": moment.minute, "second": moment.second}

    def next_run(self, now: datetime, zone: ZoneInfo) -> datetime:
        """When the scheduler next runs this job at or after ``now`` (aware), by the same cron fields."""
        return CronTrigger(timezone=zone, **self.cron_fields()).get_next_fire_time(None, now)

    def push_messages(self) -> list[str]:
        """Names of the pushes.messages this job sends (checked against config.yaml)."""
        return []

    def tiers_named(self) -> list[str]:
        """Tier ids this job names (checked against the tiers)."""
        return []

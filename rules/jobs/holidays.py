"""``jobs.holidays``: greetings on the major holidays (重大节日), by tier; dates per year (lunar holidays move)."""
from __future__ import annotations

from datetime import date

from pydantic import Field, field_validator

from rules.base import Frozen
from rules.jobs.base import JobSection


class Holiday(Frozen):
    id: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1)  # as the greeting says it: 春节, 端午节, 中秋节 …
    dates: list[date] = Field(min_length=1)  # the day in each year


class HolidaysJob(JobSection):
    messages: dict[str, str]  # tier id -> push message; tiers not named get no greeting
    holidays: list[Holiday]

    @field_validator("holidays")
    @classmethod
    def _one_holiday_a_day(cls, holidays: list[Holiday]) -> list[Holiday]:
        seen: dict[date, str] = {}
        for holiday in holidays:
            for day in holiday.dates:
                if day in seen:
                    raise ValueError(f"{day} is given to both {seen[day]} and {holiday.id}")
                seen[day] = holiday.id
        return holidays

    def on(self, day: date) -> Holiday | None:
        """The holiday falling on ``day``, if any."""
        return next((h for h in self.holidays if day in h.dates), None)

    def push_messages(self) -> list[str]:
        return list(self.messages.values())

    def tiers_named(self) -> list[str]:
        return list(self.messages)

"""``jobs.birthday``: greetings by tier, vouchers, account managers' alerts."""
from __future__ import annotations

from pydantic import Field

from rules.jobs.base import JobSection


class BirthdayJob(JobSection):
    messages: dict[str, str]  # tier id -> push message
    voucher_tiers: list[str] = Field(default_factory=list)
    voucher_valid_days: int = Field(ge=1)
    manager_alert_tiers: list[str] = Field(default_factory=list)
    manager_alert_days_before: int = Field(ge=0)
    manager_alert_message: str

    def push_messages(self) -> list[str]:
        return [self.manager_alert_message, *self.messages.values()]

    def tiers_named(self) -> list[str]:
        return [*self.messages, *self.voucher_tiers, *self.manager_alert_tiers]

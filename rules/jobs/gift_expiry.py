"""``jobs.gift_expiry``: redemption codes not collected in time expire; points and stock come back."""
from __future__ import annotations

from rules.jobs.base import JobSection


class GiftExpiryJob(JobSection):
    expired_message: str  # told to the member, once per code

    def push_messages(self) -> list[str]:
        return [self.expired_message]

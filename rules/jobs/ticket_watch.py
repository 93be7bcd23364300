"""``jobs.ticket_watch``: the complaint watcher, run every few minutes (not a daily job)."""
from __future__ import annotations

from pydantic import Field

from rules.base import Frozen


class TicketWatchJob(Frozen):
    every_minutes: int = Field(default=5, ge=1, le=60)  # under the scheduler's lease, like the drain

    def push_messages(self) -> list[str]:
        return []  # its messages are named under complaints.pushes

    def tiers_named(self) -> list[str]:
        return []

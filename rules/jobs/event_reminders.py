"""``jobs.event_reminders``: booked members are reminded ``events.reminder_days_before`` (1) before their session."""
from __future__ import annotations

from rules.jobs.base import JobSection


class EventRemindersJob(JobSection):
    """Daily; the texts are ``events.pushes``."""

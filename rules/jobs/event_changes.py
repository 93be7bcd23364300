"""``jobs.event_changes``: cancelled events and sessions, moved sessions, waitlists of past sessions."""
from __future__ import annotations

from rules.jobs.base import JobSection


class EventChangesJob(JobSection):
    """Daily (and at once with `push run event_changes`); the texts are ``events.pushes``."""

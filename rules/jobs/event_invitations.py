"""``jobs.event_invitations``: members of the target tiers are invited once an event's sign-up is open."""
from __future__ import annotations

from rules.jobs.base import JobSection


class EventInvitationsJob(JobSection):
    """Daily; the texts are ``events.pushes``."""

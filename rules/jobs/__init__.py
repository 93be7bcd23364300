"""The ``jobs:`` section: one module per scheduled job, each a ``JobSection`` with its schedule.

Adding a job's rules: a module here with its ``JobSection`` subclass, and one field in ``Jobs``
named by the job's id (the same id the job module in ``scheduler/jobs/`` declares).
"""
from __future__ import annotations

from rules.base import Frozen
from rules.jobs.base import JobSection
from rules.jobs.birthday import BirthdayJob
from rules.jobs.gift_expiry import GiftExpiryJob
from rules.jobs.event_changes import EventChangesJob
from rules.jobs.event_invitations import EventInvitationsJob
from rules.jobs.event_reminders import EventRemindersJob
from rules.jobs.holidays import HolidaysJob
from rules.jobs.monthly_bulletin import BulletinJob
from rules.jobs.points_reset import PointsResetJob
from rules.jobs.ticket_watch import TicketWatchJob
from rules.jobs.tier_recalc import TierRecalcJob


class Jobs(Frozen):
    birthday: BirthdayJob
    holidays: HolidaysJob
    monthly_bulletin: BulletinJob
    points_reset: PointsResetJob
    tier_recalc: TierRecalcJob
    ticket_watch: TicketWatchJob = TicketWatchJob()  # every few minutes, not daily (scheduler/jobs/ticket_watch.py)
    gift_expiry: GiftExpiryJob
    event_invitations: EventInvitationsJob
    event_reminders: EventRemindersJob
    event_changes: EventChangesJob

    def section(self, job_id: str) -> JobSection:
        """The rules of the job with this id."""
        return getattr(self, job_id)

    def sections(self) -> dict[str, JobSection]:
        return {name: getattr(self, name) for name in type(self).model_fields}


__all__ = ["BirthdayJob", "BulletinJob", "EventChangesJob", "EventInvitationsJob", "EventRemindersJob", "GiftExpiryJob",
           "HolidaysJob", "JobSection", "Jobs", "PointsResetJob", "TicketWatchJob", "TierRecalcJob"]

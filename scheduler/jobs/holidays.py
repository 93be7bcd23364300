"""Holiday greetings (DOMAIN.md, Pushes: birthday and holiday greetings by tier); lapsed and opted-out skipped."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import case
from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import outbox
from storage.models import Member
from storage.outbox import member_audience


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    today = rules.today(now)
    job = rules.jobs.holidays
    holiday = job.on(today)
    if holiday is None:
        return JobPlan(today.isoformat())  # most days: nothing to say
    message = case(*[(Member.tier == tier, name) for tier, name in job.messages.items()])
    greet = member_audience("holidays", f"{holiday.id}:{today}", Member.tier.in_(job.messages), message,
                            extra=outbox.extra_json(holiday=holiday.name))
    return JobPlan(f"{holiday.id}:{today}", [greet])


JOB = Job("holidays", plan)

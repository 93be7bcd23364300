"""The month's bulletin file to the tiers that get it; a month without a file sends nothing."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from rules import Rules
from scheduler.bulletins import bulletin_path
from scheduler.jobs.base import Job, JobPlan
from storage import outbox
from storage.models import Member
from storage.outbox import member_audience


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    today = rules.today(now)
    job = rules.jobs.monthly_bulletin
    month = f"{today:%Y-%m}"
    path = bulletin_path(rules, month)
    if not path.is_file():
        return JobPlan(month, note=f"no bulletin file {path}: nothing sent for {month}")
    audience = member_audience("monthly_bulletin", month, Member.tier.in_(job.tiers), job.message,
                               extra=outbox.extra_json(month=month))
    return JobPlan(month, [audience])


JOB = Job("monthly_bulletin", plan)

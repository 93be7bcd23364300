"""Event reminders: booked members are reminded ``events.reminder_days_before`` (1) before their session.

A service message (the member booked): not held by quiet hours or opt-out. Once per session and
member (outbox key ``rem:<session row>``).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from rules import Rules
from scheduler.jobs.base import Job, JobPlan
from storage import events


def plan(session: Session, rules: Rules, now: datetime) -> JobPlan:
    today = rules.today(now)
    return JobPlan(today.isoformat(), events.reminder_audiences(session, rules, rules.local_midnight(today)))


JOB = Job("event_reminders", plan)

"""The complaint watcher (every ``jobs.ticket_watch.every_minutes``, under the scheduler's lease).

Not a daily job: it warns assignees at 75 % of each deadline, alerts supervisors at a breach,
and warns overdue call-backs (first-purchase ones are made when the purchase is recorded). Each alert is planned once
per (job, occasion, recipient) in the outbox, so a restart or a second scheduler never repeats one.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from scheduler import delivery
from storage import complaints

if TYPE_CHECKING:
    from bot.services import BotState

log = logging.getLogger(__name__)

ID = "ticket_watch"


def run(state: "BotState", drain: bool = True) -> complaints.WatchReport:
    """One pass of the watcher at the clock's now; then send what it planned."""
    with state.db.write() as session:
        report = complaints.watch(session, state.rules, state.now())
    if report.warned or report.breached or report.callbacks_overdue:
        log.info("ticket watch: %d warned, %d breached, %d held for the night, %d call-backs overdue",
                 report.warned, report.breached, report.held_for_night, report.callbacks_overdue)
    if drain:
        delivery.drain(state)
    return report

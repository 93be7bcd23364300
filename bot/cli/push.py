"""``push``: scheduled pushes — preview, run now, status, requeue what a crash left in doubt."""
from __future__ import annotations

from datetime import datetime

import click
from flask.cli import AppGroup

from bot.cli.common import DATE_OPTION, day_of, state
from scheduler.jobs import JOBS, preview_job, run_job
from storage import outbox

group = AppGroup("push", help="Scheduled pushes: preview, run now, status.")
JOB = click.Choice(sorted(JOBS))


@group.command("preview")
@click.argument("job", type=JOB)
@click.option("--date", "on", type=DATE_OPTION, help="As if run on this day (default today).")
def push_preview(job: str, on: datetime | None) -> None:
    """Print, sending nothing, who would get what per tier, and three rendered samples."""
    bot, day = state(), day_of(on)
    with bot.db.write() as session:  # evaluation may write segments: roll everything back below
        preview = preview_job(session, bot.rules, job, day)
        session.rollback()
    plan = preview.plan
    click.echo(f"{job} for {plan.occasion} (as of {day}); nothing is sent")
    if plan.note:
        click.echo(f"  note: {plan.note}")
    for what, count in plan.changes.items():
        click.echo(f"  {what}: {count}")
    for occasion, lines in preview.lines:
        click.echo(f"  {occasion}:")
        for line in lines:
            why = f" ({line.reason})" if line.reason else ""
            verb = "would get" if line.status == "pending" else "skipped"
            click.echo(f"    tier {line.tier}: {line.count} {verb} {line.message}{why}")
    for recipient, text in preview.samples:
        click.echo(f"  sample to {recipient}: {text}")


@group.command("run")
@click.argument("job", type=JOB)
@click.option("--date", "on", type=DATE_OPTION, help="As if run on this day (default today).")
def push_run(job: str, on: datetime | None) -> None:
    """Run a job now; as idempotent as the scheduled run (nobody gets an occasion twice)."""
    plan, planned, stats = run_job(state(), job, day_of(on))
    click.echo(f"{job} for {plan.occasion}: {planned} pushes planned" + (f"; {plan.note}" if plan.note else ""))
    click.echo(f"sent {stats.sent}, failed {stats.failed}, unreachable {stats.unreachable}, "
               f"held for quiet hours {stats.held}, in doubt {stats.in_doubt}")
    for reason, count in stats.reasons.items():
        click.echo(f"  {count} × {reason}")


@group.command("requeue-unknown")
@click.argument("job", type=JOB)
@click.option("--occasion", help="Only this occasion (e.g. 2026-06-01 or 2026-12).")
@click.option("--yes", is_flag=True, help="Confirm without asking.")
def push_requeue_unknown(job: str, occasion: str | None, yes: bool) -> None:
    """Send again the pushes left in doubt by a sender that died mid-call (after checking they did not arrive)."""
    if not yes:
        click.confirm(f"Resend {job} pushes in doubt? A member who did receive one gets it twice", abort=True)
    with state().db.write() as session:
        count = outbox.requeue_unknown(session, job, occasion)
    click.echo(f"{count} pushes back to pending; the next drain (or `push run {job}`) sends them")


@group.command("status")
@click.option("--runs", default=3, show_default=True, help="Runs shown per job.")
def push_status(runs: int) -> None:
    """Recent runs per job: sent, skipped (and why), failed (and why)."""
    with state().db.read() as session:
        statuses = outbox.recent_runs(session, runs)
    if not statuses:
        click.echo("no job has run yet")
    for status in statuses:
        run = status.run
        click.echo(f"{run.job} {run.occasion} by {run.runner} at {run.started_at:%Y-%m-%d %H:%M:%S} UTC: "
                   f"{run.planned} planned" + (f" — {run.note}" if run.note else ""))
        for what, reason, count in status.counts:
            click.echo(f"    {what}: {count}" + (f" ({reason})" if reason else ""))

"""Operators' commands for pushes: preview, run, status; the scheduler; the WeChat API stand-in."""
from __future__ import annotations

from datetime import date, datetime

import click
from flask.cli import AppGroup, with_appcontext

from bot.cli import state

push_cli = AppGroup("push", help="Scheduled pushes: preview, run now, status.")
scheduler_cli = AppGroup("scheduler", help="The job scheduler.")


def _day(on: datetime | None) -> date:
    bot = state()
    return on.date() if on else bot.now().astimezone(bot.rules.zone).date()


def _job_choice():
    from scheduler.jobs import JOBS

    return click.Choice(sorted(JOBS))


@push_cli.command("preview")
@click.argument("job", type=_job_choice())
@click.option("--date", "on", type=click.DateTime(["%Y-%m-%d"]), help="As if run on this day (default today).")
def push_preview(job: str, on: datetime | None) -> None:
    """Print, sending nothing, who would get what per tier, and three rendered samples."""
    from scheduler.jobs import plan_job
    from storage import outbox

    bot, day = state(), _day(on)
    rules = bot.rules
    with bot.db.write() as session:  # evaluation may write segments: roll everything back below
        plan = plan_job(session, rules, job, day)
        click.echo(f"{job} for {plan.occasion} (as of {day}); nothing is sent")
        if plan.note:
            click.echo(f"  note: {plan.note}")
        for what, count in plan.changes.items():
            click.echo(f"  {what}: {count}")
        for audience in plan.audiences:
            lines = outbox.preview_audience(session, audience)
            if not lines:
                continue
            click.echo(f"  {audience.occasion}:")
            for line in lines:
                why = f" ({line.reason})" if line.reason else ""
                verb = "would get" if line.status == "pending" else "skipped"
                click.echo(f"    tier {line.tier}: {line.count} {verb} {line.message}{why}")
        samples = [(a, row) for a in plan.audiences for row in outbox.sample_audience(session, a)][:3]
        for audience, row in samples:
            click.echo(f"  sample to {row['recipient']}: {_render_sample(session, rules, row)}")
        session.rollback()


def _render_sample(session, rules, row: dict) -> str:
    from bot.config import render_text
    from scheduler.delivery import push_context
    from storage.models import Member

    member = session.get(Member, row["member_id"]) if row["member_id"] else None
    context = push_context(member, row["extra"], rules, {})
    context.setdefault("voucher_code", "BDxxxxxx")  # vouchers are made when the job runs
    context.setdefault("voucher_valid_until", "YYYY-MM-DD")
    return render_text(rules.pushes.messages[row["message"]].text, context)


@push_cli.command("run")
@click.argument("job", type=_job_choice())
@click.option("--date", "on", type=click.DateTime(["%Y-%m-%d"]), help="As if run on this day (default today).")
def push_run(job: str, on: datetime | None) -> None:
    """Run a job now; as idempotent as the scheduled run (nobody gets an occasion twice)."""
    from scheduler.jobs import run_job

    plan, planned, stats = run_job(state(), job, _day(on))
    click.echo(f"{job} for {plan.occasion}: {planned} pushes planned" + (f"; {plan.note}" if plan.note else ""))
    click.echo(f"sent {stats.sent}, failed {stats.failed}, unreachable {stats.unreachable}, "
               f"held for quiet hours {stats.held}, in doubt {stats.in_doubt}")
    for reason, count in stats.reasons.items():
        click.echo(f"  {count} × {reason}")


@push_cli.command("requeue-unknown")
@click.argument("job", type=_job_choice())
@click.option("--occasion", help="Only this occasion (e.g. 2026-06-01 or 2026-12).")
@click.option("--yes", is_flag=True, help="Confirm without asking.")
def push_requeue_unknown(job: str, occasion: str | None, yes: bool) -> None:
    """Send again the pushes left in doubt by a sender that died mid-call (after checking they did not arrive)."""
    from storage import outbox

    if not yes:
        click.confirm(f"Resend {job} pushes in doubt? A member who did receive one gets it twice", abort=True)
    with state().db.write() as session:
        count = outbox.requeue_unknown(session, job, occasion)
    click.echo(f"{count} pushes back to pending; the next drain (or `push run {job}`) sends them")


@push_cli.command("status")
@click.option("--runs", default=3, show_default=True, help="Runs shown per job.")
def push_status(runs: int) -> None:
    """Recent runs per job: sent, skipped (and why), failed (and why)."""
    from storage import outbox

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


@scheduler_cli.command("run")
def scheduler_run() -> None:
    """Run the scheduler in the foreground; several may run, one is active (Redis lease)."""
    from scheduler.runner import SchedulerRunner

    bot = state()
    if bot.settings.embedded:
        click.echo("warning: REDIS_URL is not set; the lease only covers this process", err=True)
    runner = SchedulerRunner(bot, blocking=True)
    try:
        runner.start()
    except (KeyboardInterrupt, SystemExit):
        runner.shutdown()


@click.command("fake-wechat")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@with_appcontext
def fake_wechat(host: str, port: int) -> None:
    """Serve the stand-in for the WeChat HTTP API; point WECHAT_API_BASE at http://HOST:PORT/cgi-bin/."""
    from bot.fake_wechat import serve_fake

    click.echo(f"fake WeChat API on http://{host}:{port}/cgi-bin/ — sent messages at http://{host}:{port}/_sent")
    serve_fake(host, port)


COMMANDS = (push_cli, scheduler_cli, fake_wechat)

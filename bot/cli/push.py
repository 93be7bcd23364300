"""``push``: scheduled pushes — preview, run now, status, requeue what a crash left in doubt."""
from __future__ import annotations

from datetime import datetime

import click
from flask.cli import AppGroup

from bot.cli.common import DATE_OPTION, day_of, state
from scheduler import delivery
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
        preview = preview_job(session, bot.rules, job, bot.moment_on(day))
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
    bot = state()
    # A Redis that fails mid-run is ridden out (the database decides what was sent); one that cannot be
    # reached at all is a setting to fix, said at once, before a run that would not share its limits.
    bot.redis.ping()
    plan, planned, stats = run_job(bot, job, day_of(on))
    click.echo(f"{job} for {plan.occasion}: {planned} pushes planned" + (f"; {plan.note}" if plan.note else ""))
    click.echo(f"sent {stats.sent}, failed {stats.failed}, unreachable {stats.unreachable}, "
               f"held for quiet hours {stats.held}, in doubt {stats.in_doubt}")
    if stats.recovered:
        click.echo(f"a stopped sender's pushes: {stats.recovered} never tried sent now")
    for reason, count in stats.reasons.items():
        click.echo(f"  {count} × {reason}")
    if stats.in_doubt:
        click.echo(f"in doubt: not resent; WeChat's finish events settle template messages. "
                   f"See them: flask --app wsgi push status --in-doubt {job}")
    timeout = bot.rules.pushes.claim_timeout_seconds
    for held in stats.held_elsewhere:
        when = _local(bot, held.recover_after)
        state_of = ("its heartbeat is still there: it may be running and send them; if it stopped, they are "
                    f"recovered from {when}") if held.heartbeat else \
            f"its heartbeat has stopped: they are recovered from {when}"
        click.echo(f"{held.count} pushes are held by another sender (claimed from "
                   f"{_local(bot, held.first_claimed)}) and left alone for now; {state_of} "
                   f"(pushes.claim_timeout_seconds = {timeout} s after their claim) by the next drain or "
                   f"`push run`: untried ones are sent then, the calls it had in flight marked in doubt.")


@group.command("requeue-unknown")
@click.argument("job", type=JOB)
@click.option("--occasion", help="Only this occasion (e.g. 2026-06-01 or 2026-12).")
@click.option("--card", "cards", multiple=True, help="Only this member's pushes (repeat for several).")
@click.option("--recipient", "recipients", multiple=True,
              help="Only this outbox recipient, e.g. staff:M001:member:12 for a staff alert (repeatable).")
@click.option("--yes", is_flag=True, help="Confirm without asking.")
def push_requeue_unknown(job: str, occasion: str | None, cards: tuple[str, ...], recipients: tuple[str, ...],
                         yes: bool) -> None:
    """Send again pushes left in doubt (a sender died or timed out mid-call), after checking they did not arrive."""
    bot = state()
    with bot.db.read() as session:
        doubtful = outbox.pushes_with_status(session, job, "unknown", occasion)
    chosen = [d for d in doubtful if not (cards or recipients)
              or (d.card_no in cards and d.staff_id is None) or d.recipient in recipients]
    for card in cards:
        if not any(d.card_no == card and d.staff_id is None for d in doubtful):
            click.echo(f"{card}: no push of {job} in doubt" + (f" for {occasion}" if occasion else ""))
    for recipient in recipients:
        if not any(d.recipient == recipient for d in doubtful):
            click.echo(f"{recipient}: no push of {job} in doubt" + (f" for {occasion}" if occasion else ""))
    if not chosen:
        click.echo("0 pushes back to pending")
        return
    if not yes:
        click.confirm(f"Resend {len(chosen)} {job} pushes in doubt? A member who did receive one gets it twice",
                      abort=True)
    with bot.db.write() as session:
        count = outbox.requeue_unknown(session, job, occasion, cards, recipients)
    click.echo(f"{count} pushes back to pending; the next drain (or `push run {job}`) sends them")


@group.command("retry-failed")
@click.argument("job", type=JOB)
@click.option("--occasion", required=True, help="The occasion (e.g. 2026-06-01 or 2026-12), as `push status` shows.")
@click.option("--yes", is_flag=True, help="Confirm without asking.")
def push_retry_failed(job: str, occasion: str, yes: bool) -> None:
    """Send again the pushes that failed for a passing reason (WeChat busy, over quota, out of reach), shown first."""
    bot = state()
    with bot.db.read() as session:
        failed = outbox.pushes_with_status(session, job, "failed", occasion)
    passing = [f for f in failed if delivery.transient_failure(f.reason)]
    for f in failed:
        who = f.card_no or f.recipient
        click.echo(f"  {who} {f.name or ''}  {f.reason}" + ("" if f in passing else "  (not retried: it would fail again)"))
    if not passing:
        click.echo(f"{job} {occasion}: no push failed for a passing reason")
        return
    if not yes:
        click.confirm(f"Send these {len(passing)} {job} pushes again?", abort=True)
    with bot.db.write() as session:
        count = outbox.requeue_failed(session, [f.id for f in passing])
    stats = delivery.drain(bot)
    click.echo(f"{count} pushes sent again: sent {stats.sent}, failed {stats.failed}, in doubt {stats.in_doubt}, "
               f"held for quiet hours {stats.held}")


# How each status reads in `push status`; the first four always show, the rest when there are any.
SHOWN = {"sent": "sent", "delivered": "delivered", "failed": "failed", "unknown": "in doubt",
         "unreachable": "unreachable", "sending": "being sent", "pending": "pending", "skipped": "skipped"}
ALWAYS = ("sent", "delivered", "failed", "unknown")


@group.command("status")
@click.option("--runs", default=3, show_default=True, help="Runs shown per job.")
@click.option("--in-doubt", "in_doubt_job", type=JOB, help="List this job's pushes in doubt, by card number.")
@click.option("--occasion", help="With --in-doubt: only this occasion.")
def push_status(runs: int, in_doubt_job: str | None, occasion: str | None) -> None:
    """Recent runs per job: sent, delivered, failed (and why), in doubt, skipped (and why)."""
    if in_doubt_job:
        _show_in_doubt(in_doubt_job, occasion)
        return
    bot = state()
    with bot.db.read() as session:
        statuses = outbox.recent_runs(session, bot.now(), runs)
    if not statuses:
        click.echo("no job has run yet")
    for status in statuses:
        run = status.run
        click.echo(f"{run.job} {run.occasion} by {run.runner} at {_local(bot, run.started_at)}: "
                   f"{run.planned} planned" + (f" — {run.note}" if run.note else ""))
        totals: dict[str, int] = {}
        for what, _, count in status.counts:
            totals[what] = totals.get(what, 0) + count
        if totals:
            shown = list(ALWAYS) + [s for s in SHOWN if s not in ALWAYS and totals.get(s)]
            shown += sorted(s for s in totals if s not in SHOWN)
            click.echo("  " + ", ".join(f"{SHOWN.get(s, s)} {totals.get(s, 0)}" for s in shown))
        for what, reason, count in status.counts:
            click.echo(f"    {SHOWN.get(what, what)}: {count}" + (f" ({reason})" if reason else ""))


def _show_in_doubt(job: str, occasion: str | None) -> None:
    with state().db.read() as session:
        doubtful = outbox.pushes_with_status(session, job, "unknown", occasion)
    label = f"{job}" + (f" {occasion}" if occasion else "")
    if not doubtful:
        click.echo(f"{label}: no push in doubt")
        return
    click.echo(f"{label}: {len(doubtful)} pushes in doubt — the call was made but its answer never came; "
               f"not resent. WeChat's finish event settles template messages; check the rest with the member.")
    for d in doubtful:
        who = f"{d.card_no or '-'} {d.name or ''}".strip() if d.staff_id is None \
            else f"staff {d.staff_id} about {d.card_no or '-'} ({d.recipient})"
        tried = f"claimed {_local(state(), d.claimed_at)}" if d.claimed_at else "claimed at ?"
        click.echo(f"  {d.occasion}  {who}  {d.channel or 'template?'}  {tried}  {d.reason or ''}".rstrip())
    cards = sorted({d.card_no for d in doubtful if d.card_no and d.staff_id is None})
    if cards:
        example = " ".join(f"--card {c}" for c in cards[:2])
        click.echo(f"resend some once you know they did not arrive: flask --app wsgi push requeue-unknown {job} "
                   f"--occasion {doubtful[0].occasion} {example}")


def _local(bot, moment: datetime) -> str:
    """A time as operators read it: in the rules' time zone, named."""
    return f"{moment.astimezone(bot.rules.zone):%Y-%m-%d %H:%M:%S} {bot.rules.timezone}"

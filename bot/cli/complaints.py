"""``complaints``: the monthly report, and one pass of the watcher by hand."""
from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from bot.cli.common import fail, state
from scheduler.jobs import ticket_watch
from storage import complaints

group = AppGroup("complaints", help="Complaints: report, watcher.")


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:g} h"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f} %"


def _line(label: str, data: dict) -> str:
    rating = "-" if data["average_rating"] is None else f"{data['average_rating']:g} ({data['ratings']})"
    return (f"{label:10} opened {data['opened']:4}  resolved {data['resolved']:4}  within SLA "
            f"{_share(data['resolved_within_sla']):>5}  median first response {_hours(data['median_first_response_hours']):>8}"
            f"  median resolution {_hours(data['median_resolution_hours']):>8}  rating {rating}")


@group.command("report")
@click.option("--month", help="YYYY-MM in the rules' time zone (default: this month).")
@click.option("--json", "as_json", is_flag=True, help="The same data as the API, as JSON.")
def complaints_report(month: str | None, as_json: bool) -> None:
    """Opened, resolved, share within the SLA, median first response and resolution, by priority and category."""
    bot = state()
    month = month or f"{bot.today():%Y-%m}"
    try:
        with bot.db.read() as session:
            data = complaints.report(session, bot.rules, month)
    except complaints.TicketError:
        fail(f"--month {month!r} is not a month as YYYY-MM")
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(f"complaints {month} ({'business' if bot.rules.complaints.business_hours else 'calendar'} hours)")
    click.echo(_line("all", data))
    for title, key in (("by priority", "by_priority"), ("by category", "by_category")):
        click.echo(title)
        for name, part in data[key].items():
            click.echo("  " + _line(name, part))


@group.command("watch")
def complaints_watch() -> None:
    """Run the watcher once now (the scheduler runs it every jobs.ticket_watch.every_minutes)."""
    report = ticket_watch.run(state())
    click.echo(f"warned {report.warned}, breached {report.breached}, held for the night {report.held_for_night}, "
               f"overdue call-backs warned {report.callbacks_overdue}")

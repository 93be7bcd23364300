"""``scheduler``: the job scheduler in the foreground (production runs one or more of these)."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from bot.cli.common import state
from scheduler.runner import SchedulerRunner

group = AppGroup("scheduler", help="The job scheduler.")


@group.command("run")
def scheduler_run() -> None:
    """Run the scheduler in the foreground; several may run, one is active (Redis lease)."""
    bot = state()
    if bot.settings.embedded:
        click.echo("warning: REDIS_URL is not set; the lease only covers this process", err=True)
    runner = SchedulerRunner(bot, blocking=True)
    try:
        runner.start()
    except (KeyboardInterrupt, SystemExit):
        runner.shutdown()

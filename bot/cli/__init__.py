"""Command-line interface: ``flask --app wsgi <group> <command>``. One module per command group.

Commands parse their arguments, call the same domain operations as the chat handlers and the
API, and print. Every group is listed here, in the order ``flask --help`` shows them. Every
command reports what the operator can fix (database not migrated or out of reach, Redis out of
reach, a bad rules file) in one line and exits 1 (``common.reported``, applied here to all).
"""
from __future__ import annotations

import click
from flask import Flask

from bot.cli import (complaints, db, dev, events, gifts, members, points, purchases, push, refunds, rules, scheduler,
                     serve, staff)
from bot.cli.common import reported

COMMANDS = (
    serve.command,
    rules.group,
    db.group,
    members.group,
    staff.group,
    purchases.group,
    refunds.group,
    points.group,
    gifts.group,
    push.group,
    events.group,
    scheduler.group,
    complaints.group,
    *dev.COMMANDS,
)


def _report_errors(command: click.Command) -> None:
    """Wrap the callback of ``command`` and of every command under it with ``reported``."""
    if command.callback is not None:
        command.callback = reported(command.callback)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _report_errors(sub)


def init_app(app: Flask) -> None:
    """Register every command group on the app."""
    for command in COMMANDS:
        _report_errors(command)
        app.cli.add_command(command)

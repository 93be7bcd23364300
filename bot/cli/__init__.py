"""Command-line interface: ``flask --app wsgi <group> <command>``. One module per command group.

Commands parse their arguments, call the same domain operations as the chat handlers and the
API, and print. Every group is listed here, in the order ``flask --help`` shows them.
"""
from __future__ import annotations

from flask import Flask

from bot.cli import db, dev, members, points, purchases, push, rules, scheduler, serve, staff

COMMANDS = (
    serve.command,
    rules.group,
    db.group,
    members.group,
    staff.group,
    purchases.group,
    points.group,
    push.group,
    scheduler.group,
    *dev.COMMANDS,
)


def init_app(app: Flask) -> None:
    """Register every command group on the app."""
    for command in COMMANDS:
        app.cli.add_command(command)

"""What the command modules share: the bot's services, the day a command acts on, failing in one line."""
from __future__ import annotations

import sys
from datetime import date, datetime
from typing import NoReturn

import click
from flask import current_app

from bot.services import BotState


def state() -> BotState:
    return current_app.extensions["bot"]


def day_of(on: datetime | None) -> date:
    """The ``--date`` given, or today in the rules' time zone."""
    return on.date() if on else state().today()


def fail(message: str) -> NoReturn:
    """Print ``message`` to stderr and exit 1."""
    click.echo(message, err=True)
    sys.exit(1)


DATE_OPTION = click.DateTime(["%Y-%m-%d"])

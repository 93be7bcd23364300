"""What the command modules share: the bot's services, the day a command acts on, failing in one line."""
from __future__ import annotations

import functools
import logging
import sys
from datetime import date, datetime
from typing import Callable, NoReturn
from urllib.parse import urlsplit, urlunsplit

import click
import redis
from flask import current_app
from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.services import BotState
from rules import BotError
from storage.migrate import UPGRADE_COMMAND, schema_missing

log = logging.getLogger(__name__)


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


def report_import(file: object, errors: list[tuple[int, str]], summary: str) -> None:
    """Print an import's refused lines (stderr) and its summary; exit 1 if any line was refused."""
    for line, reason in errors:
        click.echo(f"{file}, line {line}: {reason}", err=True)
    click.echo(f"{file}: {summary}")
    if errors:
        raise SystemExit(1)


def reported(callback: Callable) -> Callable:
    """Wrap a command's callback: what the operator can fix (the database never migrated or out of
    reach, Redis out of reach, the project's own errors) is said in one line, exit 1 — no traceback.

    ``bot.cli.init_app`` wraps every command with it; anything else is a bug and keeps its traceback.
    """
    if getattr(callback, "__bot_reported__", False):
        return callback

    @functools.wraps(callback)
    def run(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except (OperationalError, ProgrammingError) as exc:
            if isinstance(exc, ProgrammingError) and not schema_missing(exc):
                raise  # a wrong statement is a bug
            log.debug("command failed on the database", exc_info=True)
            fail(_database_problem(exc))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.debug("command failed on Redis", exc_info=True)
            fail(f"Redis at {_redis_url()} cannot be reached: {_one_line(exc)}")
        except BotError as exc:
            fail(str(exc))

    run.__bot_reported__ = True
    return run


def _database_problem(exc: OperationalError | ProgrammingError) -> str:
    url = _database_url()
    if schema_missing(exc):
        return (f"database {url} has no tables or an older schema ({_one_line(exc.orig)}): "
                f"run `{UPGRADE_COMMAND}`")
    return f"database {url} cannot be used: {_one_line(exc.orig)}"


def _database_url() -> str:
    try:
        return state().db.engine.url.render_as_string(hide_password=True)
    except Exception:  # no app context: say what the error says
        return "(DATABASE_URL)"


def _redis_url() -> str:
    try:
        url = state().settings.redis_url
    except Exception:
        url = None
    if not url:
        return "(REDIS_URL)"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _one_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0].strip() if text else type(exc).__name__

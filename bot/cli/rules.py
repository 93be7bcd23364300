"""``rules``: check a rules file before saving it in place."""
from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.cli.common import fail, state
from bot.router import check_handlers
from handlers import HANDLERS
from rules import ConfigError, load_rules
from storage.events import removed_with_signups
from storage.migrate import schema_missing

group = AppGroup("rules", help="Check the programme rules (config.yaml).")


@group.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def rules_check(path: Path | None) -> None:
    """Validate a rules file (default: the one in force). Exit 1 with file, line and reason if bad."""
    path = path or state().settings.rules_path
    try:
        rules = load_rules(path)
        check_handlers(rules, HANDLERS)
    except ConfigError as exc:
        fail(str(exc))
    try:
        with state().db.read() as session:
            removed = removed_with_signups(session, rules)
    except (OperationalError, ProgrammingError) as exc:
        if not schema_missing(exc):
            raise
        removed = []  # a database never migrated has no sign-ups to lose
    if removed:
        fail("\n".join(f"{path}: events: {event_id} session {key} has {count} live sign-up(s) and is no longer in "
                       "the file: put it back with `cancelled: true` (everyone signed up is told once)"
                       for event_id, key, count in removed))
    click.echo(f"{path}: OK ({len(rules.tiers)} tiers, {len(rules.routes)} routes)")

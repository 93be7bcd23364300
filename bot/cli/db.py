"""``db``: the schema."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from bot.cli.common import state
from storage.migrate import upgrade

group = AppGroup("db", help="Database schema.")


@group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Create or upgrade the schema (Alembic)."""
    upgrade(state().db, revision)
    click.echo(f"database at {revision}")

"""Schema migrations through Alembic, configured in code (no alembic.ini)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import DBAPIError

from storage.db import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "flask --app wsgi db upgrade"

# PostgreSQL's SQLSTATEs for a table or column that is not there: undefined_table, undefined_column.
_MISSING_PGCODES = frozenset({"42P01", "42703"})


def alembic_config(db: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's options go through ConfigParser interpolation: a '%' (e.g. a URL-encoded character
    # in the password) must be doubled, or ConfigParser refuses the URL.
    url = db.engine.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision``."""
    config = alembic_config(db)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def schema_missing(exc: BaseException) -> bool:
    """Whether a database error means the schema is missing or older than the code (``db upgrade`` fixes it)."""
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return False
    if getattr(exc.orig, "pgcode", None) in _MISSING_PGCODES:
        return True
    message = str(exc.orig)  # SQLite says it in words
    return message.startswith(("no such table:", "no such column:")) or " has no column named " in message

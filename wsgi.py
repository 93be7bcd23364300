"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi ...``. Reads the environment."""
import sys

from sqlalchemy.exc import ArgumentError

from bot.app import create_app
from bot.logs import setup_logging
from rules import BotError

setup_logging()
try:
    app = create_app()
except BotError as exc:  # a bad rules file or environment: said in one line, no traceback
    print(exc, file=sys.stderr)
    sys.exit(1)
except ArgumentError as exc:  # a DATABASE_URL SQLAlchemy cannot parse, or names no dialect it knows
    print(f"DATABASE_URL: {exc}", file=sys.stderr)
    sys.exit(1)

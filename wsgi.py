"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi ...``. Reads the environment."""
import sys

from bot.app import create_app
from bot.logs import setup_logging
from rules import ConfigError

setup_logging()
try:
    app = create_app()
except ConfigError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)

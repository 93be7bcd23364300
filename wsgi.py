"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi ...``. Reads the environment."""
import sys

from bot import create_app
from bot.config import ConfigError
from bot.logs import setup_logging

setup_logging()
try:
    app = create_app()
except ConfigError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)

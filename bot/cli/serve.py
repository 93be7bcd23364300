"""``serve``: start the bot (``scripts/start`` runs this)."""
from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.serving import run_simple

from bot.cli.common import state
from bot.dev.demo import seed_demo_data
from storage.migrate import upgrade

log = logging.getLogger(__name__)


@click.command("serve")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def command(host: str, port: int) -> None:
    """Start the bot: migrate, load demo members on first start (embedded mode), serve the webhook."""
    bot = state()
    upgrade(bot.db)
    if bot.settings.embedded:
        seed_demo_data(bot)
    for start in current_app.extensions.get("bot.on_serve", []):  # e.g. the embedded scheduler
        start(current_app)
    log.info("webhook at http://%s:%s/wechat (database %s)", host, port, bot.db.engine.url.render_as_string())
    run_simple(host, port, current_app._get_current_object(), threaded=True)

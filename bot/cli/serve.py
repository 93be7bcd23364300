"""``serve``: start the bot (``scripts/start`` runs this)."""
from __future__ import annotations

import dataclasses
import logging

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from bot.cli.common import fail, state
from bot.dev.demo import seed_demo_data
from bot.settings import FAKE_WECHAT_PATH
from storage.migrate import upgrade

log = logging.getLogger(__name__)


@click.command("serve")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def command(host: str, port: int) -> None:
    """Start the bot: migrate, load demo members on first start (embedded mode), serve the webhook.

    The port is taken first: a start that cannot have it stops there, before the scheduler has run
    anything (starting has no side effects beyond starting).
    """
    bot = state()
    app = current_app._get_current_object()
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (is the bot already running? --port chooses another)")
    upgrade(bot.db)
    if bot.settings.embedded:
        seed_demo_data(bot)
    mount_fake_wechat(app, host, port)  # before the scheduler starts sending
    for start in current_app.extensions.get("bot.on_serve", []):  # e.g. the embedded scheduler
        start(current_app)
    log.info("webhook at http://%s:%s/wechat (database %s)", host, port, bot.db.engine.url.render_as_string())
    server.serve_forever()


def mount_fake_wechat(app: Flask, host: str, port: int) -> str | None:
    """Embedded default without WECHAT_API_BASE: serve the WeChat API stand-in inside this server
    under /_fake_wechat and send the pushes there. Returns its root URL (None when not mounted).

    Never in production: Settings.fake_wechat is only set when REDIS_URL and WECHAT_API_BASE are unset.
    """
    bot = app.extensions["bot"]
    if not bot.settings.fake_wechat:
        return None
    from bot.dev.fake_wechat import create_fake_app

    loopback = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    loopback = f"[{loopback}]" if ":" in loopback and not loopback.startswith("[") else loopback
    origin = f"http://{loopback}:{port}"
    root = origin + FAKE_WECHAT_PATH
    fake = create_fake_app(webhook=f"{origin}/wechat", token=bot.settings.wechat_token)
    app.extensions["fake_wechat"] = fake
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {FAKE_WECHAT_PATH: fake})
    bot.settings = dataclasses.replace(bot.settings, wechat_api_base=f"{root}/cgi-bin/")
    bot._wechat = None  # a client made earlier would still point elsewhere
    log.info("WECHAT_API_BASE is not set: pushes go to the WeChat API stand-in inside this process, nothing "
             "reaches WeChat. Read them: curl -s %s/_sent — let WeChat's reports settle them: "
             "curl -s -X POST %s/_finish_events", root, root)
    return root

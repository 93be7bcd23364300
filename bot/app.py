"""The app factory: ``create_app()`` builds the Flask app from settings and rules."""
from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

import redis as redis_lib
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from bot import admin, api, bulletins, cli, webhook
from bot.router import check_handlers
from bot.services import BotState, system_clock
from bot.settings import Settings
from handlers import HANDLERS
from rules import Rules, RulesHolder, load_rules
from storage.db import Database
from storage.redis import Keys, connect

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    rules: Rules | None = None,
    *,
    redis_client: redis_lib.Redis | None = None,
    clock: Callable[[], float] = system_clock,
) -> Flask:
    """Build the app. Tests pass settings, rules and a clock; wsgi.py reads them from the environment."""
    settings = settings or Settings.from_env()
    rules = rules or load_rules(settings.rules_path)
    check_handlers(rules, HANDLERS)
    holder = RulesHolder(settings.rules_path, rules, validate=lambda new: check_handlers(new, HANDLERS))
    if redis_client is None and settings.redis_url:
        redis_client, reply_redis = connect(settings.redis_url), connect(settings.redis_url, reply_path=True)
    else:  # given by a test, or the in-process stand-in: one client for everything
        redis_client = reply_redis = redis_client if redis_client is not None else connect(None)
    state = BotState(
        settings=settings,
        rules_holder=holder,
        db=Database(settings.database_url),
        redis=redis_client,
        reply_redis=reply_redis,
        keys=Keys(settings.redis_prefix),
        clock=clock,
    )

    app = Flask(__name__)
    app.extensions["bot"] = state
    app.register_blueprint(webhook.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)  # the dashboard at /admin
    app.register_blueprint(bulletins.bp)  # /bulletins/<month>, where the bulletin's template links
    _short_error_pages(app)
    cli.init_app(app)
    if not settings.api_key:
        log.warning("API_KEY is not set: the store API (/api/*) refuses every call")
    if settings.embedded:
        from scheduler.runner import start_embedded

        app.extensions.setdefault("bot.on_serve", []).append(start_embedded)
    _reload_rules_on_sighup(holder)
    return app


def _short_error_pages(app: Flask) -> None:
    """Errors answer JSON under /api/ and a short text elsewhere: never Flask's HTML pages, never a traceback."""

    def answer(status: int, text: str, headers: list[tuple[str, str]] = ()):
        if request.path == "/api" or request.path.startswith("/api/"):
            response = jsonify(error=text)
            response.status_code = status
        else:
            response = Response(f"{text}\n", status, mimetype="text/plain")
        for name, value in headers:  # e.g. a 405's Allow; the body's own type stays
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return answer(exc.code or 500, (exc.name or "error").lower(), exc.get_headers())

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return answer(500, "internal error")


def _reload_rules_on_sighup(holder: RulesHolder) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (e.g. not in some test runners)
    previous = signal.getsignal(signal.SIGHUP)

    def _on_sighup(signum, frame):
        holder.reload()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGHUP, _on_sighup)

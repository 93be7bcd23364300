"""Command-line interface: ``flask --app wsgi <group> <command>``.

Commands call the same domain operations as the chat handlers and the API.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from bot.config import ROOT, ConfigError, load_rules
from bot.state import BotState

log = logging.getLogger(__name__)

DEMO_MEMBERS = ROOT / "demo" / "members.csv"
DEMO_STAFF = (("M001", "王经理"), ("M002", "李经理"))
# (card, days ago, amount CNY): purchases that put each demo member in their tier.
DEMO_PURCHASES = (
    ("D0000001", 200, "1280.00"), ("D0000001", 35, "699.00"),
    ("C0000001", 300, "4200.00"), ("C0000001", 60, "2600.00"),
    ("B0000001", 500, "12000.00"), ("B0000001", 90, "13500.00"),
    ("A0000001", 600, "28000.00"), ("A0000001", 250, "16800.00"), ("A0000001", 20, "9900.00"),
    ("A0000002", 400, "52000.00"), ("A0000002", 12, "31000.00"),
)


def state() -> BotState:
    return current_app.extensions["bot"]


rules_cli = AppGroup("rules", help="Check the programme rules (config.yaml).")
db_cli = AppGroup("db", help="Database schema.")
members_cli = AppGroup("members", help="Members: import from the stores, inspect.")
staff_cli = AppGroup("staff", help="Account managers and service staff.")


@rules_cli.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def rules_check(path: Path | None) -> None:
    """Validate a rules file (default: the one in force). Exit 1 with file, line and reason if bad."""
    from handlers import HANDLERS
    from bot.router import check_handlers

    path = path or state().settings.rules_path
    try:
        rules = load_rules(path)
        check_handlers(rules, HANDLERS)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"{path}: OK ({len(rules.tiers)} tiers, {len(rules.routes)} routes)")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Create or upgrade the schema (Alembic)."""
    from storage.migrate import upgrade

    upgrade(state().db, revision)
    click.echo(f"database at {revision}")


@members_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def members_import(file: Path) -> None:
    """Upsert members from CSV: card_no,name,phone,birthday,tier,points,manager."""
    report = import_members_file(file)
    for line, reason in report.errors:
        click.echo(f"{file}, line {line}: {reason}", err=True)
    click.echo(f"{file}: {report.summary()}")
    if report.errors:
        sys.exit(1)


def import_members_file(file: Path, actor: str = "cli"):
    from storage.members import import_members

    bot = state()
    with file.open(encoding="utf-8-sig", newline="") as lines, bot.db.write() as session:
        return import_members(session, lines, bot.rules, actor=actor)


@staff_cli.command("add")
@click.argument("staff_id")
@click.argument("name")
@click.option("--openid", help="The staff member's WeChat openid, for alerts.")
@click.option("--role", default="manager", type=click.Choice(["manager", "service", "admin"]))
def staff_add(staff_id: str, name: str, openid: str | None, role: str) -> None:
    """Create or update a staff member."""
    from storage.members import add_staff

    with state().db.write() as session:
        add_staff(session, staff_id, name, openid=openid, role=role)
    click.echo(f"staff {staff_id} saved")


@click.command("serve")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Start the bot: migrate, load demo members on first start (embedded mode), serve the webhook."""
    from storage.migrate import upgrade

    bot = state()
    upgrade(bot.db)
    if bot.settings.embedded:
        seed_demo_data()
    on_serve = current_app.extensions.get("bot.on_serve", [])
    for start in on_serve:  # e.g. the embedded scheduler
        start(current_app)
    log.info("webhook at http://%s:%s/wechat (database %s)", host, port, bot.db.engine.url.render_as_string())
    from werkzeug.serving import run_simple

    run_simple(host, port, current_app._get_current_object(), threaded=True)


def seed_demo_data() -> None:
    """Load demo staff and members once, so the demo can bind cards of every tier."""
    from sqlalchemy import select

    from storage.members import add_staff
    from storage.models import Member

    bot = state()
    with bot.db.read() as session:
        if session.scalar(select(Member.id).limit(1)) is not None:
            return
    with bot.db.write() as session:
        for staff_id, name in DEMO_STAFF:
            add_staff(session, staff_id, name)
    report = import_members_file(DEMO_MEMBERS, actor="demo")
    for line, reason in report.errors:
        log.error("%s, line %s: %s", DEMO_MEMBERS, line, reason)
    _record_demo_purchases(bot)
    log.info("demo members loaded from %s: %s", DEMO_MEMBERS, report.summary())


def _record_demo_purchases(bot: BotState) -> None:
    from datetime import timedelta
    from decimal import Decimal

    from storage.purchases import PurchaseIn, record_purchase

    now = bot.now()
    with bot.db.write() as session:
        for n, (card_no, days_ago, amount) in enumerate(DEMO_PURCHASES, start=1):
            purchase = PurchaseIn(f"DEMO-{n:04d}", card_no, Decimal(amount), now - timedelta(days=days_ago), "演示门店")
            record_purchase(session, purchase, bot.rules, actor="demo")


@click.command("chat")
@with_appcontext
@click.option("--openid", default="demo-openid-0001", show_default=True, help="Who is typing.")
@click.option("--aes", is_flag=True, help="Safe mode: encrypt messages and decrypt replies.")
@click.option("--url", default="http://127.0.0.1:5000/wechat", show_default=True, help="The running webhook.")
def chat(openid: str, aes: bool, url: str) -> None:
    """Play the WeChat server against the running webhook: type messages, read replies.

    Lines starting with '/' are events: /subscribe, /unsubscribe, /click KEY, /quit.
    """
    from bot.console import run_console

    settings = state().settings
    run_console(settings, url=url, openid=openid, aes=aes)


def init_app(app: Flask) -> None:
    """Register the command groups on the app."""
    from bot import cli_points, cli_push

    for command in (rules_cli, db_cli, members_cli, staff_cli, serve, chat, *cli_points.COMMANDS,
                    *cli_push.COMMANDS):
        app.cli.add_command(command)

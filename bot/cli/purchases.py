"""``purchases``: purchases from the store systems, by CSV."""
from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from bot.cli.common import report_import, state
from storage.csvfile import open_csv
from storage.purchases import import_purchases

group = AppGroup("purchases", help="Purchases from the store systems.")


@group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def purchases_import(file: Path) -> None:
    """Record purchases from CSV: receipt_no,card_no,amount,purchased_at,store (idempotent)."""
    bot = state()
    with open_csv(file) as lines, bot.db.write() as session:
        report = import_purchases(session, lines, bot.rules, now=bot.now(), actor="cli")
    report_import(file, report.errors, report.summary())

"""``refunds``: refunds from the store systems, by CSV (the API takes them one at a time)."""
from __future__ import annotations

from pathlib import Path

import click
from flask.cli import AppGroup

from bot.cli.common import report_import, state
from storage.csvfile import open_csv
from storage.purchases import import_refunds

group = AppGroup("refunds", help="Refunds from the store systems.")


@group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def refunds_import(file: Path) -> None:
    """Refund purchases from CSV: receipt_no,refund_no,amount (empty amount: all that is left; idempotent)."""
    bot = state()
    with open_csv(file) as lines, bot.db.write() as session:
        report = import_refunds(session, lines, bot.rules, bot.now(), actor="cli")
    report_import(file, report.errors, report.summary())

"""``points``: the ledger's own check."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from bot.cli.common import state
from storage.ledger import check_balances

group = AppGroup("points", help="The points ledger.")


@group.command("check")
def points_check() -> None:
    """Prove every cached balance equals the sum of its ledger; exit 1 listing any that do not."""
    with state().db.read() as session:
        mismatches = check_balances(session)
    for m in mismatches:
        click.echo(f"{m.card_no}: cached {m.cached}, ledger sum {m.ledger}", err=True)
    if mismatches:
        raise SystemExit(1)
    click.echo("every balance equals the sum of its ledger")

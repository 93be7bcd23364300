"""``staff``: account managers and service staff."""
from __future__ import annotations

import click
from flask.cli import AppGroup

from bot.cli.common import state
from storage.members import add_staff

group = AppGroup("staff", help="Account managers and service staff.")


@group.command("add")
@click.argument("staff_id")
@click.argument("name")
@click.option("--openid", help="The staff member's WeChat openid, for alerts.")
@click.option("--role", default="manager", type=click.Choice(["manager", "service", "admin"]))
def staff_add(staff_id: str, name: str, openid: str | None, role: str) -> None:
    """Create or update a staff member."""
    with state().db.write() as session:
        add_staff(session, staff_id, name, openid=openid, role=role)
    click.echo(f"staff {staff_id} saved")

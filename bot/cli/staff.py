"""``staff``: account managers and service staff."""
from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from bot.cli.common import fail, state
from storage.logins import set_password
from storage.members import add_staff, list_staff, mask_openid
from storage.staff import create_invite

group = AppGroup("staff", help="Account managers and service staff.")


@group.command("add")
@click.argument("staff_id")
@click.argument("name")
@click.option("--openid", help="The staff member's WeChat openid, for alerts.")
@click.option("--role", default="manager", type=click.Choice(["manager", "service", "supervisor", "admin"]))
def staff_add(staff_id: str, name: str, openid: str | None, role: str) -> None:
    """Create or update a staff member."""
    bot = state()
    with bot.db.write() as session:
        add_staff(session, staff_id, name, openid=openid, role=role, now=bot.now())
    click.echo(f"staff {staff_id} saved")


@group.command("list")
def staff_list() -> None:
    """Every staff member: id, name, role, whether alerts can reach them, and the members they manage."""
    with state().db.read() as session:
        rows = list_staff(session)
    if not rows:
        click.echo("no staff yet: flask --app wsgi staff add ID NAME [--role manager|service|admin] [--openid …]")
    for staff, managed in rows:
        reach = f"WeChat {mask_openid(staff.openid)}" if staff.openid else "no openid: alerts cannot reach them"
        click.echo(f"{staff.id:8} {staff.name:8} {staff.role:8} {managed:4} members  {reach}")


@group.command("invite")
@click.argument("staff_id")
def staff_invite(staff_id: str) -> None:
    """Print a one-time code (valid 24 h) the staff member sends as `员工绑定 <code>` from their own WeChat."""
    bot = state()
    with bot.db.write() as session:
        invite = create_invite(session, staff_id, bot.now())
    expires = invite.expires_at.astimezone(bot.rules.zone)
    click.echo(f"{invite.code}  (for {staff_id}; send 员工绑定 {invite.code} from their WeChat before "
               f"{expires:%Y-%m-%d %H:%M} {bot.rules.timezone}; it works once)")


@group.command("password")
@click.argument("staff_id")
def staff_password(staff_id: str) -> None:
    """Set the dashboard (/admin) password of a supervisor, admin or manager; stored only as a salted hash.

    On a terminal it is asked for, hidden, twice; otherwise it is the first line of standard input
    (`… | flask --app wsgi staff password S01`). There is no option for it: a password on the command
    line lands in the shell's history and in `ps`.
    """
    if sys.stdin.isatty():
        password = click.prompt("New dashboard password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            fail("no password on standard input: give it as the first line, or run the command on a terminal "
                 "to be asked for it")
    with state().db.write() as session:
        set_password(session, staff_id, password)
    click.echo(f"password of staff {staff_id} set: sign in at /admin")

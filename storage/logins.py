"""Staff sign-in to the dashboard: passwords (salted hashes), lockout after wrong passwords, sessions.

Passwords are hashed with werkzeug.security (scrypt, salted); the plain text is never stored or
logged. A session is a random token in the browser's cookie; the table keeps only its SHA-256, so a
copy of the database does not let anyone in, and logging out ends the session for every worker.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from rules import BotError
from rules.dashboard import DashboardRules
from storage.models import AdminSession, Staff

DASHBOARD_ROLES = ("supervisor", "admin", "manager")  # service staff have no dashboard
MIN_PASSWORD_LENGTH = 8
# Compared against when the staff id is unknown, so an unknown id takes as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-password")


class PasswordRefused(BotError):
    """The password or the staff member cannot be used for the dashboard."""


def set_password(session: Session, staff_id: str, password: str) -> Staff:
    """Store a salted hash of ``password`` for ``staff_id`` and lift any lockout; ends their open sessions."""
    staff = session.get(Staff, staff_id)
    if staff is None:
        raise PasswordRefused(f"no staff member {staff_id}: add them first with `staff add`")
    if staff.role not in DASHBOARD_ROLES:
        raise PasswordRefused(f"staff {staff_id} has role {staff.role}, which has no dashboard "
                              f"(roles: {', '.join(DASHBOARD_ROLES)})")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRefused(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    staff.password_hash = generate_password_hash(password)
    staff.failed_logins, staff.locked_until = 0, None
    session.execute(delete(AdminSession).where(AdminSession.staff_id == staff_id))
    return staff


@dataclass(frozen=True)
class LoginOutcome:
    staff: Staff | None  # set when the password was right
    locked_until: datetime | None = None  # set when the id is locked (now, or by this attempt)
    tries_left: int | None = None  # wrong password: tries before the lock


def check_login(session: Session, staff_id: str, password: str, now: datetime, rules: DashboardRules) -> LoginOutcome:
    """Check a password; count wrong ones in a row and lock the id for ``lockout_minutes`` at ``max_failures``.

    A locked id is refused without looking at the password. The staff row is locked for the check
    (PostgreSQL), so parallel guesses are all counted.
    """
    staff = session.scalar(select(Staff).where(Staff.id == staff_id).with_for_update())
    if staff is None or staff.password_hash is None or staff.role not in DASHBOARD_ROLES:
        check_password_hash(_DUMMY_HASH, password)
        return LoginOutcome(None)
    if staff.locked_until is not None and staff.locked_until > now:
        return LoginOutcome(None, locked_until=staff.locked_until)
    if check_password_hash(staff.password_hash, password):
        staff.failed_logins, staff.locked_until = 0, None
        return LoginOutcome(staff)
    staff.failed_logins = (staff.failed_logins or 0) + 1
    if staff.failed_logins >= rules.max_failures:
        staff.failed_logins, staff.locked_until = 0, now + timedelta(minutes=rules.lockout_minutes)
        return LoginOutcome(None, locked_until=staff.locked_until)
    return LoginOutcome(None, tries_left=rules.max_failures - staff.failed_logins)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, staff_id: str, now: datetime, rules: DashboardRules) -> str:
    """A new sign-in for ``staff_id``; returns the token for the cookie (expired sessions are dropped)."""
    session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(AdminSession(token_hash=_digest(token), staff_id=staff_id, created_at=now,
                             expires_at=now + timedelta(hours=rules.session_hours)))
    return token


def session_staff(session: Session, token: str, now: datetime) -> Staff | None:
    """The staff member signed in with ``token``, if the session is open and their role still has a dashboard."""
    staff = session.scalar(
        select(Staff).join(AdminSession, AdminSession.staff_id == Staff.id)
        .where(AdminSession.token_hash == _digest(token), AdminSession.expires_at > now)
    )
    return staff if staff is not None and staff.role in DASHBOARD_ROLES else None


def close_session(session: Session, token: str) -> None:
    session.execute(delete(AdminSession).where(AdminSession.token_hash == _digest(token)))

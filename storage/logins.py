"""Staff sign-in to the dashboard: passwords (salted hashes), throttling of wrong passwords, sessions.

Passwords are hashed with werkzeug.security (scrypt, salted); the plain text is never stored or
logged. A session is a random token in the browser's cookie; the table keeps only its SHA-256, so a
copy of the database does not let anyone in, and logging out ends the session for every worker.

Wrong passwords are counted per staff id as typed and client address (``login_failures``), never per
id alone: after ``free_failures`` of them that pair waits ``first_wait_seconds``, twice as long after
each further one, up to ``longest_wait_minutes``, and no password is looked at during the wait. An
attacker elsewhere therefore slows down only their own guesses and cannot keep the owner out. Every
id is counted alike — unknown ones, a member's card number, service staff, real ones — so the answers
do not tell them apart.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from rules import BotError
from rules.dashboard import DashboardRules
from storage.csvfile import bad_character
from storage.models import AdminSession, LoginFailure, Staff

DASHBOARD_ROLES = ("supervisor", "admin", "manager")  # service staff have no dashboard
MIN_PASSWORD_LENGTH = 8
# Compared against when the staff id is unknown, so an unknown id takes as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not-a-password")


class PasswordRefused(BotError):
    """The password or the staff member cannot be used for the dashboard."""


def set_password(session: Session, staff_id: str, password: str) -> Staff:
    """Store a salted hash of ``password`` for ``staff_id`` and lift every wait on it; ends their open sessions."""
    staff = session.get(Staff, staff_id)
    if staff is None:
        raise PasswordRefused(f"no staff member {staff_id}: add them first with `staff add`")
    if staff.role not in DASHBOARD_ROLES:
        raise PasswordRefused(f"staff {staff_id} has role {staff.role}, which has no dashboard "
                              f"(roles: {', '.join(DASHBOARD_ROLES)})")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRefused(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    staff.password_hash = generate_password_hash(password)
    session.execute(delete(LoginFailure).where(LoginFailure.staff_id == staff_id))
    session.execute(delete(AdminSession).where(AdminSession.staff_id == staff_id))
    return staff


@dataclass(frozen=True)
class LoginOutcome:
    staff: Staff | None  # set when the password was right
    wait_until: datetime | None = None  # this id from this address must wait until then (from now or before)
    waiting: bool = False  # the attempt came during the wait: the password was not looked at
    known: bool = False  # the id is a staff member with a dashboard (for the log only, never for the answer)


def typed_id(text: str) -> str:
    """A staff id as the sign-in form sent it: stripped, no control characters (PostgreSQL refuses NUL), 32 at most."""
    return "".join(ch for ch in text if bad_character(ch) is None).strip()[:32]


def check_login(session: Session, staff_id: str, password: str, address: str, now: datetime,
                rules: DashboardRules) -> LoginOutcome:
    """Check a password typed for ``staff_id`` from ``address``; a wrong one counts for that pair only.

    The pair's row is locked for the check (created first if need be), so parallel guesses from one
    address are all counted and none gets past a wait.
    """
    pair = _locked_pair(session, staff_id, address[:64], now, rules)
    staff = session.get(Staff, staff_id)
    known = staff is not None and staff.password_hash is not None and staff.role in DASHBOARD_ROLES
    if pair.wait_until is not None and pair.wait_until > now:
        return LoginOutcome(None, wait_until=pair.wait_until, waiting=True, known=known)
    if known and check_password_hash(staff.password_hash, password):
        session.delete(pair)
        return LoginOutcome(staff, known=True)
    if not known:
        check_password_hash(_DUMMY_HASH, password)  # as long as a wrong password for a real id
    pair.failures += 1
    pair.last_failed_at = now
    beyond = pair.failures - rules.free_failures
    if beyond >= 0:
        seconds = min(rules.first_wait_seconds * 2 ** min(beyond, 32), rules.longest_wait_minutes * 60)
        pair.wait_until = now + timedelta(seconds=seconds)
    return LoginOutcome(None, wait_until=pair.wait_until, known=known)


def _locked_pair(session: Session, staff_id: str, address: str, now: datetime, rules: DashboardRules) -> LoginFailure:
    """The (id, address) row, created with no failures if missing, locked; a count older than the forget window restarts."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(LoginFailure).values(staff_id=staff_id, address=address, failures=0)
                    .on_conflict_do_nothing(index_elements=["staff_id", "address"]))
    pair = session.scalar(select(LoginFailure).where(LoginFailure.staff_id == staff_id,
                                                     LoginFailure.address == address).with_for_update())
    if pair.last_failed_at is not None and pair.last_failed_at < _forget_before(now, rules):
        pair.failures, pair.wait_until = 0, None
    return pair


def _forget_before(now: datetime, rules: DashboardRules) -> datetime:
    return now - timedelta(hours=rules.forget_failures_hours)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(session: Session, staff_id: str, now: datetime, rules: DashboardRules) -> str:
    """A new sign-in for ``staff_id``; returns the token for the cookie (expired sessions and forgotten failures are dropped)."""
    session.execute(delete(AdminSession).where(AdminSession.expires_at <= now))
    session.execute(delete(LoginFailure).where(LoginFailure.last_failed_at < _forget_before(now, rules)))
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

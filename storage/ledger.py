"""The points ledger: every change is one entry; a balance is the sum of the ledger.

``members.points_balance`` caches that sum. It is changed only here, in the same
transaction as the entry, by a conditional UPDATE that the database refuses to take
below zero (and a CHECK constraint behind it), so concurrent spends cannot overdraw.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.models import LedgerEntry, Member, utcnow


class InsufficientPoints(Exception):
    """The member has fewer points than the operation needs."""

    def __init__(self, balance: int, needed: int):
        super().__init__(f"balance {balance} is below {needed}")
        self.balance, self.needed = balance, needed


def find_entry(session: Session, idempotency_key: str) -> LedgerEntry | None:
    return session.scalar(select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key))


def award_points(
    session: Session,
    member_id: int,
    points: int,
    *,
    expires_on: date,
    reference: str | None = None,
    note: str | None = None,
    idempotency_key: str | None = None,
    occurred_at: datetime | None = None,
) -> LedgerEntry | None:
    """Add an earn lot of ``points`` expiring on ``expires_on``; None if the key was used before."""
    if points <= 0:
        raise ValueError(f"points to award must be positive, got {points}")
    if idempotency_key and find_entry(session, idempotency_key):
        return None
    entry = LedgerEntry(
        member_id=member_id,
        kind="earn",
        amount=points,
        remaining=points,
        expires_on=expires_on,
        reference=reference,
        note=note,
        idempotency_key=idempotency_key,
        occurred_at=occurred_at or utcnow(),
    )
    session.add(entry)
    session.execute(
        update(Member).where(Member.id == member_id).values(points_balance=Member.points_balance + points)
    )
    session.flush()
    return entry


def deduct_points(
    session: Session,
    member_id: int,
    points: int,
    *,
    kind: str = "redeem",
    reference: str | None = None,
    note: str | None = None,
    idempotency_key: str | None = None,
    occurred_at: datetime | None = None,
) -> LedgerEntry | None:
    """Take ``points`` away, oldest lots first; raise InsufficientPoints rather than go below zero."""
    if points <= 0:
        raise ValueError(f"points to deduct must be positive, got {points}")
    if kind not in ("redeem", "expire", "adjust", "reverse"):
        raise ValueError(f"unknown deduction kind {kind!r}")
    if idempotency_key and find_entry(session, idempotency_key):
        return None
    # The conditional UPDATE is the guard: under concurrency the second spender's UPDATE
    # waits for the first (row lock on PostgreSQL, write lock on SQLite) and then matches nothing.
    result = session.execute(
        update(Member)
        .where(Member.id == member_id, Member.points_balance >= points)
        .values(points_balance=Member.points_balance - points)
    )
    if result.rowcount != 1:
        balance = session.scalar(select(Member.points_balance).where(Member.id == member_id)) or 0
        raise InsufficientPoints(balance, points)
    _consume_oldest_lots(session, member_id, points)
    entry = LedgerEntry(
        member_id=member_id,
        kind=kind,
        amount=-points,
        reference=reference,
        note=note,
        idempotency_key=idempotency_key,
        occurred_at=occurred_at or utcnow(),
    )
    session.add(entry)
    session.flush()
    return entry


def _consume_oldest_lots(session: Session, member_id: int, points: int) -> None:
    """Mark ``points`` of the member's open earn lots as used, the soonest to expire first."""
    lots = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.member_id == member_id, LedgerEntry.kind == "earn", LedgerEntry.remaining > 0)
        .order_by(LedgerEntry.expires_on, LedgerEntry.id)
    )
    for lot in lots:
        if points <= 0:
            break
        used = min(lot.remaining, points)
        lot.remaining -= used
        points -= used


def ledger_sum(session: Session, member_id: int) -> int:
    """The balance computed from the ledger itself (the cache must equal it)."""
    return int(session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.member_id == member_id)))

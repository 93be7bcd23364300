"""What a member sees about their points: the next points to expire and the spend toward the next tier.

One prebuilt statement answers both, because `积分` is the most frequent question members ask;
``member_with_points`` also loads the member in the same statement, for the chat answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Date, bindparam, func, select
from sqlalchemy.orm import Session

from rules import Rules
from storage.ledger import open_lots
from storage.models import LedgerEntry, Member, Purchase, UTCDateTime
from storage.reads import PreparedRead, Reads


def _overview_columns(member_id: Any) -> list:
    """Next expiry day, the points expiring then, and the window's spend of the member ``member_id``."""
    lots = open_lots(LedgerEntry.member_id == member_id, LedgerEntry.expires_on >= bindparam("today", type_=Date))
    # Each subquery reads its own table (never correlated to an enclosing one); only members is shared.
    next_day = select(func.min(LedgerEntry.expires_on)).where(lots).correlate_except(LedgerEntry).scalar_subquery()
    return [
        next_day.label("next_day"),
        select(func.sum(LedgerEntry.remaining)).where(lots, LedgerEntry.expires_on == next_day)
        .correlate_except(LedgerEntry).scalar_subquery().label("next_points"),
        select(func.sum(Purchase.amount - Purchase.refunded_amount)).where(
            Purchase.member_id == member_id,
            Purchase.refunded_at.is_(None),
            Purchase.purchased_at >= bindparam("since", type_=UTCDateTime),
        ).correlate_except(Purchase).scalar_subquery().label("spend"),
    ]


_OVERVIEW = select(*_overview_columns(bindparam("member_id")))
_members = Member.__table__
# The member's card (what the points and tier answers show), not every column: the `积分` answer is
# asked more than anything else, and each date column costs a conversion on SQLite. `unreachable` is
# what the dispatcher checks after every message (a member who writes is reachable again).
_CARD = [_members.c.id, _members.c.card_no, _members.c.name, _members.c.tier, _members.c.points_balance,
         _members.c.unreachable]
_MEMBER_WITH_POINTS = PreparedRead(select(*_CARD, *_overview_columns(_members.c.id)).where(
    _members.c.openid == bindparam("openid")))


@dataclass(frozen=True)
class PointsOverview:
    next_expiry: tuple[int, date] | None  # the points that expire next, and the day
    window_spend: Decimal  # spend over the evaluation window, refunds excluded

    @classmethod
    def of(cls, row: Any) -> "PointsOverview":
        """From a row carrying the overview columns."""
        next_day = date.fromisoformat(row.next_day) if isinstance(row.next_day, str) else row.next_day
        expiry = (int(row.next_points), next_day) if next_day is not None else None
        return cls(expiry, Decimal(row.spend or 0).quantize(Decimal("0.01")))


def _values(rules: Rules, today: date) -> dict[str, Any]:
    return {"today": today, "since": rules.last_days_start(today, rules.segments.window_days)}


def points_overview(session: Session | Connection, member_id: int, rules: Rules, today: date) -> PointsOverview:
    """Next expiry and window spend of one member, in one query."""
    return PointsOverview.of(session.execute(_OVERVIEW, {"member_id": member_id, **_values(rules, today)}).one())


def member_with_points(reads: Reads, openid: str, rules: Rules, today: date) -> tuple | None:
    """The member bound to ``openid`` (id, card_no, name, tier, points_balance, unreachable) with their
    points overview, in one statement.

    A prepared read, not an ORM session: the `积分` answer is asked more than anything else.
    Read the overview with ``PointsOverview.of(row)``.
    """
    return reads.first(_MEMBER_WITH_POINTS, openid=openid, **_values(rules, today))

"""What a member sees about their points: the next points to expire and the spend toward the next tier.

One prebuilt statement answers both, because `积分` is the most frequent question members ask.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Date, bindparam, func, select
from sqlalchemy.orm import Session

from rules import Rules
from storage.ledger import open_lots
from storage.models import LedgerEntry, Purchase, UTCDateTime

_open_lots = open_lots(
    LedgerEntry.member_id == bindparam("member_id"),
    LedgerEntry.expires_on >= bindparam("today", type_=Date),
)
_next_day = select(func.min(LedgerEntry.expires_on)).where(_open_lots).scalar_subquery()
_OVERVIEW = select(
    _next_day.label("next_day"),
    select(func.sum(LedgerEntry.remaining)).where(_open_lots, LedgerEntry.expires_on == _next_day)
    .scalar_subquery().label("next_points"),
    select(func.sum(Purchase.amount)).where(
        Purchase.member_id == bindparam("member_id"),
        Purchase.refunded_at.is_(None),
        Purchase.purchased_at >= bindparam("since", type_=UTCDateTime),
    ).scalar_subquery().label("spend"),
)


@dataclass(frozen=True)
class PointsOverview:
    next_expiry: tuple[int, date] | None  # the points that expire next, and the day
    window_spend: Decimal  # spend over the evaluation window, refunds excluded


def points_overview(session: Session | Connection, member_id: int, rules: Rules, today: date) -> PointsOverview:
    """Next expiry and window spend of one member, in one query.

    Takes a plain Connection too: the `积分` answer skips the ORM session, about half its cost.
    """
    since = rules.last_days_start(today, rules.segments.window_days)
    row = session.execute(_OVERVIEW, {"member_id": member_id, "today": today, "since": since}).one()
    next_day = date.fromisoformat(row.next_day) if isinstance(row.next_day, str) else row.next_day
    expiry = (int(row.next_points), next_day) if next_day is not None else None
    return PointsOverview(expiry, Decimal(row.spend or 0).quantize(Decimal("0.01")))

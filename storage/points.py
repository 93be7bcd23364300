"""What a member sees about their points: the next points to expire and the spend toward the next tier.

One prebuilt statement answers both, because `积分` is the most frequent question members ask;
``member_with_points`` also loads the member in the same statement, for the chat answer. The spend
is the tiers' own (``storage.spend``): purchases in the window less refunds, plus carried spend.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Date, bindparam, func, select
from sqlalchemy.orm import Session

from rules import Rules
from storage import spend
from storage.ledger import open_lots
from storage.models import LedgerEntry, Member
from storage.reads import PreparedRead, Reads

_members = Member.__table__


def _overview_columns() -> list:
    """Next expiry day, the points expiring then, and the window's spend of the member in ``members``."""
    member_id = _members.c.id
    lots = open_lots(LedgerEntry.member_id == member_id, LedgerEntry.expires_on >= bindparam("today", type_=Date))
    # Each subquery reads its own table (never correlated to an enclosing one); only members is shared.
    next_day = select(func.min(LedgerEntry.expires_on)).where(lots).correlate_except(LedgerEntry).scalar_subquery()
    return [
        next_day.label("next_day"),
        select(func.sum(LedgerEntry.remaining)).where(lots, LedgerEntry.expires_on == next_day)
        .correlate_except(LedgerEntry).scalar_subquery().label("next_points"),
        spend.purchase_spend(member_id).label("spend"),
        _members.c.carried_spend,
        _members.c.carried_spend_since,
    ]


_OVERVIEW = select(*_overview_columns()).where(_members.c.id == bindparam("member_id"))
# The member's card (what the points and tier answers show), not every column: the `积分` answer is
# asked more than anything else, and each date column costs a conversion on SQLite (the overview's one,
# carried_spend_since, is what the spend needs). `unreachable` is what the dispatcher checks after every
# message (a member who writes is reachable again).
_CARD = [_members.c.id, _members.c.card_no, _members.c.name, _members.c.tier, _members.c.points_balance,
         _members.c.unreachable]
_MEMBER_WITH_POINTS = PreparedRead(select(*_CARD, *_overview_columns()).where(
    _members.c.openid == bindparam("openid")))


@dataclass(frozen=True)
class PointsOverview:
    next_expiry: tuple[int, date] | None  # the points that expire next, and the day
    window_spend: Decimal  # spend over the evaluation window (storage.spend.window_spend)

    @classmethod
    def of(cls, row: Any, rules: Rules, today: date) -> "PointsOverview":
        """From a row carrying the overview columns, read for ``today``."""
        next_day = date.fromisoformat(row.next_day) if isinstance(row.next_day, str) else row.next_day
        expiry = (int(row.next_points), next_day) if next_day is not None else None
        return cls(expiry, spend.window_spend(row.spend, row, rules, today))


def _values(rules: Rules, today: date) -> dict[str, Any]:
    return {"today": today, "since": rules.last_days_start(today, rules.segments.window_days)}


def points_overview(session: Session | Connection, member_id: int, rules: Rules, today: date) -> PointsOverview:
    """Next expiry and window spend of one member, in one query."""
    row = session.execute(_OVERVIEW, {"member_id": member_id, **_values(rules, today)}).one()
    return PointsOverview.of(row, rules, today)


def member_with_points(reads: Reads, openid: str, rules: Rules, today: date) -> tuple | None:
    """The member bound to ``openid`` (id, card_no, name, tier, points_balance, unreachable) with their
    points overview, in one statement.

    A prepared read, not an ORM session: the `积分` answer is asked more than anything else.
    Read the overview with ``PointsOverview.of(row, rules, today)``.
    """
    return reads.first(_MEMBER_WITH_POINTS, openid=openid, **_values(rules, today))

"""A member's spend over the evaluation window (``segments.window_days``), on which tiers rest (DOMAIN.md: Tiers).

It is what the member's purchases in the window came to, refunds taken off, plus the spend an import
carried in (``members.carried_spend``) while the day that spend started (``carried_spend_since``) is
inside the window. `积分`, `会员权益` and `members show` all take it from here.
"""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ScalarSelect, bindparam, case, func, select

from rules import Rules
from storage.models import Member, Purchase, UTCDateTime

CENT = Decimal("0.01")


def purchase_spend(member_id: Any) -> ScalarSelect:
    """SQL: what the purchases of ``member_id`` in the window came to, refunds taken off (NULL: none).

    The window starts at the bound value ``since`` (``rules.last_days_start(today, window_days)``).
    A purchase refunded in full counts nothing, one refunded in part what is left of it.
    """
    return select(func.sum(Purchase.amount - Purchase.refunded_amount)).where(
        Purchase.member_id == member_id,
        Purchase.refunded_at.is_(None),
        Purchase.purchased_at >= bindparam("since", type_=UTCDateTime),
    ).correlate_except(Purchase).scalar_subquery()


def carried_spend(member: Any, rules: Rules, today: date) -> Decimal:
    """The spend an import carried in for ``member`` while it started inside the window ending ``today``; else 0.

    ``member``: anything with ``carried_spend`` and ``carried_spend_since`` (a Member, a prepared read's row).
    """
    since = member.carried_spend_since
    if since is None or since < today - timedelta(days=rules.segments.window_days - 1):
        return Decimal(0).quantize(CENT)
    return Decimal(member.carried_spend or 0).quantize(CENT)


def carried_spend_sql(rules: Rules, day: date):
    """SQL: ``carried_spend`` of every member, for the window ending ``day`` (the set-based tier pass)."""
    window_first_day = day - timedelta(days=rules.segments.window_days - 1)
    return case((Member.carried_spend_since >= window_first_day, Member.carried_spend), else_=0)


def window_spend(purchases: Decimal | None, member: Any, rules: Rules, today: date) -> Decimal:
    """The member's spend over the window ending ``today``: ``purchases`` (as ``purchase_spend`` gives it)
    plus the spend carried in by import (``carried_spend``)."""
    return Decimal(purchases or 0).quantize(CENT) + carried_spend(member, rules, today)

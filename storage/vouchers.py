"""Vouchers: a gift to collect in store, with a code the member shows (B-class birthdays)."""
from __future__ import annotations

import secrets
from datetime import date, datetime

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from storage.models import Member, Voucher


def issue_vouchers(session: Session, member_ids: Select, occasion: str, valid_until: date, prefix: str, *,
                   now: datetime) -> int:
    """A voucher for each member in ``member_ids`` (a SELECT of ids) who has none for ``occasion``; returns how many.

    Codes are ``prefix`` + 6 random hex digits; (member, occasion) is unique, so a rerun issues none twice.
    """
    eligible = session.scalars(select(Member.id).where(
        Member.id.in_(member_ids),
        ~exists().where(Voucher.member_id == Member.id, Voucher.occasion == occasion),
    )).all()
    for member_id in eligible:
        session.add(Voucher(code=f"{prefix}{secrets.token_hex(3).upper()}", member_id=member_id,
                            occasion=occasion, valid_until=valid_until, created_at=now))
    session.flush()
    return len(eligible)

"""Test factories: real rows (each call a new, unique member) and WeChat's signed XML.

The XML builders are the console's own wire format (``bot.dev.wire``), so tests speak to the
webhook exactly as the console and WeChat do.
"""
from __future__ import annotations

import itertools
from datetime import date

from sqlalchemy.orm import Session

from bot.dev.wire import WeChatServer, event_xml, signature, text_xml

from storage.members import birthday_key
from storage.models import Member

_numbers = itertools.count(1)


def make_member(session: Session, **fields) -> Member:
    """A member of tier D unless told otherwise; card_no and phone are unique per call."""
    n = next(_numbers)
    birthday = fields.pop("birthday", date(1990, 1, 1))
    values = {
        "card_no": f"T{n:07d}",
        "name": f"会员{n}",
        "phone": f"139{n:08d}",
        "tier": "D",
        "birthday": birthday,
        "birthday_md": birthday_key(birthday),
        "points_balance": 0,
    }
    values.update(fields)
    member = Member(**values)
    session.add(member)
    session.flush()
    return member


__all__ = ["WeChatServer", "event_xml", "make_member", "signature", "text_xml"]

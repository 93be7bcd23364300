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


__all__ = ["WeChatServer", "event_config", "event_rules", "event_xml", "make_member", "signature", "text_xml"]


def event_rules(base_rules, *events: dict, **settings) -> dict:
    """The ``events:`` section of config.yaml with ``events`` as its catalogue (see ``event_config``)."""
    section = base_rules.events.model_dump(mode="json")
    section.update(settings)
    section["catalogue"] = list(events)
    return section


def event_config(event_id: str = "salon", *, sessions: int = 1, capacity: int = 30, **fields) -> dict:
    """One event as config.yaml writes it: open from 2027-01-01 to 2027-03-18, sessions on 20, 21 … March 2027."""
    values = {
        "id": event_id, "title": f"活动{event_id}", "form": "沙龙", "region": "上海", "store": "旗舰店",
        "tiers": ["D", "C", "B", "A"], "signup_opens": "2027-01-01T10:00:00", "signup_closes": "2027-03-18T18:00:00",
        "cancel_until": "2027-03-17T18:00:00", "guests_allowed": 0, "budget_per_head": "100",
        "sessions": [{"id": str(n + 1), "starts": f"2027-03-{20 + n}T14:00:00", "ends": f"2027-03-{20 + n}T16:00:00",
                      "place": "三楼", "capacity": capacity} for n in range(sessions)],
    }
    values.update(fields)
    return values

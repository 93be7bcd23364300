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


__all__ = ["WeChatServer", "event_xml", "make_member", "make_staff", "signature", "text_xml"]


def make_staff(session: Session, staff_id: str, role: str = "service", openid: str | None = None, name: str | None = None):
    """A staff member (bound to ``openid`` when given)."""
    from storage.models import Staff

    staff = Staff(id=staff_id, name=name or f"员工{staff_id}", role=role, openid=openid)
    session.add(staff)
    session.flush()
    return staff


def image_xml(openid: str, media_id: str, pic_url: str, msg_id: int, create_time: int) -> str:
    """An image message as WeChat posts it."""
    return (f"<xml><ToUserName><![CDATA[gh_demo_account]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
            f"<PicUrl><![CDATA[{pic_url}]]></PicUrl><MediaId><![CDATA[{media_id}]]></MediaId><MsgId>{msg_id}</MsgId></xml>")

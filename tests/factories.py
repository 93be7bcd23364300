"""Test factories: real rows (each call a new, unique member) and WeChat's signed XML.

The XML builders are the console's own wire format (``bot.dev.wire``), so tests speak to the
webhook exactly as the console and WeChat do.
"""
from __future__ import annotations

import itertools
from datetime import date, datetime, timezone

from sqlalchemy.orm import Session

from bot.dev.wire import WeChatServer, event_xml, signature, text_xml

from storage.members import birthday_key
from storage.models import Member

_numbers = itertools.count(1)


def utc_now() -> datetime:
    """Rows a factory makes are dated now (the tests' clock starts at the system's, shifted or not)."""
    return datetime.now(timezone.utc)


def make_member(session: Session, **fields) -> Member:
    """A member of tier D unless told otherwise; card_no and phone are unique per call."""
    n = next(_numbers)
    birthday = fields.pop("birthday", date(1990, 1, 1))
    now = utc_now()
    values = {
        "created_at": now,
        "updated_at": now,
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

    staff = Staff(id=staff_id, name=name or f"员工{staff_id}", role=role, openid=openid, created_at=utc_now())
    session.add(staff)
    session.flush()
    return staff


def words(message: dict) -> str:
    """What the recipient reads of a message the WeChat stand-in recorded: a customer-service text, or a
    template's keyword values, one a line (WeChat's 2023 template rules: no first or remark line)."""
    if "text" in message:
        return message["text"]["content"]
    return "\n".join(field["value"] for field in message["data"].values())


def image_xml(openid: str, media_id: str, pic_url: str, msg_id: int, create_time: int) -> str:
    """An image message as WeChat posts it."""
    return (f"<xml><ToUserName><![CDATA[gh_demo_account]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
            f"<PicUrl><![CDATA[{pic_url}]]></PicUrl><MediaId><![CDATA[{media_id}]]></MediaId><MsgId>{msg_id}</MsgId></xml>")
# A small catalogue for gift tests (config.yaml's demo catalogue changes with the months).
GIFT_RULES = {
    "page_size": 3, "code_valid_days": 30, "vip_gift_tiers": ["B", "A"], "vip_gift_min_purchase": 5000,
    "annual_gift_tiers": ["A"], "service_desk": "S1", "mail_alert_message": "gift_mail_alert",
    "entitlement_message": "gift_entitlement", "entitlement_alert_message": "gift_entitlement_alert",
    "catalogue": [
        {"id": "box", "name": "首饰收纳盒", "description": "丝绒首饰盒", "kind": "points", "points": 3000,
         "tiers": ["D", "C", "B", "A"], "limit_per_month": 1},
        {"id": "care", "name": "清洗保养券", "kind": "points", "points": 800, "tiers": ["D", "C", "B", "A"],
         "valid_days": 10},
        {"id": "perfume", "name": "香水礼盒", "kind": "points", "points": 8000, "tiers": ["C", "B", "A"],
         "limit_total": 2},
        {"id": "later", "name": "新年福袋", "kind": "points", "points": 100, "tiers": ["D", "C", "B", "A"],
         "available_from": "2026-12-01"},
        {"id": "old", "name": "中秋月饼", "kind": "points", "points": 100, "tiers": ["D", "C", "B", "A"],
         "available_until": "2026-10-31"},
        {"id": "vipa", "name": "钻石吊坠（11 月 VIP 专享）", "kind": "vip_item", "member_price": 2999,
         "tiers": ["C", "B", "A"], "available_from": "2026-11-01", "available_until": "2026-11-30",
         "limit_per_month": 1},
        {"id": "bracelet", "name": "纯银手链", "kind": "vip_gift", "tiers": ["B", "A"], "fulfilment": "mail"},
        {"id": "brooch", "name": "香槟金胸针", "kind": "vip_gift", "tiers": ["B", "A"]},
    ],
}


def make_points(session: Session, member: Member, points: int, expires_on: date = date(2028, 1, 1)) -> None:
    """Give ``member`` an earn lot of ``points`` (through the ledger, so `points check` holds)."""
    from storage import ledger

    ledger.award_points(session, member.id, points, expires_on=expires_on, occurred_at=utc_now())


def make_stock(session: Session, gift_id: str, stock: int) -> None:
    from storage import gifts

    gifts.adjust_stock(session, gift_id, stock, actor="test", now=utc_now())


def make_entitlement(session: Session, member: Member, source: str = "purchase:TEST") -> None:
    from storage.models import GiftEntitlement

    session.add(GiftEntitlement(member_id=member.id, source=source, reason="purchase", created_at=utc_now()))
    session.flush()


__all__ = ["GIFT_RULES", "WeChatServer", "event_xml", "make_entitlement", "make_member", "make_points", "make_stock",
           "signature", "text_xml"]
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

"""Demo data for the embedded default: staff, members of every tier, purchases that put them there,
and stock for the gift catalogue."""
from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from bot.services import BotState
from rules import ROOT
from storage.csvfile import open_csv
from storage.gifts import adjust_stock
from storage.members import add_staff, import_members
from storage.models import GiftStock, Member
from storage.purchases import PurchaseIn, record_purchase

log = logging.getLogger(__name__)

DEMO_MEMBERS = ROOT / "demo" / "members.csv"
# Demo staff have openids, so that their alerts (e.g. a key account's birthday) show in the API stand-in.
DEMO_STAFF = (("M001", "王经理", "manager", "demo-staff-M001"), ("M002", "李经理", "manager", "demo-staff-M002"),
              ("S001", "客服小周", "service", "demo-staff-S001"))
# (card, days ago, amount CNY): purchases that put each demo member in their tier.
DEMO_PURCHASES = (
    ("D0000001", 200, "1280.00"), ("D0000001", 35, "699.00"),
    ("C0000001", 300, "4200.00"), ("C0000001", 60, "2600.00"),
    ("B0000001", 500, "12000.00"), ("B0000001", 90, "13500.00"),
    ("A0000001", 600, "28000.00"), ("A0000001", 250, "16800.00"), ("A0000001", 20, "9900.00"),
    ("A0000002", 400, "52000.00"), ("A0000002", 12, "31000.00"),
)
DEMO_STOCK = 20  # of each gift in the catalogue, so that 礼品 and 兑换 work from the first start


def seed_demo_stock(bot: BotState) -> list[str]:
    """Stock for every catalogue gift that has no stock row yet (a fresh start, or a gift added to
    config.yaml since): a gift whose stock an operator set, even to 0, is left alone. Returns the ids."""
    wanted = [gift.id for gift in bot.rules.gifts.catalogue]
    with bot.db.write() as session:
        known = set(session.scalars(select(GiftStock.gift_id).where(GiftStock.gift_id.in_(wanted))))
        stocked = [gift_id for gift_id in wanted if gift_id not in known]
        for gift_id in stocked:
            adjust_stock(session, gift_id, DEMO_STOCK, actor="demo", now=bot.now())
    if stocked:
        log.info("demo stock: %d of each of %s", DEMO_STOCK, ", ".join(stocked))
    return stocked


def seed_demo_data(bot: BotState) -> None:
    """Load demo staff, members and purchases once, so the demo can bind cards of every tier; and
    stock for the catalogue's gifts that have none (``seed_demo_stock``)."""
    seed_demo_stock(bot)
    with bot.db.read() as session:
        if session.scalar(select(Member.id).limit(1)) is not None:
            return
    now = bot.now()
    with bot.db.write() as session:
        for staff_id, name, role, openid in DEMO_STAFF:
            add_staff(session, staff_id, name, openid=openid, role=role, now=bot.now())
    with open_csv(DEMO_MEMBERS) as lines, bot.db.write() as session:
        report = import_members(session, lines, bot.rules, bot.now(), actor="demo")
    for line, reason in report.errors:
        log.error("%s, line %s: %s", DEMO_MEMBERS, line, reason)
    with bot.db.write() as session:
        for n, (card_no, days_ago, amount) in enumerate(DEMO_PURCHASES, start=1):
            purchase = PurchaseIn(f"DEMO-{n:04d}", card_no, Decimal(amount), now - timedelta(days=days_ago), "演示门店")
            record_purchase(session, purchase, bot.rules, actor="demo", now=now)
    log.info("demo members loaded from %s: %s", DEMO_MEMBERS, report.summary())

"""Seeded data for the dashboard tests, and each panel's table worked out in plain Python from the rows.

The expected tables are computed member by member from what the database holds (read back through
the ORM), independently of storage/reports.py's SQL, so the two can be compared figure by figure.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from rules import Rules
from storage.logins import set_password
from storage.members import add_staff
from storage.models import (
    EventSessionRow, EventSignup, GiftRedemption, GiftStock, LedgerEntry, Member, MemberChange, OutboxMessage,
    Purchase, Ticket,
)
from tests.factories import make_member, utc_now

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=ZONE).astimezone(timezone.utc)  # the clock of every dashboard test
TODAY = date(2026, 11, 23)
FIRST = date(2025, 12, 1)  # the default range: the last 12 months
PASSWORD = "correct horse"
SEGMENTS = ["upgrade", "stable", "retention", "lapsed", None]
ACTIVITIES = ["active", "swinging", "trending", "churned", None]


PAST_EVENTS = [  # held before the tests' today, so their no-shows and costs are final
    {"id": "summer-dinner", "title": "夏日答谢晚宴", "form": "聚餐", "region": "上海", "tiers": ["B", "A"],
     "signup_opens": "2026-06-01T10:00:00", "signup_closes": "2026-07-03T18:00:00", "cancel_until": "2026-07-03T18:00:00",
     "guests_allowed": 1, "budget_per_head": "500",
     "sessions": [{"id": "1", "starts": "2026-07-05T18:00:00", "ends": "2026-07-05T21:00:00", "place": "外滩",
                   "capacity": 12}]},
    {"id": "autumn-salon", "title": "秋季鉴赏沙龙", "form": "沙龙", "store": "南京西路旗舰店", "tiers": ["D", "C", "B", "A"],
     "signup_opens": "2026-08-01T10:00:00", "signup_closes": "2026-09-10T18:00:00", "cancel_until": "2026-09-10T18:00:00",
     "guests_allowed": 1, "budget_per_head": "200",
     "sessions": [{"id": "1", "starts": "2026-09-12T14:00:00", "ends": "2026-09-12T16:00:00", "place": "三楼", "capacity": 10},
                  {"id": "2", "starts": "2026-09-13T14:00:00", "ends": "2026-09-13T16:00:00", "place": "三楼", "capacity": 10}]},
    {"id": "old-talk", "title": "往年讲座", "form": "讲座", "store": "淮海中路店", "tiers": ["D", "C", "B", "A"],
     "signup_opens": "2025-05-01T10:00:00", "signup_closes": "2025-06-01T18:00:00", "cancel_until": "2025-06-01T18:00:00",
     "budget_per_head": "50",
     "sessions": [{"id": "1", "starts": "2025-06-03T14:00:00", "ends": "2025-06-03T16:00:00", "place": "二楼", "capacity": 8}]},
]


def with_past_events(rules: Rules) -> Rules:
    """config.yaml's rules with three past events (one before the default range) ahead of its own."""
    data = rules.model_dump(mode="json")
    data["events"]["catalogue"] = PAST_EVENTS + data["events"]["catalogue"]
    return Rules.model_validate(data)


def local(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), ZONE).astimezone(timezone.utc)


def seed(session: Session, rules: Rules, members: int = 60) -> None:
    """Staff with passwords (S1 supervisor, A1 admin, M1 and M2 managers, V1 service) and random programme data."""
    for staff_id, name, role in [("S1", "周主管", "supervisor"), ("A1", "管理员", "admin"),
                                 ("M1", "王经理", "manager"), ("M2", "李经理", "manager"), ("V1", "客服", "service")]:
        add_staff(session, staff_id, name, role=role, now=utc_now())
    session.flush()
    for staff_id in ("S1", "A1", "M1", "M2"):
        set_password(session, staff_id, PASSWORD)
    rng = random.Random(14)
    tiers = [t.id for t in rules.tiers]
    receipt = 0
    for n in range(members):
        tier = rng.choice(tiers)
        member = make_member(
            session, tier=tier, segment=rng.choice(SEGMENTS), activity=rng.choice(ACTIVITIES),
            manager_id="M1" if n % 5 == 0 else "M2" if n % 5 == 1 else None,
            created_at=local(date(2024, 6, 1) + timedelta(days=rng.randrange(900)), rng.choice([0, 7, 9, 23])),
        )
        for _ in range(rng.randrange(5)):
            receipt += 1
            amount = Decimal(rng.randrange(100, 30000))
            refunded = rng.random() < 0.1
            partial = Decimal(rng.randrange(0, 50)) if not refunded else amount
            session.add(Purchase(receipt_no=f"R{receipt}", member_id=member.id, amount=amount,
                                 purchased_at=local(date(2024, 10, 1) + timedelta(days=rng.randrange(785)),
                                                    rng.choice([0, 10, 23])),
                                 store="S01", refunded_amount=partial, created_at=NOW,
                                 refunded_at=NOW if refunded else None))
        balance = 0
        for entry_no in range(rng.randrange(6)):
            kind = rng.choice(["earn", "earn", "redeem", "expire", "reverse", "adjust", "gift_return"])
            when = local(date(2025, 9, 1) + timedelta(days=rng.randrange(450)), rng.choice([0, 12, 23]))
            if kind == "earn":
                amount = rng.randrange(10, 3000)
                remaining = rng.choice([0, amount, amount // 2])
                session.add(LedgerEntry(member_id=member.id, kind="earn", amount=amount, remaining=remaining,
                                        expires_on=TODAY + timedelta(days=rng.randrange(-10, 200)), occurred_at=when))
            elif kind == "gift_return":  # a cancelled or expired redemption's points, given back
                amount = rng.randrange(1, 500)
                session.add(LedgerEntry(member_id=member.id, kind="reverse", amount=amount, remaining=0, occurred_at=when,
                                        idempotency_key=f"gift-back:G{member.id}-{entry_no}"))
            else:
                amount = rng.randrange(-500, -1) if kind != "adjust" else rng.randrange(-300, 300)
                session.add(LedgerEntry(member_id=member.id, kind=kind, amount=amount, remaining=0, occurred_at=when))
            balance += amount
        member.points_balance = max(balance, 0)
        if rng.random() < 0.3:
            others = [t for t in tiers if t != tier]
            old = rng.choice(others)
            session.add(MemberChange(member_id=member.id, action="tier", actor="job:tier_recalc",
                                     detail=f"{old} → {tier}" + (" (spend)" if rng.random() < 0.5 else ""),
                                     at=local(date(2025, 6, 1) + timedelta(days=rng.randrange(540)))))
        for job in ("birthday", "monthly_bulletin"):
            if rng.random() < 0.7:
                status = rng.choice(["delivered", "sent", "failed", "unreachable", "unknown", "skipped", "pending"])
                created = local(date(2025, 10, 1) + timedelta(days=rng.randrange(420)), rng.choice([1, 23]))
                session.add(OutboxMessage(
                    job=job, occasion=f"{created:%Y-%m-%d}", recipient=f"member:{member.id}", member_id=member.id,
                    message="birthday_greeting", status=status, created_at=created,
                    reason={"failed": rng.choice(["errcode 45009", "failed:user block"]),
                            "skipped": rng.choice(["opted out", "lapsed"])}.get(status),
                    sent_at=created if status in ("delivered", "sent", "failed") else None))
        _seed_gifts(session, rules, rng, member)
        _seed_tickets(session, rules, rng, member)
    _seed_stock(session, rules, rng)
    _seed_events(session, rules, rng)
    session.flush()


GIFT_STATUSES = ["collected", "collected", "mailed", "open", "open", "cancelled", "expired"]
WITHDRAWN = ("oldpen", "旧款钢笔")  # a gift taken out of the catalogue: its codes and stock row remain


def _seed_gifts(session: Session, rules: Rules, rng: random.Random, member: Member) -> None:
    """Redemptions of catalogue gifts (and the withdrawn one) in every status, issued over 14 months."""
    catalogue = [(g.id, g.name, g.kind, g.fulfilment, g.points or 0) for g in rules.gifts.catalogue[:6]]
    for _ in range(rng.randrange(4)):
        gift_id, name, kind, fulfilment, points = rng.choice(
            catalogue + [(*WITHDRAWN, "points", "pickup", 500), ("gift-tray", "皮质首饰托盘", "vip_gift", "mail", 0)])
        issued = local(date(2025, 10, 1) + timedelta(days=rng.randrange(420)), rng.choice([0, 11, 23]))
        status = rng.choice(GIFT_STATUSES)
        if fulfilment == "mail" and status == "collected":
            status = "mailed"
        session.add(GiftRedemption(
            code=f"C{rng.randrange(10 ** 9):09d}", member_id=member.id, gift_id=gift_id, gift_name=name, kind=kind,
            fulfilment=fulfilment, points=points, month=f"{issued.astimezone(ZONE):%Y-%m}", status=status,
            valid_until=TODAY + timedelta(days=rng.randrange(-20, 30)), created_at=issued,
            closed_at=None if status == "open" else issued + timedelta(days=1)))


def _seed_tickets(session: Session, rules: Rules, rng: random.Random, member: Member) -> None:
    """Complaints and 人工客服 tickets: open, waiting and resolved (in and past their due time), rated or not."""
    for _ in range(rng.randrange(4)):
        opened = local(date(2025, 10, 20) + timedelta(days=rng.randrange(400)), rng.choice([1, 9, 15, 22]))
        status = rng.choice(["resolved", "resolved", "resolved", "open", "waiting"])
        resolved = opened + timedelta(hours=rng.randrange(1, 60), minutes=rng.randrange(60)) \
            if status == "resolved" else None
        due = opened + timedelta(hours=24) if rng.random() < 0.9 else None
        answered = opened + timedelta(minutes=rng.randrange(10, 600)) if rng.random() < 0.8 else None
        number = f"T{rng.randrange(10 ** 9):09d}"
        session.add(Ticket(
            number=number, member_id=member.id, kind=rng.choice(["complaint", "complaint", "human"]),
            category=rng.choice(rules.complaints.categories), priority=rng.choice(["high", "normal"]), status=status,
            description="seeded", opened_at=opened, first_response_at=answered, resolved_at=resolved,
            resolution_due_at=due, repeated=rng.random() < 0.25,
            rating=rng.choice([None, 1, 2, 3, 4, 5, 5]) if resolved else None))


def _seed_events(session: Session, rules: Rules, rng: random.Random) -> None:
    """Sign-ups for the events of ``rules`` whose sign-up opened by NOW: booked (checked in or not), waitlisted
    and ended ones, within each session's capacity."""
    session.flush()
    member_ids = list(session.scalars(select(Member.id).order_by(Member.id)))
    code = 0
    for event in rules.events.catalogue:
        if rules.local_instant(event.signup_opens) > NOW:
            continue
        people = rng.sample(member_ids, min(len(member_ids), 10 * len(event.sessions) + 5))
        for es in event.sessions:
            row = EventSessionRow(event_id=event.id, session_key=es.id, title=event.title,
                                  starts_at=rules.local_instant(es.starts), ends_at=rules.local_instant(es.ends),
                                  place=es.place, capacity=es.capacity, seats_taken=0, created_at=NOW)
            session.add(row)
            session.flush()
            ended = rules.local_instant(es.ends) <= NOW
            for _ in range(rng.randrange(4, 11)):
                member_id, code = people.pop(), code + 1
                guests = rng.randrange(event.guests_allowed + 1)
                status = rng.choice(["booked", "booked", "booked", "waitlisted", "cancelled", "withdrawn"])
                if status == "booked" and row.seats_taken + guests + 1 > es.capacity:
                    status = "waitlisted"
                if status == "waitlisted" and ended:
                    status = "expired"
                live = status in ("booked", "waitlisted")
                checked = status == "booked" and ended and rng.random() < 0.7
                session.add(EventSignup(
                    session_id=row.id, event_id=event.id, member_id=member_id, guests=guests, party=guests + 1,
                    status=status, live_event=event.id if live else None, code=f"E{code:05d}",
                    created_at=rules.local_instant(event.signup_opens),
                    checked_in_at=rules.local_instant(es.starts) + timedelta(minutes=rng.randrange(-20, 40))
                    if checked else None))
                if status == "booked":
                    row.seats_taken += guests + 1


def _seed_stock(session: Session, rules: Rules, rng: random.Random) -> None:
    session.flush()
    held = Counter(session.scalars(select(GiftRedemption.gift_id).where(GiftRedemption.status == "open")))
    for gift_id in [g.id for g in rules.gifts.catalogue[:4]] + [WITHDRAWN[0], "gift-tray"]:
        session.add(GiftStock(gift_id=gift_id, stock=held[gift_id] + rng.randrange(0, 40), reserved=held[gift_id],
                              handed_over=rng.randrange(0, 100), updated_at=NOW))


# --------------------------------------------------------------------------- the expected tables


def _month(at: datetime) -> str:
    return f"{at.astimezone(ZONE):%Y-%m}"


def _months(first: date, last: date) -> list[str]:
    out, day = [], first
    while day <= last:
        out.append(f"{day:%Y-%m}")
        day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return out


def _quarter(at: datetime) -> str:
    local_day = at.astimezone(ZONE)
    return f"{local_day.year}-Q{(local_day.month - 1) // 3 + 1}"


def _in_range(at: datetime, first: date, last: date) -> bool:
    return first <= at.astimezone(ZONE).date() <= last


def expected(session: Session, rules: Rules, first: date = FIRST, last: date = TODAY,
             manager: str | None = None) -> dict[str, dict[str, list[tuple]]]:
    """Each panel's tables (rows only) as the dashboard should show them, worked out from the rows."""
    members = [m for m in session.scalars(select(Member)) if manager is None or m.manager_id == manager]
    ids = {m.id for m in members}
    purchases = [p for p in session.scalars(select(Purchase)) if p.member_id in ids]
    changes = [c for c in session.scalars(select(MemberChange).order_by(MemberChange.id)) if c.member_id in ids]
    ledger = [e for e in session.scalars(select(LedgerEntry)) if e.member_id in ids]
    pushes = [p for p in session.scalars(select(OutboxMessage)) if p.member_id in ids]
    redemptions = [r for r in session.scalars(select(GiftRedemption)) if r.member_id in ids]
    tickets = [t for t in session.scalars(select(Ticket)) if t.member_id in ids]
    signups = [x for x in session.scalars(select(EventSignup)) if x.member_id in ids]
    tiers = [t.id for t in reversed(rules.tiers)]
    rank = {t.id: i for i, t in enumerate(rules.tiers)}
    d = rules.dashboard

    def name(tier: str) -> str:
        return f"{tier} {rules.tier(tier).name}"

    months = _months(first, last)
    tables: dict[str, dict[str, list[tuple]]] = defaultdict(dict)

    # members
    rows = []
    for tier in tiers:
        mine = [m for m in members if m.tier == tier]
        rows.append((name(tier), len(mine), *(sum(m.segment == s for m in mine) for s in d.segment_names),
                     *(sum(m.activity == a for m in mine) for a in d.activity_names)))
    tables["members"]["by_tier"] = rows
    new = Counter(_month(m.created_at) for m in members if _in_range(m.created_at, first, last))
    ups, downs = Counter(), Counter()
    for c in changes:
        if c.action == "tier" and _in_range(c.at, first, last):
            old, new_tier = c.detail.split(" (")[0].split(" → ")
            (ups if rank[new_tier] > rank[old] else downs)[_month(c.at)] += 1
    tables["members"]["movement"] = [(m, new[m], ups[m], downs[m]) for m in months]

    # retention
    start, end = local(first, 0), local(last + timedelta(days=1), 0)
    year_start = end - timedelta(days=365)
    kept = [p for p in purchases if p.refunded_at is None]
    rows = []
    for tier in tiers:
        cohort = []
        for m in members:
            if m.created_at >= start:
                continue
            later = [c for c in changes if c.member_id == m.id and c.action == "tier" and c.at >= start]
            then = later[0].detail.split(" → ")[0] if later else m.tier
            if then == tier:
                cohort.append(m.id)
        retained = sum(any(p.member_id == i and start <= p.purchased_at < end for p in kept) for i in cohort)
        churned = sum(not any(p.member_id == i and year_start <= p.purchased_at < end for p in kept) for i in cohort)
        rows.append((name(tier), len(cohort), retained, _pct(retained, len(cohort)), churned,
                     _pct(churned, len(cohort))))
    tables["retention"]["by_tier"] = rows

    # loyalty
    tier_of = {m.id: m.tier for m in members}
    quarters = list(dict.fromkeys(_quarter(local(day)) for day in _days(first, last)))
    found: dict[tuple[str, str], list] = defaultdict(lambda: [0, Decimal(0), set()])
    for p in kept:
        if _in_range(p.purchased_at, first, last) and any(
                q.member_id == p.member_id and q.purchased_at < p.purchased_at for q in kept):
            cell = found[(_quarter(p.purchased_at), tier_of[p.member_id])]
            cell[0] += 1
            cell[1] += p.amount - p.refunded_amount
            cell[2].add(p.member_id)
    attended: dict[tuple[str, str], set] = defaultdict(set)
    for x in signups:
        if x.checked_in_at and _in_range(x.checked_in_at, first, last):
            attended[(_quarter(x.checked_in_at), tier_of[x.member_id])].add(x.member_id)
    tables["loyalty"]["by_quarter"] = [
        (q, name(t), found[(q, t)][0], found[(q, t)][1].quantize(Decimal("0.01")), len(found[(q, t)][2]),
         len(attended[(q, t)])) for q in quarters for t in tiers]

    # points
    sums = Counter()
    for e in ledger:
        if _in_range(e.occurred_at, first, last):
            returned = e.kind == "reverse" and (e.idempotency_key or "").startswith("gift-back:")
            sums[(_month(e.occurred_at), "gift_return" if returned else e.kind)] += e.amount
    tables["points"]["by_month"] = [(m, sums[(m, "earn")], -sums[(m, "redeem")], -sums[(m, "expire")],
                                     -sums[(m, "reverse")], sums[(m, "adjust")], sums[(m, "gift_return")])
                                    for m in months]
    horizon = TODAY + timedelta(days=d.expiring_days)
    tables["points"]["outstanding"] = [
        (name(t), sum(m.tier == t for m in members), sum(m.points_balance for m in members if m.tier == t),
         sum(e.remaining for e in ledger if e.kind == "earn" and tier_of[e.member_id] == t
             and TODAY <= e.expires_on < horizon))
        for t in tiers]

    # pushes
    by = defaultdict(Counter)
    reasons = Counter()
    for p in pushes:
        if not _in_range(p.created_at, first, last):
            continue
        key = (p.job, _month(p.created_at))
        by[key]["planned"] += 1
        by[key]["sent"] += p.sent_at is not None
        by[key][{"delivered": "delivered", "sent": "sent_unconfirmed", "failed": "failed", "unreachable": "failed",
                 "unknown": "in_doubt", "skipped": "skipped", "pending": "waiting", "sending": "waiting"}[p.status]] += 1
        if p.status in ("skipped", "failed", "unreachable"):
            outcome = "skipped" if p.status == "skipped" else "failed"
            reasons[(*key, d.labels[outcome], p.reason or ("unreachable" if p.status == "unreachable" else ""))] += 1
    columns = ("planned", "sent", "delivered", "sent_unconfirmed", "failed", "in_doubt", "skipped", "waiting")
    tables["pushes"]["by_job"] = [(job, month, *(by[(job, month)][c] for c in columns)) for job, month in sorted(by)]
    tables["pushes"]["reasons"] = sorted(
        [(*k, n) for k, n in reasons.items()],
        key=lambda r: (r[0], r[1], {d.labels["failed"]: "failed", d.labels["skipped"]: "skipped"}[r[2]], -r[4], r[3]))

    # gifts
    catalogue = {g.id: (i, g.name) for i, g in enumerate(rules.gifts.catalogue)}

    def gift(gift_id: str, stored: str) -> str:
        return f"{gift_id} {catalogue[gift_id][1] if gift_id in catalogue else stored}"

    def gift_order(gift_id: str) -> tuple:
        return (catalogue[gift_id][0] if gift_id in catalogue else len(catalogue), gift_id)

    issued = defaultdict(Counter)
    for r in redemptions:
        if _in_range(r.created_at, first, last):
            cell = issued[(r.gift_id, _month(r.created_at))]
            cell["name"] = r.gift_name
            cell["redeemed"] += 1
            cell[{"collected": "handed_over", "mailed": "handed_over"}.get(r.status, r.status)] += 1
            cell["points"] += 0 if r.status in ("cancelled", "expired") else r.points
    columns = ("redeemed", "handed_over", "open", "cancelled", "expired", "points")
    tables["gifts"]["by_month"] = [(gift(g, issued[(g, m)]["name"]), m, *(issued[(g, m)][c] for c in columns))
                                   for g, m in sorted(issued, key=lambda k: (gift_order(k[0]), k[1]))]
    stock = {s.gift_id: s for s in session.scalars(select(GiftStock))}
    ids_shown = [g.id for g in rules.gifts.catalogue] + sorted(set(stock) - set(catalogue))
    withdrawn = {r.gift_id: r.gift_name for r in session.scalars(select(GiftRedemption))}
    tables["gifts"]["stock"] = [
        (gift(g, withdrawn.get(g, g)) + ("" if g in catalogue else f"（{d.labels['withdrawn']}）"),
         *((stock[g].stock, stock[g].reserved, stock[g].stock - stock[g].reserved, stock[g].handed_over)
           if g in stock else (0, 0, 0, 0))) for g in ids_shown]
    waiting = defaultdict(Counter)
    for r in redemptions:
        if r.status == "open":
            cell = waiting[r.gift_id]
            cell["name"] = r.gift_name
            cell["open"] += 1
            cell["to_collect" if r.fulfilment == "pickup" else "to_mail"] += 1
            cell["overdue"] += r.fulfilment == "pickup" and r.valid_until < TODAY
            cell["points"] += r.points
    tables["gifts"]["open"] = [(gift(g, waiting[g]["name"]),
                                *(waiting[g][c] for c in ("open", "to_collect", "to_mail", "overdue", "points")))
                               for g in sorted(waiting, key=gift_order)]

    # complaints
    rows = []
    for m in months:
        opened = [t for t in tickets if _in_range(t.opened_at, first, last) and _month(t.opened_at) == m]
        resolved = [t for t in tickets if t.resolved_at and _in_range(t.resolved_at, first, last)
                    and _month(t.resolved_at) == m]
        met = sum(t.resolution_due_at is not None and t.resolved_at <= t.resolution_due_at for t in resolved)
        rated = [t.rating for t in resolved if t.rating]
        rows.append((m, len(opened), len(resolved), _pct(met, len(resolved)),
                     _median([t.first_response_at - t.opened_at for t in opened if t.first_response_at]),
                     _median([t.resolved_at - t.opened_at for t in resolved]),
                     (Decimal(sum(rated)) / len(rated)).quantize(Decimal("0.01")) if rated else "—", len(rated),
                     len({t.member_id for t in opened if t.repeated})))
    tables["complaints"]["by_month"] = rows
    resolved = [t for t in tickets if t.resolved_at and _in_range(t.resolved_at, first, last) and t.rating]
    tables["complaints"]["ratings"] = [(f"{n} 星", sum(t.rating == n for t in resolved)) for n in range(1, 6)]
    in_range = [t for t in tickets if _in_range(t.opened_at, first, last)]
    flagged = {t.member_id for t in in_range if t.repeated}
    people = []
    for m in members:
        if m.id in flagged:
            mine = [t for t in in_range if t.member_id == m.id]
            people.append((m.card_no, m.name, name(m.tier), len(mine), sum(t.repeated for t in mine),
                           f"{max(t.opened_at for t in mine).astimezone(ZONE):%Y-%m-%d %H:%M}"))
    tables["complaints"]["repeated"] = sorted(people, key=lambda p: (-p[3], -p[4], p[0]))

    # events: sessions starting in the range, and those not ended of events open for sign-up
    rows, per_event = [], {}
    session_rows = {(r.event_id, r.session_key): r for r in session.scalars(select(EventSessionRow))}
    for event in rules.events.catalogue:
        for es in event.sessions:
            starts, ends = es.starts.replace(tzinfo=ZONE), es.ends.replace(tzinfo=ZONE)
            if not (first <= starts.date() <= last or event.signup_opens.replace(tzinfo=ZONE) <= NOW < ends):
                continue
            row = session_rows.get((event.id, es.id))
            mine = [x for x in signups if row is not None and x.session_id == row.id]
            ended = ends <= NOW
            booked = [x for x in mine if x.status == "booked"]
            seats = row.seats_taken if row else 0
            people_in = sum(x.party for x in booked if x.checked_in_at)
            missed = sum(not x.checked_in_at for x in booked) if ended else 0
            price = event.budget_per_head
            rows.append((f"{event.id} {event.title}", es.id, f"{es.starts:%Y-%m-%d %H:%M}", es.capacity, seats,
                         _pct(seats, es.capacity), len(booked), sum(x.status == "waitlisted" for x in mine),
                         sum(bool(x.checked_in_at) for x in booked), people_in, missed if ended else "—",
                         _pct(missed, len(booked)) if ended else "—", (price * people_in).quantize(Decimal("0.01")),
                         (price * es.capacity).quantize(Decimal("0.01")),
                         _pct(people_in, es.capacity) if price else "—"))
            cell = per_event.setdefault(f"{event.id} {event.title}", [0, 0, 0, 0, 0, 0, Decimal(0), Decimal(0)])
            for i, v in enumerate((1, es.capacity, seats, sum(x.status == "waitlisted" for x in mine), people_in,
                                   missed, price * people_in, price * es.capacity)):
                cell[i] += v
    tables["events"]["by_session"] = rows
    tables["events"]["by_event"] = [
        (n, c[0], c[1], c[2], _pct(c[2], c[1]), c[3], c[4], c[5], c[6].quantize(Decimal("0.01")),
         c[7].quantize(Decimal("0.01")), "—" if not c[7] else
         f"{(c[6] * 100 / c[7]).quantize(Decimal('0.1'))}%") for n, c in per_event.items()]
    return tables


def _median(spans: list[timedelta]) -> Decimal | str:
    if not spans:
        return "—"
    seconds = sorted(s.total_seconds() for s in spans)
    middle = len(seconds) // 2
    value = seconds[middle] if len(seconds) % 2 else (seconds[middle - 1] + seconds[middle]) / 2
    return Decimal(str(round(value / 3600, 2))).quantize(Decimal("0.01"))  # hours to two places


def _days(first: date, last: date):
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _pct(part: int, whole: int) -> str:
    return "—" if not whole else f"{(Decimal(part * 100) / whole).quantize(Decimal('0.1'))}%"

"""The dashboard's panels: each turns the reports of storage/reports.py into tables and charts.

A panel is one function in ``PANELS``: it gets a ``Request`` (session, rules, range, scope) and
returns a ``PanelView``. The tables are what the CSV download gives; the charts draw the same rows.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from markupsafe import Markup
from sqlalchemy.orm import Session

from bot.admin.charts import OTHER_COLOURS, item_colours, render
from rules import Rules
from storage import reports
from storage.reports import Scope


@dataclass(frozen=True)
class Request:
    session: Session
    rules: Rules
    first: date  # the range's first day (local)
    last: date  # its last day
    today: date
    scope: Scope
    now: datetime | None = None  # the clock's instant (whether a session has ended); None: the end of today

    def label(self, key: str, **values: object) -> str:
        return self.rules.dashboard.labels[key].format(**values)

    def tier_name(self, tier_id: str) -> str:
        return f"{tier_id} {self.rules.tier(tier_id).name}"

    def tier_colours(self, tier_ids: Sequence[str]) -> list[str]:
        return [self.rules.dashboard.tier_colours[t] for t in tier_ids]


@dataclass(frozen=True)
class Table:
    key: str  # in the CSV's URL
    title: str
    headers: list[str]
    rows: list[tuple]
    total: tuple | None = None  # a closing row (shown and downloaded after the rows)


@dataclass
class PanelView:
    title: str
    tables: list[Table] = field(default_factory=list)
    charts: list[Markup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, key: str) -> Table | None:
        return next((t for t in self.tables if t.key == key), None)


def _tiers_high_first(rules: Rules) -> list[str]:
    return [t.id for t in reversed(rules.tiers)]


# --------------------------------------------------------------------------- members


def members_panel(req: Request) -> PanelView:
    view = PanelView(req.label("panel_members"))
    d = req.rules.dashboard
    counts = reports.member_counts(req.session, req.scope)
    tiers = _tiers_high_first(req.rules)
    segments, activities = list(d.segment_names), list(d.activity_names)
    by = {t: {"total": 0} for t in tiers}
    for c in counts:
        row = by.setdefault(c.tier, {"total": 0})
        row["total"] += c.members
        for key in (f"s:{c.segment}", f"a:{c.activity}"):
            row[key] = row.get(key, 0) + c.members
    columns = [f"s:{s}" for s in segments] + [f"a:{a}" for a in activities]
    rows = [(req.tier_name(t), by[t]["total"], *(by[t].get(c, 0) for c in columns)) for t in by]
    total = (req.label("total"), sum(r[1] for r in rows), *(sum(r[i] for r in rows) for i in range(2, 2 + len(columns))))
    view.tables.append(Table("by_tier", req.label("panel_members"),
                             [req.label("tier"), req.label("total"), *(d.segment_names[s] for s in segments),
                              *(d.activity_names[a] for a in activities)], rows, total))
    empty = "" if total[1] else req.label("empty_members")
    colours = req.tier_colours(tiers)
    view.charts.append(render(
        "bar", f"{req.label('members')}：{req.label('tier')} × 分群", "分群", req.label("members_unit"),
        [d.segment_names[s] for s in segments],
        [(req.tier_name(t), [by[t].get(f"s:{s}", 0) for s in segments]) for t in tiers], colours, empty, stacked=True))
    view.charts.append(render(
        "bar", f"{req.label('members')}：{req.label('tier')} × 活跃度", "活跃度", req.label("members_unit"),
        [d.activity_names[a] for a in activities],
        [(req.tier_name(t), [by[t].get(f"a:{a}", 0) for a in activities]) for t in tiers], colours, empty, stacked=True))

    months = reports.month_spans(req.rules, req.first, req.last)
    moves = reports.member_movement(req.session, req.rules, months, req.scope)
    view.tables.append(Table("movement", f"{req.label('month')} · {req.label('new_members')} / "
                                         f"{req.label('upgrades')} / {req.label('downgrades')}",
                             [req.label("month"), req.label("new_members"), req.label("upgrades"),
                              req.label("downgrades")],
                             [(m.month, m.new_members, m.upgrades, m.downgrades) for m in moves]))
    view.charts.append(render(
        "bar", f"{req.label('new_members')}、{req.label('upgrades')}与{req.label('downgrades')}（按月）",
        req.label("month"), req.label("members_unit"), [m.month for m in moves],
        [(req.label("new_members"), [m.new_members for m in moves]),
         (req.label("upgrades"), [m.upgrades for m in moves]),
         (req.label("downgrades"), [m.downgrades for m in moves])],
        ("#2e7d32", "#1565c0", "#c62828"), req.label("empty_range")))
    return view


# --------------------------------------------------------------------------- retention and churn


def retention_panel(req: Request) -> PanelView:
    view = PanelView(req.label("panel_retention"))
    period = reports.month_spans(req.rules, req.first, req.last)
    span = reports.Span(f"{req.first}–{req.last}", req.first, req.last, period[0].start, period[-1].end)
    rows = reports.retention(req.session, req.rules, span, req.scope)
    view.tables.append(Table("by_tier", f"{req.label('panel_retention')}（{span.label}）",
                             [req.label("tier"), req.label("members_at_start"), req.label("retained"),
                              req.label("retention_rate"), req.label("churned"), req.label("churn_rate")],
                             [(req.tier_name(r.tier), r.members_at_start, r.retained, _pct(r.retention_rate),
                               r.churned, _pct(r.churn_rate)) for r in rows]))
    empty = "" if any(r.members_at_start for r in rows) else req.label("empty_range")
    view.charts.append(render(
        "bar", f"{req.label('retention_rate')}与{req.label('churn_rate')}（{span.label}）", req.label("tier"),
        req.label("percent_unit"), [req.label("retention_rate"), req.label("churn_rate")],
        [(req.tier_name(r.tier), [r.retention_rate, r.churn_rate]) for r in rows],
        req.tier_colours([r.tier for r in rows]), empty, percent=True))
    return view


def _pct(value: Decimal | None) -> str:
    return "—" if value is None else f"{value}%"


# --------------------------------------------------------------------------- loyalty


def loyalty_panel(req: Request) -> PanelView:
    view = PanelView(req.label("panel_loyalty"))
    quarters = reports.quarter_spans(req.rules, req.first, req.last)
    rows = reports.loyalty(req.session, req.rules, quarters, req.scope)
    view.tables.append(Table("by_quarter", req.label("panel_loyalty"),
                             [req.label("quarter"), req.label("tier"), req.label("repeat_purchases"),
                              req.label("repeat_amount"), req.label("repeat_buyers"),
                              req.label("event_participation")],
                             [(r.quarter, req.tier_name(r.tier), r.repeat_purchases, r.repeat_amount, r.repeat_buyers,
                               r.event_participation) for r in rows]))
    tiers = _tiers_high_first(req.rules)
    labels = [q.label for q in quarters]
    empty = "" if any(r.repeat_purchases for r in rows) else req.label("empty_range")

    def series(attr: str):
        return [(req.tier_name(t), [getattr(r, attr) for r in rows if r.tier == t]) for t in tiers]

    view.charts.append(render("bar", f"{req.label('repeat_purchases')}（按季度）", req.label("quarter"),
                              "复购次数（次）", labels, series("repeat_purchases"), req.tier_colours(tiers), empty))
    view.charts.append(render("bar", f"{req.label('repeat_amount')}（按季度）", req.label("quarter"),
                              req.label("amount_unit"), labels, series("repeat_amount"), req.tier_colours(tiers), empty))
    view.charts.append(render("bar", f"{req.label('event_participation')}（按季度）", req.label("quarter"),
                              req.label("members_unit"), labels, series("event_participation"),
                              req.tier_colours(tiers), req.label("empty_range")))
    return view


# --------------------------------------------------------------------------- points


def points_panel(req: Request) -> PanelView:
    view = PanelView(req.label("panel_points"))
    months = reports.month_spans(req.rules, req.first, req.last)
    rows = reports.points_by_month(req.session, months, req.scope)
    kinds = ("earned", "redeemed", "expired", "reversed", "adjusted", "returned")
    view.tables.append(Table("by_month", f"{req.label('panel_points')}（按月）",
                             [req.label("month"), *(req.label(k) for k in kinds)],
                             [(r.month, *(getattr(r, k) for k in kinds)) for r in rows],
                             (req.label("total"), *(sum(getattr(r, k) for r in rows) for k in kinds))))
    view.charts.append(render("bar", f"{req.label('panel_points')}（按月）", req.label("month"),
                              req.label("points_unit"), [r.month for r in rows],
                              [(req.label(k), [getattr(r, k) for r in rows]) for k in kinds[:4]],
                              OTHER_COLOURS[:4], req.label("empty_range")))
    days = req.rules.dashboard.expiring_days
    held = reports.points_outstanding(req.session, req.rules, req.today, days, req.scope)
    view.tables.append(Table("outstanding", f"{req.label('outstanding')}（{req.today}）",
                             [req.label("tier"), req.label("members"), req.label("outstanding"),
                              req.label("expiring", days=days)],
                             [(req.tier_name(o.tier), o.members, o.balance, o.expiring) for o in held],
                             (req.label("total"), sum(o.members for o in held), sum(o.balance for o in held),
                              sum(o.expiring for o in held))))
    empty = "" if any(o.balance for o in held) else req.label("empty_members")
    view.charts.append(render("bar", f"{req.label('outstanding')}与{req.label('expiring', days=days)}",
                              req.label("tier"), req.label("points_unit"),
                              [req.label("outstanding"), req.label("expiring", days=days)],
                              [(req.tier_name(o.tier), [o.balance, o.expiring]) for o in held],
                              req.tier_colours([o.tier for o in held]), empty))
    return view


# --------------------------------------------------------------------------- pushes


PUSH_OUTCOMES = ("delivered", "sent_unconfirmed", "failed", "in_doubt", "skipped", "waiting")


def pushes_panel(req: Request) -> PanelView:
    view = PanelView(req.label("panel_pushes"))
    months = reports.month_spans(req.rules, req.first, req.last)
    rows = reports.pushes_by_month(req.session, months, req.scope)
    columns = ("planned", "sent", "delivered", "sent_unconfirmed", "failed", "in_doubt", "skipped", "waiting")
    view.tables.append(Table("by_job", f"{req.label('panel_pushes')}（{req.label('job')} × {req.label('month')}）",
                             [req.label("job"), req.label("month"), *(req.label(c) for c in columns)],
                             [(r.job, r.month, *(getattr(r, c) for c in columns)) for r in rows],
                             (req.label("total"), "", *(sum(getattr(r, c) for r in rows) for c in columns))))
    reasons = reports.push_reasons(req.session, months, req.scope)
    view.tables.append(Table("reasons", f"{req.label('skipped')} / {req.label('failed')} · {req.label('reason')}",
                             [req.label("job"), req.label("month"), req.label("status"), req.label("reason"),
                              req.label("count")],
                             [(r.job, r.month, req.label(r.status), r.reason, r.count) for r in reasons]))
    labels = [m.label for m in months]
    totals = {label: {c: 0 for c in PUSH_OUTCOMES} for label in labels}
    for r in rows:
        for c in PUSH_OUTCOMES:
            totals[r.month][c] += getattr(r, c)
    view.charts.append(render("bar", f"{req.label('panel_pushes')}（按月，各任务合计）", req.label("month"),
                              req.label("pushes_unit"), labels,
                              [(req.label(c), [totals[m][c] for m in labels]) for c in PUSH_OUTCOMES],
                              OTHER_COLOURS[:len(PUSH_OUTCOMES)], req.label("empty_range"), stacked=True))
    return view


# --------------------------------------------------------------------------- gifts


def _gift_name(req: Request, gift_id: str, stored: str) -> str:
    """A gift as the catalogue names it now (withdrawn ones by the name they were redeemed under)."""
    gift = req.rules.gifts.gift(gift_id)
    return f"{gift_id} {gift.name if gift else stored}"


def _short(name: str, chars: int = 16) -> str:
    return name if len(name) <= chars else name[:chars - 1] + "…"


def gifts_panel(req: Request) -> PanelView:
    view = PanelView(req.label("panel_gifts"))
    months = reports.month_spans(req.rules, req.first, req.last)
    rows = reports.gift_redemptions(req.session, req.rules, months, req.scope)
    columns = ("redeemed_codes", "handed_over", "open_codes", "cancelled", "expired", "gift_points")
    attrs = ("redeemed", "handed_over", "open", "cancelled", "expired", "points")
    view.tables.append(Table("by_month", f"{req.label('panel_gifts')}（{req.label('gift')} × {req.label('month')}）",
                             [req.label("gift"), req.label("month"), *(req.label(c) for c in columns)],
                             [(_gift_name(req, r.gift_id, r.gift_name), r.month, *(getattr(r, a) for a in attrs))
                              for r in rows],
                             (req.label("total"), "", *(sum(getattr(r, a) for r in rows) for a in attrs))))
    ids = {r.gift_id: r.gift_name for r in rows}
    counts = {(r.gift_id, r.month): r.redeemed for r in rows}
    labels = [m.label for m in months]
    view.charts.append(render("bar", f"{req.label('redeemed_codes')}（按月，各礼品）", req.label("month"),
                              req.label("gifts_unit"), labels,
                              [(_short(_gift_name(req, g, name)), [counts.get((g, m), 0) for m in labels])
                               for g, name in ids.items()],
                              item_colours(len(ids)), req.label("empty_range"), stacked=True, legend_columns=4,
                              height=420))

    stock = reports.gift_stock(req.session, req.rules)
    view.tables.append(Table("stock", f"{req.label('stock')}（{req.today}）",
                             [req.label("gift"), req.label("stock"), req.label("reserved"), req.label("available"),
                              req.label("handed_over_total")],
                             [(_gift_name(req, s.gift_id, s.name) + ("" if s.in_catalogue else
                                                                     f"（{req.label('withdrawn')}）"),
                               s.stock, s.reserved, s.available, s.handed_over) for s in stock],
                             (req.label("total"), sum(s.stock for s in stock), sum(s.reserved for s in stock),
                              sum(s.available for s in stock), sum(s.handed_over for s in stock))))
    codes = reports.open_codes(req.session, req.rules, req.today, req.scope)
    view.tables.append(Table("open", f"{req.label('open_codes')}（{req.today}）",
                             [req.label("gift"), req.label("open_codes"), req.label("to_collect"),
                              req.label("to_mail"), req.label("overdue"), req.label("gift_points")],
                             [(_gift_name(req, c.gift_id, c.gift_name), c.open, c.to_collect, c.to_mail, c.overdue,
                               c.points) for c in codes],
                             (req.label("total"), *(sum(getattr(c, a) for c in codes)
                                                    for a in ("open", "to_collect", "to_mail", "overdue", "points")))))
    waiting = {c.gift_id: c.open for c in codes}
    view.charts.append(render("bar", f"{req.label('available')}与{req.label('open_codes')}（{req.today}）",
                              f"{req.label('gift')}（编号，名称见下表）", req.label("gifts_unit"),
                              [s.gift_id for s in stock],
                              [(req.label("available"), [s.available for s in stock]),
                               (req.label("open_codes"), [waiting.get(s.gift_id, 0) for s in stock])],
                              OTHER_COLOURS[:2], req.label("empty_gifts")))
    if req.scope.manager_id:
        view.notes.append(req.label("stock_note"))
    return view


# --------------------------------------------------------------------------- complaints


def complaints_panel(req: Request) -> PanelView:
    view = PanelView(req.label("panel_complaints"))
    months = reports.month_spans(req.rules, req.first, req.last)
    rows = reports.complaints_by_month(req.session, months, req.scope)
    columns = ("opened", "resolved", "within_sla", "median_first_response_hours", "median_resolution_hours",
               "average_rating", "ratings", "repeated_members")
    view.tables.append(Table("by_month", f"{req.label('panel_complaints')}（按月）",
                             [req.label("month"), *(req.label(f"c_{c}") for c in columns)],
                             [(r.month, r.opened, r.resolved, _pct(r.within_sla), _none(r.median_first_response_hours),
                               _none(r.median_resolution_hours), _none(r.average_rating), r.ratings,
                               r.repeated_members) for r in rows],
                             (req.label("total"), sum(r.opened for r in rows), sum(r.resolved for r in rows),
                              "", "", "", "", sum(r.ratings for r in rows), "")))
    labels = [r.month for r in rows]
    empty = "" if any(r.opened or r.resolved for r in rows) else req.label("empty_range")
    view.charts.append(render("bar", f"{req.label('c_opened')}与{req.label('c_resolved')}（按月）", req.label("month"),
                              req.label("tickets_unit"), labels,
                              [(req.label("c_opened"), [r.opened for r in rows]),
                               (req.label("c_resolved"), [r.resolved for r in rows]),
                               (req.label("c_repeated_members"), [r.repeated_members for r in rows])],
                              OTHER_COLOURS[:3], empty))
    view.charts.append(render("line", f"{req.label('c_within_sla')}（按月）", req.label("month"),
                              req.label("percent_unit"), labels,
                              [(req.label("c_within_sla"), [r.within_sla for r in rows])],
                              OTHER_COLOURS[:1], empty, percent=True))
    view.charts.append(render("line", f"{req.label('c_median_resolution_hours')}（按月）", req.label("month"),
                              req.label("hours_unit"), labels,
                              [(req.label("c_median_first_response_hours"),
                                [r.median_first_response_hours for r in rows]),
                               (req.label("c_median_resolution_hours"), [r.median_resolution_hours for r in rows])],
                              OTHER_COLOURS[5:7], empty))
    ratings = reports.complaint_ratings(req.session, months, req.scope)
    view.tables.append(Table("ratings", f"{req.label('rating')}（{req.first}–{req.last}）",
                             [req.label("rating"), req.label("count")],
                             [(f"{score} 星", n) for score, n in ratings.items()],
                             (req.label("total"), sum(ratings.values()))))
    view.charts.append(render("bar", f"{req.label('rating')}分布（{req.first}–{req.last}）", req.label("rating"),
                              req.label("tickets_unit"), [f"{score} 星" for score in ratings],
                              [(req.label("c_ratings"), list(ratings.values()))], OTHER_COLOURS[2:3],
                              req.label("empty_range")))
    people = reports.repeated_complainers(req.session, months, req.scope)
    view.tables.append(Table("repeated", f"{req.label('c_repeated_members')}（{req.first}–{req.last}）",
                             [req.label("card_no"), req.label("member_name"), req.label("tier"),
                              req.label("tickets"), req.label("flagged"), req.label("last_opened")],
                             [(c.card_no, c.name, req.tier_name(c.tier), c.tickets, c.flagged,
                               f"{c.last_opened.astimezone(req.rules.zone):%Y-%m-%d %H:%M}") for c in people]))
    return view


def _none(value: object) -> object:
    return "—" if value is None else value


# --------------------------------------------------------------------------- events


def events_panel(req: Request) -> PanelView:
    view = PanelView(req.label("panel_events"))
    now = req.now or req.rules.local_midnight(req.today + timedelta(days=1))
    lines = reports.event_sessions(req.session, req.rules, req.first, req.last, now, req.scope)
    rows = []
    for line in lines:
        f, price = line.figures, line.event.budget_per_head
        rows.append((f"{line.event.id} {line.event.title}", line.session.id, f"{line.session.starts:%Y-%m-%d %H:%M}",
                     f.capacity, f.seats_taken, _pct(reports.share(f.seats_taken, f.capacity)), f.bookings,
                     f.waitlisted, f.attended, f.attended_seats,
                     f.no_shows if f.ended else "—",
                     _pct(None if f.no_show_rate is None else reports.share(f.no_shows, f.bookings)),
                     _money(price * f.attended_seats), _money(price * f.capacity),
                     _pct(reports.share(price * f.attended_seats, price * f.capacity))))
    view.tables.append(Table("by_session", f"{req.label('panel_events')}（{req.label('e_session')}）",
                             [req.label(k) for k in ("event", "e_session", "e_starts", "capacity", "seats_taken",
                                                     "fill_rate", "bookings", "waitlisted", "attended",
                                                     "attended_people", "no_shows", "no_show_rate", "cost",
                                                     "budget", "budget_used")], rows))
    by_event: dict[str, dict] = {}
    for line in lines:
        f, price = line.figures, line.event.budget_per_head
        cell = by_event.setdefault(f"{line.event.id} {line.event.title}", dict.fromkeys(
            ("sessions", "capacity", "seats_taken", "waitlisted", "attended_seats", "no_shows", "cost", "budget"), 0))
        for key, value in (("sessions", 1), ("capacity", f.capacity), ("seats_taken", f.seats_taken),
                           ("waitlisted", f.waitlisted), ("attended_seats", f.attended_seats),
                           ("no_shows", f.no_shows), ("cost", price * f.attended_seats),
                           ("budget", price * f.capacity)):
            cell[key] += value
    view.tables.append(Table("by_event", req.label("panel_events"),
                             [req.label(k) for k in ("event", "e_sessions", "capacity", "seats_taken", "fill_rate",
                                                     "waitlisted", "attended_people", "no_shows", "cost", "budget",
                                                     "budget_used")],
                             [(name, c["sessions"], c["capacity"], c["seats_taken"],
                               _pct(reports.share(c["seats_taken"], c["capacity"])), c["waitlisted"],
                               c["attended_seats"], c["no_shows"], _money(c["cost"]), _money(c["budget"]),
                               _pct(reports.share(c["cost"], c["budget"]))) for name, c in by_event.items()]))
    empty = "" if lines else req.label("empty_events")
    view.charts.append(render("bar", f"{req.label('fill_rate')}（{req.label('e_session')}）", req.label("e_session"),
                              req.label("percent_unit"), [f"{l.event.id}/{l.session.id}" for l in lines],
                              [(req.label("fill_rate"), [reports.share(l.figures.seats_taken, l.figures.capacity)
                                                         for l in lines])],
                              OTHER_COLOURS[:1], empty, percent=True))
    view.charts.append(render("bar", f"{req.label('cost')}与{req.label('budget')}", req.label("event"),
                              req.label("amount_unit"), [name.split(" ")[0] for name in by_event],
                              [(req.label("cost"), [c["cost"] for c in by_event.values()]),
                               (req.label("budget"), [c["budget"] for c in by_event.values()])],
                              OTHER_COLOURS[2:4], empty))
    if req.scope.manager_id:
        view.notes.append(req.label("events_note"))
    return view


def _money(amount: Decimal) -> Decimal:
    return Decimal(amount).quantize(Decimal("0.01"))


PANELS: dict[str, Callable[[Request], PanelView]] = {
    "members": members_panel,
    "retention": retention_panel,
    "loyalty": loyalty_panel,
    "points": points_panel,
    "pushes": pushes_panel,
    "gifts": gifts_panel,
    "events": events_panel,
    "complaints": complaints_panel,
}

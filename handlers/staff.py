"""Staff in WeChat: 员工绑定, 工单, 回复, 待补充, 转交, 解决, 我的客户, 回访, 已回访.

Staff see only their own tickets and key accounts; role ``supervisor`` (and ``admin``) sees all
(seed 002 五.1). Every action is a ticket event with who and when. Only 回复 / 待补充 send
anything to a member: no other staff text is ever forwarded.
"""
from __future__ import annotations

import logging

import redis as redis_lib

from bot.context import Context, Handler
from handlers import help
from storage import complaints
from storage.complaints import TicketError
from storage.members import mask_openid
from storage.staff import StaffBind, bind_staff

log = logging.getLogger(__name__)

STAFF_ROLES = ("manager", "service", "supervisor", "admin")
EVENT_NAMES = {"opened": "投诉", "media": "附件", "note": "会员补充", "replied": "回复", "waiting": "待会员补充",
               "reopened": "重新打开", "transferred": "转交", "resolved": "解决", "rated": "评价"}
STATUS_NAMES = {"open": "处理中", "waiting": "待会员补充", "resolved": "已解决"}


def staff_only(handler: Handler) -> Handler:
    """For bound staff only; anyone else gets the usual hint, as for any text the bot does not know."""

    def guard(ctx: Context) -> str | None:
        if ctx.staff is not None and ctx.staff.role in STAFF_ROLES:
            return None
        ctx.args = (getattr(ctx.message, "content", "") or "").strip()
        return help.unknown_text(ctx)

    handler.guards = (*getattr(handler, "guards", ()), guard)  # type: ignore[attr-defined]
    return handler


def _refused(ctx: Context, exc: TicketError) -> str:
    return ctx.text(exc.message, **exc.values)


def staff_bind(ctx: Context) -> str:
    """`员工绑定 <code>`: link this WeChat to the staff record the one-time code was made for."""
    code = ctx.args.strip()
    if not code:
        return ctx.text("staff_bind_usage")
    with ctx.db.write() as session:
        outcome, staff = bind_staff(session, code[:16], ctx.openid, ctx.now)
        values = {"name": staff.name, "staff_id": staff.id} if staff is not None else {}
    if outcome is StaffBind.BOUND:
        log.info("staff %s bound to WeChat %s", values["staff_id"], mask_openid(ctx.openid))
    return ctx.text(outcome.value, **values)


def _flags(ticket) -> str:
    return ("（超时）" if ticket.breached else "") + ("（重复投诉）" if ticket.repeated else "")


@staff_only
def staff_tickets(ctx: Context) -> str:
    """`工单`: my open tickets by due time; `工单 <no>`: one ticket with the member and the thread."""
    rules, staff = ctx.rules, ctx.staff
    if ctx.args.strip():
        return _ticket_detail(ctx, ctx.args.split()[0])
    with ctx.db.read() as session:
        tickets = complaints.staff_open_tickets(session, staff)
        rows = [(t, session.get(complaints.Member, t.member_id)) for t in tickets]
    if not rows:
        return ctx.text("staff_ticket_list_empty")
    lines = [ctx.text("staff_ticket_list_line", ticket_no=t.number, priority=rules.complaints.sla[t.priority].name,
                      name=m.name, tier=m.tier, category=t.category, status=STATUS_NAMES[t.status],
                      due=complaints.local_text(rules, t.response_due_at or t.resolution_due_at) or "暂停",
                      flags=_flags(t)) for t, m in rows]
    return "\n".join([ctx.text("staff_ticket_list_header", count=len(rows)), *lines])


def _ticket_detail(ctx: Context, number: str) -> str:
    rules = ctx.rules
    try:
        with ctx.db.write() as session:
            view = complaints.view_ticket(session, ctx.staff, number, ctx.now)
            ticket, member = view.ticket, view.member
            purchases = "；".join(_purchase_text(ctx, p) for p in view.purchases) or "无"
            earlier = "；".join(f"{t.number} {t.category} {STATUS_NAMES[t.status]}" for t in view.earlier) or "无"
            member_actor = complaints.member_actor(member.id)
            thread = "\n".join(ctx.text("staff_thread_line", at=complaints.local_text(rules, e.at),
                                        who=ctx.text("staff_thread_member", name=member.name, card_no=member.card_no)
                                        if e.actor == member_actor else e.actor,
                                        kind=EVENT_NAMES.get(e.kind, e.kind), body=complaints.excerpt(e.body or "", 200))
                               for e in view.events)
            return ctx.text("staff_ticket_detail", ticket_no=ticket.number,
                            priority=rules.complaints.sla[ticket.priority].name, status=STATUS_NAMES[ticket.status],
                            flags=_flags(ticket), name=member.name, tier_name=rules.tier(member.tier).name,
                            card_no=member.card_no, points=f"{member.points_balance:,}",
                            manager=f"{view.manager.name}（{view.manager.id}）" if view.manager else "无",
                            assignee=ticket.assignee_id or "未分配",
                            response_due=complaints.local_text(rules, ticket.response_due_at) or "已响应",
                            resolution_due=complaints.local_text(rules, ticket.resolution_due_at) or "暂停",
                            purchases=purchases, earlier=earlier, thread=thread)
    except TicketError as exc:
        return _refused(ctx, exc)


def _purchase_text(ctx: Context, purchase) -> str:
    """One recent purchase as staff read it, with what was refunded of it."""
    if purchase.refunded_at is not None:
        refund = ctx.text("staff_purchase_refunded")
    elif purchase.refunded_amount:
        refund = ctx.text("staff_purchase_part_refunded", refunded=f"{purchase.refunded_amount:,}")
    else:
        refund = ""
    return ctx.text("staff_purchase_line", date=f"{purchase.purchased_at.astimezone(ctx.rules.zone):%Y-%m-%d}",
                    amount=f"{purchase.amount:,}", store=purchase.store, refund=refund)


def _window_open(ctx: Context, openid: str | None) -> bool:
    """Whether the member wrote within WeChat's 48-hour customer-service window (bot/dispatch.py notes it)."""
    if not openid or not ctx.rules.pushes.customer_service_window_hours:
        return False
    try:
        return bool(ctx.redis.exists(ctx.key("seen", openid)))
    except redis_lib.RedisError:
        return False  # unknown: the template goes, which always may


def _reply(ctx: Context, wait: bool) -> str:
    number, _, text = ctx.args.strip().partition(" ")
    usage = "staff_wait_usage" if wait else "staff_reply_usage"
    if not number or not text.strip():
        return ctx.text(usage)
    try:
        with ctx.db.write() as session:
            done = complaints.reply(session, ctx.rules, ctx.now, ctx.staff, number, text, wait=wait)
            ticket_no, event_id, push = done.ticket.number, done.event.id, done.push
    except TicketError as exc:
        return _refused(ctx, exc)
    # Recorded and planned first (committed), then sent once, by the outbox's own sender: a call whose
    # answer never came is in doubt and nothing resends it; what cannot go now the drain sends later.
    outcome = next(iter(ctx.state.at_once.send([push.id])), None) if push.status == "pending" else None
    delivery, answer, values = _how_it_went(ctx, push, outcome, wait)
    with ctx.db.write() as session:
        complaints.note_delivery(session, event_id, delivery)
    return ctx.text(answer, ticket_no=ticket_no, **values)


def _how_it_went(ctx: Context, push, outcome, wait: bool) -> tuple[str, str, dict]:
    """(the delivery noted on the reply, the answer to the staff member, its values) for a reply's send."""
    sent = "staff_waiting" if wait else "staff_reply_sent"
    if push.status != "pending":  # planned as skipped: not bound, unfollowed, unreachable
        return f"not sent: {push.reason}", "staff_reply_undeliverable", {}
    if outcome is None:
        return "pending", "staff_reply_later", {}
    if outcome.status == "sent":
        return outcome.channel, sent if wait or outcome.channel == "custom" else "staff_reply_queued", {}
    if outcome.status == "unknown":
        return f"in doubt: {outcome.reason}", "staff_reply_in_doubt", {
            "seconds": f"{ctx.rules.pushes.http_timeout_seconds:g}"}
    if outcome.status == "unreachable":
        return f"unreachable: {outcome.reason}", "staff_reply_undeliverable", {}
    return f"failed: {outcome.reason}", "staff_reply_failed", {"reason": outcome.reason}


@staff_only
def staff_reply(ctx: Context) -> str:
    """`回复 <no> <text>`: the member gets the text as a customer-service message; it is recorded."""
    return _reply(ctx, wait=False)


@staff_only
def staff_wait(ctx: Context) -> str:
    """`待补充 <no> <text>`: a reply asking the member for something; the resolution clock pauses."""
    return _reply(ctx, wait=True)


@staff_only
def staff_transfer(ctx: Context) -> str:
    """`转交 <no> <staff id>`: reassign, with an alert to the new assignee (refused for staff without WeChat)."""
    parts = ctx.args.split()
    if len(parts) != 2:
        return ctx.text("staff_transfer_usage")
    try:
        with ctx.db.write() as session:
            ticket = complaints.transfer(session, ctx.rules, ctx.now, ctx.staff, parts[0], parts[1])
            target = session.get(complaints.Staff, ticket.assignee_id)
            return ctx.text("staff_transferred", ticket_no=ticket.number, staff_id=target.id, staff_name=target.name)
    except TicketError as exc:
        return _refused(ctx, exc)


@staff_only
def staff_resolve(ctx: Context) -> str:
    """`解决 <no> <summary>`: resolved once; the member gets the summary (and one request to rate)."""
    number, _, summary = ctx.args.strip().partition(" ")
    if not number or not summary.strip():
        return ctx.text("staff_resolve_usage")
    try:
        with ctx.db.write() as session:
            ticket = complaints.staff_ticket(session, ctx.staff, number)
            member = session.get(complaints.Member, ticket.member_id)
            ticket, asked = complaints.resolve(session, ctx.rules, ctx.now, ctx.staff, number, summary,
                                               window_open=_window_open(ctx, member.openid))
            return ctx.text("staff_resolved", ticket_no=ticket.number,
                            rating_note="，并请会员评价" if asked else "")
    except TicketError as exc:
        return _refused(ctx, exc)


@staff_only
def staff_clients(ctx: Context) -> str:
    """`我的客户`: my key accounts with tier, last purchase, a birthday within 30 days, open tickets."""
    rules = ctx.rules
    with ctx.db.read() as session:
        clients = complaints.my_clients(session, rules, ctx.staff, ctx.today)
    if not clients:
        return ctx.text("staff_clients_empty")
    lines = [ctx.text("staff_clients_line", name=c.member.name, tier=rules.tier(c.member.tier).name,
                      card_no=c.member.card_no,
                      last_purchase=f"{c.last_purchase.astimezone(rules.zone):%Y-%m-%d}" if c.last_purchase else "无",
                      birthday=(f"，{c.birthday_in} 天后生日" if c.birthday_in else "，今天生日")
                      if c.birthday_in is not None else "",
                      open=f"，未结工单 {c.open_tickets}" if c.open_tickets else "") for c in clients]
    return "\n".join([ctx.text("staff_clients_header", count=len(clients)), *lines])


@staff_only
def staff_callbacks(ctx: Context) -> str:
    """`回访`: my open call-back tasks by due time."""
    rules = ctx.rules
    with ctx.db.read() as session:
        rows = complaints.staff_callbacks(session, ctx.staff)
    if not rows:
        return ctx.text("staff_callbacks_empty")
    reasons = {"first_purchase": "首次购买", "resolved": "投诉解决"}
    lines = [ctx.text("staff_callbacks_line", callback_no=c.id, name=m.name, tier=rules.tier(m.tier).name,
                      phone=m.phone, reason=reasons.get(c.reason, c.reason),
                      due=complaints.local_text(rules, c.due_at), overdue="（已逾期）" if c.due_at <= ctx.now else "")
             for c, m in rows]
    return "\n".join([ctx.text("staff_callbacks_header", count=len(rows)), *lines])


@staff_only
def staff_callback_done(ctx: Context) -> str:
    """`已回访 <no> <note>`."""
    number, _, note = ctx.args.strip().partition(" ")
    try:
        with ctx.db.write() as session:
            callback = complaints.close_callback(session, ctx.now, ctx.staff, number, note)
            return ctx.text("staff_callback_done", callback_no=callback.id)
    except TicketError as exc:
        return _refused(ctx, exc)

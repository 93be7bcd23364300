"""Complaints, the member's side: 投诉 (a dialog), 我的投诉, 补充, 评价, 人工客服, and media during a complaint."""
from __future__ import annotations

from typing import Any

from bot.context import Context
from bot.dialogs import Ask, Flow, Invalid
from bot.guards import member_required
from handlers import help
from storage import complaints, members
from storage.complaints import Added, TicketError

STATUS_NAMES = {"open": "处理中", "waiting": "待您补充", "resolved": "已解决"}


def _categories(ctx: Context) -> str:
    return "\n".join(f"{n}. {name}" for n, name in enumerate(ctx.rules.complaints.categories, 1))


def _request_key(ctx: Context, kind: str) -> str:
    """What makes a WeChat retry of the same message open nothing new (even without Redis)."""
    data = ctx.message._data
    return f"{kind}:{ctx.openid}:{data.get('MsgId') or data.get('CreateTime')}"[:96]


def _who(ctx: Context, session, ticket, member) -> str:
    """Who will answer, as the member is told: their account manager only when the ticket is theirs."""
    return ctx.text(f"complaint_who_{complaints.who_answers(session, ticket, member)}")


def _complaint_flow(ctx: Context) -> Flow:
    cfg = ctx.rules.complaints

    def read_category(text: str) -> dict[str, Any]:
        category = cfg.category(text)
        if category is None:
            raise Invalid("complaint_bad_category")
        return {"category": category}

    def read_description(text: str) -> dict[str, Any]:
        if not text.strip():
            raise Invalid("complaint_prompt_description")
        if len(text.strip()) > cfg.description_max:
            raise Invalid("complaint_too_long", limit=cfg.description_max)
        return {"description": text.strip()}

    return Flow("complaint", (Ask("category", "complaint_prompt_category", read_category),
                              Ask("description", "complaint_prompt_description", read_description)),
                finish=_open_complaint, confirm="complaint_confirm")


def _open_complaint(ctx: Context, answers: dict[str, Any]) -> str:
    with ctx.db.write() as session:
        member = members.find_by_openid(session, ctx.openid)
        opened = complaints.open_ticket(session, ctx.rules, ctx.now, member, answers["category"],
                                        answers["description"], _request_key(ctx, "complaint"),
                                        media=answers.get("media") or [])
        ticket = opened.ticket
        return ctx.text("complaint_opened", ticket_no=ticket.number, who=_who(ctx, session, ticket, member),
                        response_due=complaints.local_text(ctx.rules, ticket.response_due_at),
                        resolution_due=complaints.local_text(ctx.rules, ticket.resolution_due_at))


@member_required
def complaint(ctx: Context) -> str | None:
    """`投诉` asks category, description and a confirmation; `投诉 <category> <text>` or `投诉 <text>` skip
    the questions they answer."""
    cfg = ctx.rules.complaints
    given: dict[str, Any] = {"categories": _categories(ctx), "media_note": ""}
    args = ctx.args.strip()
    if args and (ctx.dialog.state is None or ctx.dialog.state.get("handler") != "complaint"):
        first, _, rest = args.partition(" ")
        category = cfg.category(first)
        if category is not None:
            given["category"] = category
            args = rest.strip()
        if args:
            if len(args) > cfg.description_max:
                return ctx.text("complaint_too_long", limit=cfg.description_max)
            given["description"] = args
    return _complaint_flow(ctx).handle(ctx, **given)


def complaint_media(ctx: Context) -> str:
    """An image or a voice message during a complaint dialog is attached to it; otherwise the usual answer."""
    state = ctx.dialog.state
    if state is None or state.get("handler") != "complaint":
        return help.media_received(ctx)
    message = ctx.message
    kind = message.type
    if kind not in ("image", "voice"):
        return help.media_received(ctx)
    ref = f"{kind}:{getattr(message, 'media_id', '')}"
    if kind == "image" and getattr(message, "image", None):
        ref += f" {message.image}"
    data = dict(state["data"])
    media = list(data.get("media") or [])
    if len(media) < 9:
        media.append(ref[:512])
    data["media"] = media
    data["media_note"] = f"\n附件：{len(media)} 个"
    ctx.dialog.start("complaint", state["step"], **data)
    return ctx.text("complaint_media_attached")


@member_required
def my_complaints(ctx: Context) -> str:
    """`我的投诉` lists the member's tickets; `我的投诉 <no>` shows one with its thread."""
    rules = ctx.rules
    with ctx.db.read() as session:
        if ctx.args.strip():
            try:
                ticket = complaints.member_ticket(session, ctx.member.id, ctx.args.split()[0])
            except TicketError as exc:
                return ctx.text(exc.message, **exc.values)
            lines = [ctx.text("complaint_thread_line", at=complaints.local_text(rules, e.at),
                              who="您" if e.actor.startswith("member:") else "客服", body=_member_body(e))
                     for e in complaints.thread(session, ticket, complaints.MEMBER_VISIBLE)]
            return ctx.text("complaint_detail", ticket_no=ticket.number, category=ticket.category,
                            status=STATUS_NAMES[ticket.status], thread="\n".join(lines))
        tickets = complaints.member_tickets(session, ctx.member.id)
    if not tickets:
        return ctx.text("complaint_list_empty")
    lines = [ctx.text("complaint_list_line", ticket_no=t.number, category=t.category, status=STATUS_NAMES[t.status],
                      opened=complaints.local_text(rules, t.opened_at)) for t in tickets]
    return "\n".join([ctx.text("complaint_list_header", count=len(tickets)), *lines])


def _member_body(event) -> str:
    if event.kind == "waiting":
        return "等待您补充信息"
    if event.kind == "resolved":
        return f"已解决：{event.body}"
    return complaints.excerpt(event.body or "", 200)


@member_required
def complaint_add(ctx: Context) -> str:
    """`补充 <no> <text>` adds to an open ticket (or reopens one resolved within reopen_days)."""
    number, _, text = ctx.args.strip().partition(" ")
    if not number or not text.strip():
        return ctx.text("complaint_add_usage")
    try:
        with ctx.db.write() as session:
            ticket, outcome = complaints.add_note(session, ctx.rules, ctx.now, ctx.member.id, number, text.strip())
            if outcome is Added.REOPENED:
                return ctx.text("complaint_reopened", ticket_no=ticket.number,
                                resolution_due=complaints.local_text(ctx.rules, ticket.resolution_due_at))
            return ctx.text("complaint_added", ticket_no=ticket.number)
    except TicketError as exc:
        return ctx.text(exc.message, **exc.values)


def _score(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) == 1 and 1 <= int(text) <= 5 else None


def _rate(ctx: Context, ticket, score: int, comment: str | None) -> str:
    with ctx.db.write() as session:
        ticket = session.merge(ticket)
        outcome = complaints.rate(session, ctx.rules, ctx.now, ctx.member.id, ticket, score, comment)
        return ctx.text(outcome.value, ticket_no=ticket.number, rating=score)


@member_required
def rate(ctx: Context) -> str:
    """`评价 <no> <1-5> [comment]`."""
    parts = ctx.args.strip().split(maxsplit=2)
    if len(parts) < 2:
        return ctx.text("rate_usage")
    score = _score(parts[1])
    if score is None:
        return ctx.text("rate_out_of_range")
    with ctx.db.read() as session:
        try:
            ticket = complaints.member_ticket(session, ctx.member.id, parts[0])
        except TicketError as exc:
            return ctx.text(exc.message, **exc.values)
    return _rate(ctx, ticket, score, parts[2].strip() if len(parts) > 2 else None)


def complaint_fallback(ctx: Context) -> str:
    """A lone digit answers the latest request to rate; any other text gets the usual hint."""
    score = _score(ctx.args.strip())
    if score is not None and ctx.member is not None:
        with ctx.db.read() as session:
            ticket = complaints.awaiting_rating(session, ctx.rules, ctx.now, ctx.member.id)
        if ticket is not None:
            return _rate(ctx, ticket, score, None)
    return help.unknown_text(ctx)


@member_required
def human(ctx: Context) -> str:
    """`人工客服`: a conversation handed to the account manager or the service desk like a ticket (咨询)."""
    cfg = ctx.rules.complaints
    with ctx.db.write() as session:
        member = members.find_by_openid(session, ctx.openid)
        ticket = complaints.open_human_ticket(session, member.id)
        if ticket is not None:
            return ctx.text("human_already", ticket_no=ticket.number, who=_who(ctx, session, ticket, member))
        text = ctx.args.strip() or "会员请求人工客服"
        ticket = complaints.open_ticket(session, ctx.rules, ctx.now, member, cfg.human_category, text,
                                        _request_key(ctx, "human"), kind="human").ticket
        return ctx.text("human_opened", ticket_no=ticket.number, who=_who(ctx, session, ticket, member),
                        response_due=complaints.local_text(ctx.rules, ticket.response_due_at))


"""The push outbox: every push is a row with a unique (job, occasion, recipient) key.

Jobs plan an audience with one INSERT ... SELECT that ignores rows already there, so a
rerun, a crash or a second scheduler never plans anyone twice. Senders claim pending rows
('sending'), note each call in its row before making it (``start_calls``), and mark them
with the outcome. Members who may not get marketing are planned as
'skipped' with the reason, so `push status` can say why. WeChat's TEMPLATESENDJOBFINISH
event settles a sent or in-doubt row: 'delivered', or 'failed' with WeChat's status.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import BigInteger, Select, and_, bindparam, case, cast, false, func, literal, or_, select, true, update
from sqlalchemy import String as SqlString
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage import members
from storage.models import JobRun, Member, OutboxMessage, Staff, UTCDateTime

COLUMNS = ["job", "occasion", "recipient", "member_id", "staff_id", "openid", "message", "marketing",
           "tier", "extra", "status", "reason"]


def marketing_skip_reason():
    """Why a member gets no marketing push (None: they do). DOMAIN.md: Pushes."""
    return case(
        (Member.openid.is_(None), "not bound"),
        (Member.subscribed.is_(false()), "unfollowed"),
        (Member.opted_out.is_(true()), "opted out"),
        (Member.unreachable.is_(true()), "unreachable"),
        (Member.segment == "lapsed", "lapsed"),
        else_=None,
    )


@dataclass(frozen=True)
class Audience:
    """Who gets which message for one occasion of a job, as a SELECT of outbox columns."""

    job: str
    occasion: str
    rows: Select


def service_skip_reason():
    """Why a member cannot get a push they asked for (a booking, a redemption): None when they can."""
    return case(
        (Member.openid.is_(None), "not bound"),
        (Member.subscribed.is_(false()), "unfollowed"),
        (Member.unreachable.is_(true()), "unreachable"),
        else_=None,
    )


def member_audience(job: str, occasion: str, where, message, extra: str | None = None, extra_sql=None,
                    marketing: bool = True) -> Audience:
    """Members matching ``where`` get ``message`` (a name, or a SQL expression choosing one).

    ``marketing`` False: service messages about what the member did themselves, not held by
    quiet hours, opt-out or lapsing.
    """
    reason = marketing_skip_reason() if marketing else service_skip_reason()
    extra_value = extra_sql if extra_sql is not None else literal(extra, SqlString)
    rows = select(
        literal(job).label("job"),
        literal(occasion).label("occasion"),
        (literal("member:") + cast(Member.id, SqlString)).label("recipient"),
        Member.id.label("member_id"),
        literal(None, SqlString).label("staff_id"),
        Member.openid.label("openid"),
        (literal(message) if isinstance(message, str) else message).label("message"),
        literal(marketing).label("marketing"),
        Member.tier.label("tier"),
        extra_value.label("extra"),
        case((reason.is_(None), "pending"), else_="skipped").label("status"),
        reason.label("reason"),
    ).where(where)
    return Audience(job, occasion, rows)


def staff_alert_audience(job: str, occasion: str, where, message: str) -> Audience:
    """Alerts to the account managers of the members matching ``where`` (not marketing)."""
    reason = case((Staff.openid.is_(None), "manager has no openid"), else_=None)
    rows = (
        select(
            literal(job).label("job"),
            literal(occasion).label("occasion"),
            (literal("staff:") + Staff.id + literal(":member:") + cast(Member.id, SqlString)).label("recipient"),
            Member.id.label("member_id"),
            Staff.id.label("staff_id"),
            Staff.openid.label("openid"),
            literal(message).label("message"),
            literal(False).label("marketing"),
            Member.tier.label("tier"),
            literal(None, SqlString).label("extra"),
            case((reason.is_(None), "pending"), else_="skipped").label("status"),
            reason.label("reason"),
        )
        .join(Staff, Staff.id == Member.manager_id)
        .where(where)
    )
    return Audience(job, occasion, rows)


def insert_audience(session: Session, audience: Audience, now: datetime) -> int:
    """Plan the audience into the outbox at ``now``; rows already planned are left alone. Returns rows added."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(OutboxMessage)
        .from_select([*COLUMNS, "created_at"], audience.rows.add_columns(literal(now, UTCDateTime).label("created_at")))
        .on_conflict_do_nothing(index_elements=["job", "occasion", "recipient"])
    )
    return session.execute(statement).rowcount or 0


AT_ONCE = "outbox_at_once"  # session.info: rows this transaction planned to send the moment it commits


def enqueue_member_push(session: Session, job: str, occasion: str, member_id: int, message: str, *,
                        now: datetime, extra: str | None = None, marketing: bool = True,
                        at_once: bool = False) -> bool:
    """Plan one push to one member (a waitlist promotion, an expired code...); once per occasion.

    ``marketing`` False: something the member asked for themselves, not held by quiet hours,
    opt-out or lapsing (see ``member_audience``). ``at_once``: see ``take_at_once``. Returns True
    when planned now, False when this occasion was already planned for them.
    """
    audience = member_audience(job, occasion, Member.id == member_id, message, extra=extra, marketing=marketing)
    return _plan_one(session, audience, now, at_once)


def enqueue_staff_push(session: Session, job: str, occasion: str, staff_id: str, message: str, *,
                       now: datetime, member_id: int | None = None, extra: str | None = None,
                       at_once: bool = False) -> bool:
    """Plan one alert to one staff member (never held by quiet hours); once per occasion.

    ``member_id`` names the member it is about, whose data the text may use. ``at_once``: see
    ``take_at_once``. Returns True when planned now.
    """
    reason = case((Staff.openid.is_(None), "staff has no openid"), else_=None)
    recipient = f"staff:{staff_id}" + (f":member:{member_id}" if member_id is not None else "")
    rows = select(
        literal(job).label("job"),
        literal(occasion).label("occasion"),
        literal(recipient).label("recipient"),
        literal(member_id, BigInteger).label("member_id"),
        Staff.id.label("staff_id"),
        Staff.openid.label("openid"),
        literal(message).label("message"),
        literal(False).label("marketing"),
        literal(None, SqlString).label("tier"),
        literal(extra, SqlString).label("extra"),
        case((reason.is_(None), "pending"), else_="skipped").label("status"),
        reason.label("reason"),
    ).where(Staff.id == staff_id)
    return _plan_one(session, Audience(job, occasion, rows), now, at_once)


def _plan_one(session: Session, audience: Audience, now: datetime, at_once: bool) -> bool:
    if not insert_audience(session, audience, now):
        return False
    if at_once:
        planned = audience.rows.subquery()
        session.info.setdefault(AT_ONCE, []).extend(session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.job == audience.job, OutboxMessage.occasion == audience.occasion,
            OutboxMessage.recipient.in_(select(planned.c.recipient)), OutboxMessage.status == "pending")))
    return True


def take_at_once(session: Session) -> list[int]:
    """The rows planned ``at_once`` by this session's transaction (once: they are forgotten here). Its
    process sends them right after the commit (``Database.after_write``, ``scheduler.at_once``); the
    drain sends any it could not."""
    return session.info.pop(AT_ONCE, [])


def find_push(session: Session, job: str, occasion: str) -> OutboxMessage | None:
    """The push planned for (job, occasion), when the occasion names one recipient (a reply: ticket and event)."""
    return session.scalar(select(OutboxMessage).where(OutboxMessage.job == job, OutboxMessage.occasion == occasion)
                          .order_by(OutboxMessage.id).limit(1))


@dataclass(frozen=True)
class PreviewLine:
    tier: str | None
    message: str
    status: str
    reason: str | None
    count: int


def preview_audience(session: Session, audience: Audience) -> list[PreviewLine]:
    """How many would get what, per tier, without writing anything."""
    rows = audience.rows.subquery()
    counts = session.execute(
        select(rows.c.tier, rows.c.message, rows.c.status, rows.c.reason, func.count())
        .group_by(rows.c.tier, rows.c.message, rows.c.status, rows.c.reason)
        .order_by(rows.c.tier, rows.c.message, rows.c.status, rows.c.reason)
    )
    return [PreviewLine(*row) for row in counts]


def sample_audience(session: Session, audience: Audience, count: int = 3) -> list[dict]:
    """A few planned rows that would be sent, as dicts of outbox columns."""
    rows = audience.rows.subquery()
    picked = session.execute(select(rows).where(rows.c.status == "pending").limit(count))
    return [dict(row._mapping) for row in picked]


# --------------------------------------------------------------------------- sending


def _skip_locked(session: Session, query: Select) -> Select:
    """``query`` taking row locks and passing over rows another transaction holds (PostgreSQL); SQLite's
    write lock already serialises the writers."""
    return query.with_for_update(skip_locked=True) if session.get_bind().dialect.name == "postgresql" else query


def claim(session: Session, limit: int, claim_id: str, marketing_allowed: bool, now: datetime,
          only: Sequence[int] | None = None) -> list[int]:
    """Mark up to ``limit`` pending rows (of ``only``, if given) as this sender's; no two senders get the same row."""
    query = select(OutboxMessage.id).where(OutboxMessage.status == "pending")
    if only is not None:
        query = query.where(OutboxMessage.id.in_(list(only)))
    if not marketing_allowed:
        query = query.where(OutboxMessage.marketing.is_(false()))
    ids = list(session.scalars(_skip_locked(session, query.order_by(OutboxMessage.id).limit(limit))))
    if ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "pending")
            .values(status="sending", claim=claim_id, claimed_at=now, call_started_at=None)
            .execution_options(synchronize_session=False)
        )
    return ids


_outbox = OutboxMessage.__table__
# Built once: a sender writes these for every push, and building the statement costs more than running it.
_START_CALLS = (
    update(_outbox)
    .where(_outbox.c.id.in_(bindparam("ids", expanding=True)), _outbox.c.claim == bindparam("claim_id"),
           _outbox.c.status == "sending")
    .values(call_started_at=bindparam("started"), channel=bindparam("call_channel"))
    .returning(_outbox.c.id)
)
_FORGET_CALLS = (
    update(_outbox)
    .where(_outbox.c.id.in_(bindparam("ids", expanding=True)), _outbox.c.claim == bindparam("claim_id"),
           _outbox.c.status == "sending")
    .values(call_started_at=None)
)
_settled = _outbox.c.settled_at.is_not(None)
_RECORD_OUTCOME = (
    update(_outbox)
    .where(_outbox.c.id == bindparam("row_id"), _outbox.c.claim == bindparam("row_claim"))
    .values(status=case((_settled, _outbox.c.status), else_=bindparam("new_status", type_=SqlString)),
            reason=case((_settled, _outbox.c.reason), else_=bindparam("new_reason", type_=SqlString)),
            channel=bindparam("new_channel"),
            msgid=func.coalesce(_outbox.c.msgid, bindparam("new_msgid", type_=SqlString)),
            attempts=_outbox.c.attempts + bindparam("tries"), sent_at=bindparam("when"), claim=None)
)


def start_calls(session: Session, calls: Mapping[int, str], claim_id: str, now: datetime) -> set[int]:
    """Note that WeChat is about to be called for these rows (id -> channel); returns those still
    this sender's, the only ones it may call. Committed before the calls: from then on a crash
    leaves the row in doubt, never pending. A row recovered meanwhile (its sender taken for dead)
    is not noted, so it is never called by two senders."""
    by_channel: dict[str, list[int]] = {}
    for push_id, channel in calls.items():
        by_channel.setdefault(channel, []).append(push_id)
    connection = session.connection()
    return {push_id for channel, ids in by_channel.items() for push_id in connection.execute(
        _START_CALLS, {"ids": ids, "claim_id": claim_id, "started": now, "call_channel": channel}).scalars()}


def forget_calls(session: Session, ids: Sequence[int], claim_id: str) -> None:
    """WeChat's answer proved it did not take these calls (busy, over quota, 5xx, window closed): the
    rows are untried again, so a crash now sends them later instead of leaving them in doubt."""
    if ids:
        session.connection().execute(_FORGET_CALLS, {"ids": list(ids), "claim_id": claim_id})


def stale_claimants(session: Session, older_than: datetime) -> list[str]:
    """Senders holding rows claimed before ``older_than`` (dead, or alive but slow)."""
    return list(session.scalars(
        select(OutboxMessage.claim).distinct()
        .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < older_than)
    ))


IN_DOUBT_AFTER_STOP = "the sender stopped during the call: maybe delivered, not sent again"


def recover_claims(session: Session, older_than: datetime, claims: Sequence[str]) -> tuple[int, int]:
    """The rows that (dead) senders claimed before ``older_than`` and still hold: those never handed to
    WeChat go back to pending, those whose call had started become 'unknown' (in doubt: the message
    may have arrived). Returns (back to pending, in doubt).

    Only the database decides, so losing Redis loses nothing here. An in-doubt row keeps its claim:
    should its sender still be alive after all, the outcome it writes when the call returns counts.
    """
    held = and_(OutboxMessage.status == "sending", OutboxMessage.claimed_at < older_than,
                OutboxMessage.claim.in_(list(claims)))
    # Rows a sender is writing just now are left for the next drain: it is alive, and waiting for its
    # locks while it waits for ours could deadlock.
    ids = list(session.scalars(_skip_locked(session, select(OutboxMessage.id).where(held))))
    if not ids:
        return 0, 0
    held = and_(held, OutboxMessage.id.in_(ids))
    untried = session.execute(
        update(OutboxMessage).where(held, OutboxMessage.call_started_at.is_(None))
        .values(status="pending", reason=None, claim=None)
        .execution_options(synchronize_session=False)
    ).rowcount or 0
    in_doubt = session.execute(
        update(OutboxMessage).where(held, OutboxMessage.call_started_at.is_not(None))
        .values(status="unknown", reason=IN_DOUBT_AFTER_STOP)
        .execution_options(synchronize_session=False)
    ).rowcount or 0
    return untried, in_doubt


@dataclass(frozen=True)
class HeldClaim:
    """Rows a sender holds ('sending'), by claim: for saying what another sender still has."""

    claim: str
    count: int
    first_claimed: datetime
    last_claimed: datetime


def held_claims(session: Session) -> list[HeldClaim]:
    """Every sender's rows still in 'sending', grouped by claim."""
    rows = session.execute(
        select(OutboxMessage.claim, func.count(), func.min(OutboxMessage.claimed_at),
               func.max(OutboxMessage.claimed_at))
        .where(OutboxMessage.status == "sending")
        .group_by(OutboxMessage.claim)
    ).all()
    return [HeldClaim(*row) for row in rows if row[0]]


@dataclass(frozen=True)
class Outcome:
    id: int
    status: str  # sent | failed | unreachable | unknown (in doubt)
    reason: str | None
    channel: str | None
    attempts: int
    msgid: str | None = None  # what WeChat's answer carried (template messages)
    at: datetime | None = None  # when the call returned


def record_outcomes(session: Session, outcomes: Sequence[Outcome], now: datetime, claim_id: str) -> None:
    """Write what happened to each claimed row; members WeChat refused are marked unreachable.

    A row only takes the outcome of the sender that holds it (``claim_id``; it keeps holding a row
    it was taken for dead over, once its call had started). A row WeChat's finish event settled
    meanwhile keeps that status.
    """
    if not outcomes:
        return
    session.connection().execute(  # one executemany for the whole batch
        _RECORD_OUTCOME,
        [{"row_id": o.id, "row_claim": claim_id, "new_status": o.status, "new_reason": o.reason,
          "new_channel": o.channel, "new_msgid": o.msgid, "tries": o.attempts,
          "when": (o.at or now) if o.status == "sent" else None} for o in outcomes],
    )
    refused: dict[str | None, list[int]] = {}
    for o in outcomes:
        if o.status == "unreachable":
            refused.setdefault(o.reason, []).append(o.id)
    for reason, ids in refused.items():
        mark_unreachable(session, ids, now, reason)


def mark_unreachable(session: Session, ids: Sequence[int], now: datetime, reason: str | None) -> None:
    """The members of these rows (their own pushes, not staff alerts) refused the account's messages."""
    if ids:
        members.mark_unreachable(session, select(OutboxMessage.member_id).where(
            OutboxMessage.id.in_(ids), OutboxMessage.staff_id.is_(None)), reason, now)


# --------------------------------------------------------------------------- settling (WeChat's finish event)


@dataclass(frozen=True)
class Candidate:
    id: int
    status: str
    claim: str | None
    msgid: str | None
    settled: bool


def by_msgid(session: Session, msgid: str) -> Candidate | None:
    row = session.execute(
        select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.claim, OutboxMessage.msgid,
               OutboxMessage.settled_at.is_not(None))
        .where(OutboxMessage.msgid == msgid).order_by(OutboxMessage.id.desc()).limit(1)
    ).first()
    return Candidate(*row) if row else None


def settle_candidates(session: Session, openid: str, earliest: datetime, latest: datetime) -> list[Candidate]:
    """Template pushes to ``openid`` that may be the one a finish event reports though no msgid was
    recorded (the sender died or timed out during the call): in doubt, or 'sending' with the call
    started, claimed between ``earliest`` and ``latest``, the latest claim first (the closest before
    the event)."""
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.claim, OutboxMessage.msgid, false())
        .where(or_(OutboxMessage.status == "unknown",
                   and_(OutboxMessage.status == "sending", OutboxMessage.call_started_at.is_not(None))),
               OutboxMessage.openid == openid,
               OutboxMessage.msgid.is_(None), OutboxMessage.settled_at.is_(None),
               or_(OutboxMessage.channel.is_(None), OutboxMessage.channel == "template"),
               OutboxMessage.claimed_at >= earliest, OutboxMessage.claimed_at <= latest)
        .order_by(OutboxMessage.claimed_at.desc(), OutboxMessage.id.desc())
    ).all()
    return [Candidate(*row) for row in rows]


def settle(session: Session, row_id: int, delivered: bool, reason: str | None, msgid: str | None,
           now: datetime) -> bool:
    """Mark a row delivered (or failed, with WeChat's reason) once; True if this call settled it.

    A row still 'sending' keeps its claim, so its sender's batch write still records the call
    (attempts, msgid) without undoing the settlement.
    """
    done = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.settled_at.is_(None))
        .values(status="delivered" if delivered else "failed", reason=None if delivered else reason,
                settled_at=now, msgid=func.coalesce(OutboxMessage.msgid, literal(msgid, SqlString)))
        .execution_options(synchronize_session=False)
    ).rowcount
    return bool(done)


# --------------------------------------------------------------------------- in doubt: seeing and requeueing


@dataclass(frozen=True)
class ListedPush:
    id: int
    occasion: str
    recipient: str
    card_no: str | None
    name: str | None
    staff_id: str | None
    openid: str | None
    channel: str | None
    claimed_at: datetime | None
    reason: str | None


def pushes_with_status(session: Session, job: str, status: str, occasion: str | None = None) -> list[ListedPush]:
    """A job's pushes with ``status`` ('unknown': in doubt; 'failed'), with the member each is to or about."""
    query = (
        select(OutboxMessage.id, OutboxMessage.occasion, OutboxMessage.recipient, Member.card_no, Member.name,
               OutboxMessage.staff_id, OutboxMessage.openid, OutboxMessage.channel, OutboxMessage.claimed_at,
               OutboxMessage.reason)
        .outerjoin(Member, Member.id == OutboxMessage.member_id)
        .where(OutboxMessage.status == status, OutboxMessage.job == job)
        .order_by(OutboxMessage.occasion, Member.card_no, OutboxMessage.id)
    )
    if occasion is not None:
        query = query.where(OutboxMessage.occasion == occasion)
    return [ListedPush(*row) for row in session.execute(query)]


def requeue_unknown(session: Session, job: str, occasion: str | None = None, cards: Sequence[str] = (),
                    recipients: Sequence[str] = ()) -> int:
    """Put a job's in-doubt ('unknown') rows back to pending: an operator's call, never automatic.

    Only after checking that those messages did not arrive (e.g. no TEMPLATESENDJOBFINISH event):
    resending one that did would greet the member twice. ``cards`` (members' card numbers: their
    own pushes, not staff alerts about them) and ``recipients`` (outbox recipients, e.g.
    ``staff:M001:member:12``) narrow it to some rows; with neither, every row of the job.
    """
    where = [OutboxMessage.status == "unknown", OutboxMessage.job == job]
    if occasion is not None:
        where.append(OutboxMessage.occasion == occasion)
    if cards or recipients:
        chosen = []
        if cards:
            chosen.append(and_(OutboxMessage.staff_id.is_(None), OutboxMessage.member_id.in_(
                select(Member.id).where(Member.card_no.in_(list(cards))))))
        if recipients:
            chosen.append(OutboxMessage.recipient.in_(list(recipients)))
        where.append(or_(*chosen))
    return session.execute(
        update(OutboxMessage).where(*where).values(status="pending", reason=None, claim=None)
        .execution_options(synchronize_session=False)
    ).rowcount or 0


def requeue_failed(session: Session, ids: Sequence[int]) -> int:
    """Put these failed rows back to pending (an operator's choice: they failed for a passing reason)."""
    if not ids:
        return 0
    return session.execute(
        update(OutboxMessage).where(OutboxMessage.id.in_(list(ids)), OutboxMessage.status == "failed")
        .values(status="pending", reason=None, claim=None).execution_options(synchronize_session=False)
    ).rowcount or 0


# --------------------------------------------------------------------------- runs and status


def start_run(session: Session, job: str, occasion: str, runner: str, day: date, now: datetime) -> JobRun:
    run = JobRun(job=job, occasion=occasion, runner=runner, day=day, started_at=now)
    session.add(run)
    session.flush()
    return run


def ran_on(session: Session, job: str, day: date) -> bool:
    """Whether ``job`` has a completed run for ``day`` (scheduled, caught up or by hand): then it is not run again."""
    return session.scalar(select(JobRun.id).where(JobRun.job == job, JobRun.day == day,
                                                  JobRun.finished_at.is_not(None)).limit(1)) is not None


@dataclass(frozen=True)
class RunStatus:
    run: JobRun
    counts: list[tuple[str, str | None, int]]  # (status, reason, count)


def recent_runs(session: Session, now: datetime, per_job: int = 3) -> list[RunStatus]:
    """The latest runs of each job, with what became of the pushes each planned, by status and reason."""
    jobs = session.scalars(select(JobRun.job).distinct().order_by(JobRun.job)).all()
    out = []
    for job in jobs:
        runs = session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id.desc()).limit(per_job))
        for run in runs:
            planned_during_run = and_(
                OutboxMessage.job == job,
                OutboxMessage.created_at >= run.started_at,
                OutboxMessage.created_at <= (run.finished_at or now),
            )
            counts = session.execute(
                select(OutboxMessage.status, OutboxMessage.reason, func.count())
                .where(planned_during_run)
                .group_by(OutboxMessage.status, OutboxMessage.reason)
                .order_by(OutboxMessage.status, OutboxMessage.reason)
            ).all()
            out.append(RunStatus(run, [tuple(row) for row in counts]))
    return out


def extra_json(**values) -> str:
    """Per-push values for the text, stored with the row."""
    return json.dumps(values, ensure_ascii=False, default=str)

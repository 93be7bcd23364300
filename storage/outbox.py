"""The push outbox: every push is a row with a unique (job, occasion, recipient) key.

Jobs plan an audience with one INSERT ... SELECT that ignores rows already there, so a
rerun, a crash or a second scheduler never plans anyone twice. Senders claim pending rows
('sending'), send, and mark them. Members who may not get marketing are planned as
'skipped' with the reason, so `push status` can say why.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, bindparam, case, cast, false, func, literal, select, true, update
from sqlalchemy import String as SqlString
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import JobRun, Member, OutboxMessage, Staff, utcnow

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


def member_audience(job: str, occasion: str, where, message, extra: str | None = None, extra_sql=None) -> Audience:
    """Members matching ``where`` get ``message`` (a name, or a SQL expression choosing one)."""
    reason = marketing_skip_reason()
    extra_value = extra_sql if extra_sql is not None else literal(extra, SqlString)
    rows = select(
        literal(job).label("job"),
        literal(occasion).label("occasion"),
        (literal("member:") + cast(Member.id, SqlString)).label("recipient"),
        Member.id.label("member_id"),
        literal(None, SqlString).label("staff_id"),
        Member.openid.label("openid"),
        (literal(message) if isinstance(message, str) else message).label("message"),
        literal(True).label("marketing"),
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


def insert_audience(session: Session, audience: Audience) -> int:
    """Plan the audience into the outbox; rows already planned are left alone. Returns rows added."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(OutboxMessage)
        .from_select(COLUMNS, audience.rows)
        .on_conflict_do_nothing(index_elements=["job", "occasion", "recipient"])
    )
    return session.execute(statement).rowcount or 0


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


def claim(session: Session, limit: int, claim_id: str, marketing_allowed: bool, now: datetime) -> list[int]:
    """Mark up to ``limit`` pending rows as this sender's; no two senders get the same row."""
    query = select(OutboxMessage.id).where(OutboxMessage.status == "pending")
    if not marketing_allowed:
        query = query.where(OutboxMessage.marketing.is_(false()))
    query = query.order_by(OutboxMessage.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)  # SQLite: the write lock serialises claims
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), OutboxMessage.status == "pending")
            .values(status="sending", claim=claim_id, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def stale_claimants(session: Session, older_than: datetime) -> list[str]:
    """Senders holding rows claimed before ``older_than`` (dead, or alive but slow)."""
    return list(session.scalars(
        select(OutboxMessage.claim).distinct()
        .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < older_than)
    ))


def stale_claims(session: Session, older_than: datetime, claims: Sequence[str], limit: int = 1000) -> list[int]:
    """Rows claimed before ``older_than`` by the given (dead) senders."""
    return list(session.scalars(
        select(OutboxMessage.id)
        .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < older_than,
               OutboxMessage.claim.in_(claims))
        .order_by(OutboxMessage.id).limit(limit)
    ))


def release(session: Session, ids: Sequence[int], status: str, reason: str | None = None) -> None:
    if ids:
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.status == "sending")
            .values(status=status, reason=reason, claim=None)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True)
class Outcome:
    id: int
    status: str  # sent | failed | unreachable | pending (retry later)
    reason: str | None
    channel: str | None
    attempts: int


def record_outcomes(session: Session, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Write what happened to each claimed row; members WeChat refused are marked unreachable."""
    table = OutboxMessage.__table__
    if outcomes:
        session.connection().execute(  # one executemany for the whole batch
            update(table).where(table.c.id == bindparam("row_id")).values(
                status=bindparam("new_status"), reason=bindparam("new_reason"), channel=bindparam("new_channel"),
                attempts=table.c.attempts + bindparam("tries"), sent_at=bindparam("when"), claim=None),
            [{"row_id": o.id, "new_status": o.status, "new_reason": o.reason, "new_channel": o.channel,
              "tries": o.attempts, "when": now if o.status == "sent" else None} for o in outcomes],
        )
    refused = [o.id for o in outcomes if o.status == "unreachable"]
    if refused:
        session.execute(
            update(Member)
            .where(Member.id.in_(select(OutboxMessage.member_id).where(
                OutboxMessage.id.in_(refused), OutboxMessage.staff_id.is_(None))))
            .values(unreachable=True)
            .execution_options(synchronize_session=False)
        )


def requeue_unknown(session: Session, job: str, occasion: str | None = None) -> int:
    """Put a job's in-doubt ('unknown') rows back to pending: an operator's call, never automatic.

    Only after checking that those messages did not arrive (e.g. no TEMPLATESENDJOBFINISH event):
    resending one that did would greet the member twice.
    """
    where = [OutboxMessage.status == "unknown", OutboxMessage.job == job]
    if occasion is not None:
        where.append(OutboxMessage.occasion == occasion)
    return session.execute(
        update(OutboxMessage).where(*where).values(status="pending", reason=None, claim=None)
        .execution_options(synchronize_session=False)
    ).rowcount or 0


# --------------------------------------------------------------------------- runs and status


def start_run(session: Session, job: str, occasion: str, runner: str) -> JobRun:
    run = JobRun(job=job, occasion=occasion, runner=runner)
    session.add(run)
    session.flush()
    return run


@dataclass(frozen=True)
class RunStatus:
    run: JobRun
    counts: list[tuple[str, str | None, int]]  # (status, reason, count)


def recent_runs(session: Session, per_job: int = 3) -> list[RunStatus]:
    """The latest runs of each job, with what became of the pushes each planned, by status and reason."""
    jobs = session.scalars(select(JobRun.job).distinct().order_by(JobRun.job)).all()
    out = []
    for job in jobs:
        runs = session.scalars(select(JobRun).where(JobRun.job == job).order_by(JobRun.id.desc()).limit(per_job))
        for run in runs:
            planned_during_run = and_(
                OutboxMessage.job == job,
                OutboxMessage.created_at >= run.started_at,
                OutboxMessage.created_at <= (run.finished_at or utcnow()),
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

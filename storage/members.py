"""Members: lookup, binding a WeChat openid to a card, following state, and imports from the stores."""
from __future__ import annotations

import enum
import io
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import redis as redis_lib
from sqlalchemy import Select, bindparam, false, func, insert, literal, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rules import BotError, Rules
from rules.membership import BindingRules
from storage import ledger
from storage.csvfile import CsvTable, bad_character
from storage.models import Member, MemberChange, Staff
from storage.reads import PreparedRead, Reads
from storage.redis import Keys

log = logging.getLogger(__name__)

CSV_COLUMNS = ("card_no", "name", "phone", "birthday", "tier", "points", "manager", "spend", "spend_since")


def normalise_phone(phone: str) -> str:
    """Digits only, without a leading +86 / 0086 country code."""
    digits = re.sub(r"\D", "", phone)
    for code in ("0086", "86"):
        if digits.startswith(code) and len(digits) - len(code) == 11:
            return digits[len(code):]
    return digits


def birthday_key(birthday: date | None) -> int | None:
    """month * 100 + day, the indexed column that finds a day's birthdays."""
    return None if birthday is None else birthday.month * 100 + birthday.day


def record_change(session: Session, member_id: int, action: str, actor: str, detail: str | None = None, *,
                  now: datetime) -> None:
    session.add(MemberChange(member_id=member_id, action=action, actor=actor, detail=detail, at=now))


def record_changes(session: Session, where, action: str, actor: str, detail, *, now: datetime) -> None:
    """``record_change`` for every member matching ``where``, in one INSERT … SELECT; ``detail`` is a SQL
    expression over the member's columns."""
    session.execute(insert(MemberChange).from_select(
        ["member_id", "action", "actor", "detail", "at"],
        select(Member.id, literal(action), literal(actor), detail, literal(now, MemberChange.at.type)).where(where)))


_BY_OPENID = select(Member).where(Member.openid == bindparam("openid"))  # built once: every message asks


def find_by_openid(session: Session, openid: str) -> Member | None:
    return session.scalar(_BY_OPENID, {"openid": openid})


_ROW_BY_OPENID = PreparedRead(select(Member.__table__).where(Member.__table__.c.openid == bindparam("openid")))


def member_row(reads: Reads, openid: str) -> tuple | None:
    """The member bound to ``openid`` as a read-only row (no ORM object: this runs on every message)."""
    return reads.first(_ROW_BY_OPENID, openid=openid)


_STAFF_BY_OPENID = PreparedRead(select(Staff.__table__).where(Staff.__table__.c.openid == bindparam("openid")))


def staff_row(reads: Reads, openid: str) -> tuple | None:
    """The staff member whose WeChat is ``openid``, as a read-only row."""
    return reads.first(_STAFF_BY_OPENID, openid=openid)


def find_by_card(session: Session, card_no: str) -> Member | None:
    return session.scalar(select(Member).where(Member.card_no == card_no.strip().upper()))


# --------------------------------------------------------------------------- binding


class BindOutcome(enum.Enum):
    BOUND = "bound"
    ALREADY_BOUND = "already_bound"  # this openid is bound to a card already
    CARD_TAKEN = "card_taken"  # the card is bound to another openid
    NO_MATCH = "no_match"  # no member has this card and phone
    STAFF = "staff"  # this openid is a staff member's (a member's account is never a staff account too)


def bind_member(session: Session, openid: str, card_no: str, phone: str, *,
                now: datetime) -> tuple[BindOutcome, Member | None]:
    """Link ``openid`` to the member with this card and phone: one openid per member and vice versa,
    and never an openid bound to staff (员工绑定 refuses a member's openid the same way)."""
    current = find_by_openid(session, openid)
    if current is not None:
        return BindOutcome.ALREADY_BOUND, current
    if is_staff_openid(session, openid):
        return BindOutcome.STAFF, None
    member = find_by_card(session, card_no)
    if member is None or normalise_phone(member.phone) != normalise_phone(phone):
        return BindOutcome.NO_MATCH, None
    if member.openid is not None:
        return BindOutcome.CARD_TAKEN, None
    try:
        with session.begin_nested():
            # Conditional: a concurrent bind of the same card loses here, not later.
            result = session.execute(
                update(Member)
                .where(Member.id == member.id, Member.openid.is_(None))
                .values(openid=openid, bound_at=now, subscribed=True)
                .execution_options(synchronize_session=False)
            )
    except IntegrityError:  # the openid was bound to another card at the same moment
        return BindOutcome.ALREADY_BOUND, find_by_openid(session, openid)
    if result.rowcount != 1:
        return BindOutcome.CARD_TAKEN, None
    session.refresh(member)
    record_change(session, member.id, "bind", f"openid:{openid}", now=now)
    log.info("bind: %s bound to card %s", mask_openid(openid), member.card_no)
    return BindOutcome.BOUND, member


def is_staff_openid(session: Session, openid: str) -> bool:
    """Whether ``openid`` is bound to a staff account."""
    return session.scalar(select(Staff.id).where(Staff.openid == openid).limit(1)) is not None


# The bind lockout lives in Redis. Without Redis it is not enforced (logged): members can still
# bind, and a wrong pair is still refused without saying which part was wrong.


def bind_lockout_minutes(redis: redis_lib.Redis, keys: Keys, openid: str) -> int:
    """Minutes left of this openid's lockout from binding (0: not locked out)."""
    try:
        ttl = redis.ttl(keys("bindlock", openid))
    except redis_lib.RedisError:
        log.warning("Redis unavailable: the bind lockout is not checked")
        return 0
    return -(-ttl // 60) if ttl and ttl > 0 else 0


def mask_openid(openid: str) -> str:
    """An openid as logs show it: enough to tell two apart, not enough to address a message."""
    return f"{openid[:4]}…{openid[-4:]}" if len(openid) > 10 else "…"


def record_bind_failure(redis: redis_lib.Redis, keys: Keys, openid: str, binding: BindingRules,
                        card_no: str = "") -> int | None:
    """Count a wrong card/phone pair; ``max_failures`` within the window lock the openid out for it.

    Returns the tries left before the lockout (0: locked out now), or None when Redis cannot count.
    """
    counter = keys("bindfail", openid)
    try:
        pipe = redis.pipeline()
        pipe.incr(counter)
        pipe.expire(counter, binding.lockout_seconds, nx=True)
        if card_no:  # an operator asked by the member may unlock by the card they tried
            tried = keys("bindtried", card_no.strip().upper()[:32])
            pipe.sadd(tried, openid)
            pipe.expire(tried, binding.lockout_seconds)
        failures = pipe.execute()[0]
        if failures >= binding.max_failures:
            redis.set(keys("bindlock", openid), 1, ex=binding.lockout_seconds)
            log.warning("bind lockout: %s after %d wrong card/phone pairs", mask_openid(openid), failures)
    except redis_lib.RedisError:
        log.warning("Redis unavailable: a failed bind was not counted")
        return None
    log.info("bind refused: %s, wrong card/phone pair %d of %d", mask_openid(openid), failures, binding.max_failures)
    return max(binding.max_failures - failures, 0)


def unlock_binding(redis: redis_lib.Redis, keys: Keys, card_or_openid: str) -> list[str]:
    """Lift the bind lockout of an openid, or of every openid that failed to bind this card; returns them."""
    tried = keys("bindtried", card_or_openid.strip().upper())
    openids = sorted(redis.smembers(tried)) or [card_or_openid.strip()]
    pipe = redis.pipeline()
    for openid in openids:
        pipe.delete(keys("bindlock", openid), keys("bindfail", openid))
    pipe.delete(tried)
    lifted = [openid for openid, removed in zip(openids, pipe.execute()) if removed]
    for openid in lifted:
        log.info("bind lockout lifted by an operator: %s", mask_openid(openid))
    return lifted


def unbind_member(session: Session, openid: str, *, now: datetime) -> Member | None:
    """Unlink ``openid``; returns the member it was bound to, or None."""
    member = find_by_openid(session, openid)
    if member is None:
        return None
    member.openid = None
    member.bound_at = None
    record_change(session, member.id, "unbind", f"openid:{openid}", now=now)
    log.info("unbind: %s from card %s", mask_openid(openid), member.card_no)
    return member


def set_following(session: Session, openid: str, following: bool, *, now: datetime) -> Member | None:
    """Record follow/unfollow; an unfollowed member gets no pushes."""
    member = find_by_openid(session, openid)
    if member is not None and member.subscribed != following:
        member.subscribed = following
        record_change(session, member.id, "follow" if following else "unfollow", f"openid:{openid}", now=now)
    return member


# --------------------------------------------------------------------------- reachability

UNREACHABLE, REACHABLE = "unreachable", "reachable"  # their member_changes actions


def mark_unreachable(session: Session, member_ids: Select | Sequence[int], reason: str | None,
                     now: datetime) -> None:
    """WeChat refused these members' messages (a block, 43004 …): no pushes until they write or follow
    again (``mark_reachable``). Recorded once per member, with WeChat's reason."""
    marked = session.scalars(
        update(Member).where(Member.id.in_(member_ids), Member.unreachable.is_(false()))
        .values(unreachable=True).returning(Member.id).execution_options(synchronize_session=False)
    ).all()
    if marked:
        record_changes(session, Member.id.in_(marked), UNREACHABLE, "wechat",
                       literal(reason, MemberChange.detail.type), now=now)


def mark_reachable(session: Session, member_id: int, actor: str, now: datetime) -> bool:
    """The member wrote or followed again, so WeChat delivers to them again; True if they were unreachable."""
    cleared = session.execute(
        update(Member).where(Member.id == member_id, Member.unreachable.is_(true()))
        .values(unreachable=False).execution_options(synchronize_session=False)
    ).rowcount
    if cleared:
        record_change(session, member_id, REACHABLE, actor, now=now)
    return bool(cleared)


def unreachable_since(session: Session, member_id: int) -> MemberChange | None:
    """The change that last marked the member unreachable: when, and WeChat's reason."""
    return session.scalar(select(MemberChange).where(MemberChange.member_id == member_id,
                                                     MemberChange.action == UNREACHABLE)
                          .order_by(MemberChange.id.desc()).limit(1))


# --------------------------------------------------------------------------- imports


@dataclass(frozen=True)
class MemberRow:
    card_no: str
    name: str
    phone: str
    birthday: date | None
    tier: str
    points: int
    manager: str | None
    spend: Decimal | None = None  # spend already made at the stores, counted by tier evaluation
    spend_since: date | None = None  # the first day of that spend (default: the import's day)


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    def summary(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{len(self.errors)} rejected"
        )


class RowError(BotError, ValueError):
    """A CSV row that cannot be imported; the message names the column and the reason."""


# The longest field each column takes, from the models: a longer one is refused, never cut or left
# to the database (PostgreSQL would refuse it and abort the whole import).
COLUMN_LIMITS = {
    "card_no": Member.__table__.c.card_no.type.length,  # 32
    "name": Member.__table__.c.name.type.length,  # 64
    "phone": Member.__table__.c.phone.type.length,  # 32
    "tier": Member.__table__.c.tier.type.length,  # 16
    "manager": Staff.__table__.c.id.type.length,  # 32
}
FIELD_LIMIT = 32  # the dates and numbers
MAX_OPENING_POINTS = 999_999_999


def parse_member_row(raw: dict[str, str | None], rules: Rules) -> MemberRow:
    """Validate one CSV row (dict of column -> text)."""
    if None in raw:
        raise RowError("more fields than the header has columns")
    values: dict[str, str] = {}
    for key in CSV_COLUMNS:
        text = (raw.get(key) or "").strip()
        limit = COLUMN_LIMITS.get(key, FIELD_LIMIT)
        if len(text) > limit:
            raise RowError(f"{key} is {len(text)} characters long, more than the {limit} its column holds")
        bad = bad_character(text)
        if bad:
            raise RowError(f"{key} contains a control character ({bad})")
        values[key] = text
    card_no = values["card_no"].upper()
    if not card_no:
        raise RowError("card_no is empty")
    if not re.fullmatch(r"[A-Z0-9-]+", card_no):
        raise RowError(f"card_no {values['card_no']!r} must be letters, digits or '-', at most 32")
    if not values["name"]:
        raise RowError("name is empty")
    phone = normalise_phone(values["phone"])
    if not 6 <= len(phone) <= 15:
        raise RowError(f"phone {values['phone']!r} is not a phone number")
    birthday = _optional_date(values, "birthday")
    tier_ids = [t.id for t in rules.tiers]
    if values["tier"] not in tier_ids:
        raise RowError(f"tier {values['tier']!r} is not one of {', '.join(tier_ids)}")
    points = 0
    if values["points"]:
        if not re.fullmatch(r"\d+", values["points"]):
            raise RowError(f"points {values['points']!r} must be a whole number ≥ 0")
        points = int(values["points"])
        if points > MAX_OPENING_POINTS:
            raise RowError(f"points {values['points']!r} must be at most {MAX_OPENING_POINTS}")
    spend = None
    if values["spend"]:
        try:
            spend = Decimal(values["spend"])
        except InvalidOperation:
            raise RowError(f"spend {values['spend']!r} is not an amount") from None
        # 10**10 before quantize: quantize cannot hold 1e30 and fails
        if not spend.is_finite() or spend < 0 or spend >= 10**10 or spend != spend.quantize(Decimal("0.01")):
            raise RowError(f"spend {values['spend']!r} must be an amount ≥ 0 with at most 2 decimals")
    spend_since = _optional_date(values, "spend_since")
    if spend_since is not None and spend is None:
        raise RowError("spend_since is given without spend")
    return MemberRow(card_no, values["name"], phone, birthday, values["tier"], points, values["manager"] or None,
                     spend, spend_since)


def _optional_date(values: dict[str, str], column: str) -> date | None:
    """The column's date (YYYY-MM-DD), or None when it is empty."""
    if not values[column]:
        return None
    try:
        return date.fromisoformat(values[column])
    except ValueError:
        raise RowError(f"{column} {values[column]!r} is not a date in YYYY-MM-DD form") from None


def import_members(session: Session, lines: Iterable[str], rules: Rules, now: datetime,
                   actor: str = "cli") -> ImportReport:
    """Upsert members by card number from CSV text; bad rows are reported, good rows kept.

    ``now`` dates the rows and the opening balances (their lots expire from its local date).

    Running the same file again changes nothing: unchanged rows are not written and the
    opening balance is one ledger entry keyed by the card number. A card on more than one line
    is refused on each of them (which line was meant is the operator's call, and letting one
    win would flip the member between them); the text is read twice for that.
    """
    report = ImportReport()
    lines, again = _readable_twice(lines)
    table = CsvTable(lines)
    problem = table.header_error(("card_no", "name", "phone", "tier"))
    if problem:
        report.errors.append((1, problem))
        return report
    lines_of: dict[str, list[int]] = {}
    for record in table:
        card_no = record.values.get("card_no", "").strip().upper()
        if card_no and len(card_no) <= COLUMN_LIMITS["card_no"]:
            lines_of.setdefault(card_no, []).append(record.line)
    repeated = {card_no: found for card_no, found in lines_of.items() if len(found) > 1}
    del lines_of
    staff_ids = set(session.scalars(select(Staff.id)))
    for record in CsvTable(again()):
        try:
            if record.error:
                raise RowError(record.error)
            row = parse_member_row(record.values, rules)
            if row.manager and row.manager not in staff_ids:
                raise RowError(f"manager {row.manager!r} is not a known staff id")
            if row.card_no in repeated:
                raise RowError(_repeated_card(row.card_no, record.line, repeated[row.card_no]))
        except RowError as exc:
            report.errors.append((record.line, str(exc)))
            continue
        _upsert(session, row, rules, now, actor, report)
    return report


def _readable_twice(lines: Iterable[str]) -> tuple[Iterable[str], Callable[[], Iterable[str]]]:
    """``lines`` to read now, and how to read them from the start again (a file is rewound, not copied)."""
    if isinstance(lines, io.IOBase) and lines.seekable():
        try:
            start = lines.tell()
        except OSError:  # a text file already being iterated cannot tell where it is
            pass
        else:

            def rewound() -> Iterable[str]:
                lines.seek(start)
                return lines

            return lines, rewound
    kept = lines if isinstance(lines, (list, tuple)) else list(lines)
    return kept, lambda: kept


def _repeated_card(card_no: str, line: int, found: list[int]) -> str:
    others = [str(n) for n in found if n != line]
    if len(found) == 2:
        return f"card_no {card_no} is also on line {others[0]}: neither line is imported"
    return f"card_no {card_no} is also on lines {', '.join(others)}: none of these {len(found)} lines is imported"


def _upsert(session: Session, row: MemberRow, rules: Rules, now: datetime, actor: str, report: ImportReport) -> None:
    today = rules.today(now)
    member = find_by_card(session, row.card_no)
    fields: dict[str, object] = {
        "name": row.name,
        "phone": row.phone,
        "birthday": row.birthday,
        "birthday_md": birthday_key(row.birthday),
        "tier": row.tier,
        "manager_id": row.manager,
    }
    if row.spend is not None:
        since = row.spend_since
        if since is None:  # the import's day, kept when the same file comes again on a later day
            same = member is not None and member.carried_spend == row.spend and member.carried_spend_since
            since = member.carried_spend_since if same else today
        fields.update(carried_spend=row.spend, carried_spend_since=since)
    if member is None:
        # An imported tier holds for the evaluation window (storage/tiers.py), unless purchases earn higher.
        member = Member(card_no=row.card_no, points_balance=0, tier_source="import", tier_since=today,
                        created_at=now, updated_at=now, **fields)
        session.add(member)
        session.flush()
        record_change(session, member.id, "import", actor, "created", now=now)
        report.created += 1
    else:
        changed = sorted(k for k, v in fields.items() if getattr(member, k) != v)
        if changed:
            for key in changed:
                setattr(member, key, fields[key])
            member.updated_at = now
            if "tier" in changed:
                member.tier_source, member.tier_since, member.downgrade_warned_on = "import", today, None
            record_change(session, member.id, "import", actor, "changed " + ", ".join(changed), now=now)
            report.updated += 1
        else:
            report.unchanged += 1
    if row.points:
        tier = rules.tier(row.tier)
        ledger.award_points(
            session,
            member.id,
            row.points,
            expires_on=tier.lot_expiry(today),
            reference="opening balance",
            idempotency_key=f"opening:{row.card_no}",
            occurred_at=now,
        )


def add_staff(session: Session, staff_id: str, name: str, openid: str | None = None, role: str = "manager", *,
              now: datetime) -> Staff:
    """Create or update a staff member (account managers are named by id in member imports)."""
    staff = session.get(Staff, staff_id)
    if staff is None:
        staff = Staff(id=staff_id, name=name, openid=openid, role=role, created_at=now)
        session.add(staff)
    else:
        staff.name, staff.role = name, role
        if openid is not None:
            staff.openid = openid
    session.flush()
    return staff


def list_staff(session: Session) -> list[tuple[Staff, int]]:
    """Every staff member with the number of members they manage, by id."""
    managed = (select(Member.manager_id, func.count().label("n")).group_by(Member.manager_id).subquery())
    rows = session.execute(select(Staff, func.coalesce(managed.c.n, 0))
                           .outerjoin(managed, managed.c.manager_id == Staff.id).order_by(Staff.id))
    return [(staff, int(n)) for staff, n in rows]


def set_opted_out(session: Session, member_id: int, opted_out: bool, actor: str, *, now: datetime) -> bool:
    """Opt a member out of (or back into) marketing pushes; True if it changed."""
    member = session.get(Member, member_id)
    if member is None or member.opted_out == opted_out:
        return False
    member.opted_out = opted_out
    record_change(session, member.id, "opt_out" if opted_out else "opt_in", actor, now=now)
    return True

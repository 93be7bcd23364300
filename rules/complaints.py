"""Rules of complaints (DOMAIN.md: Complaints; seed 001 11.4): categories, priorities, the 24-hour
promise, call-backs, and their texts. The clock arithmetic of due times lives here too (pure)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from rules.base import ClockTime, Frozen, MessageTexts, parse_clock

HIGH, NORMAL = "high", "normal"


class Sla(Frozen):
    """One priority's promise: hours to the first response and to the resolution."""

    name: str = Field(min_length=1)  # shown to staff and members (紧急, 普通)
    first_response_hours: float = Field(gt=0)
    resolution_hours: float = Field(gt=0)


class BusinessHours(Frozen):
    """When set, due times count only these hours of working days (holidays off)."""

    start: ClockTime
    end: ClockTime
    weekdays: list[int] = Field(default=[1, 2, 3, 4, 5])  # ISO weekdays: Monday 1 ... Sunday 7
    holidays: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _start_before_end(self) -> "BusinessHours":
        if parse_clock(self.start) >= parse_clock(self.end):
            raise ValueError("business_hours.start must be before business_hours.end")
        if not self.weekdays or any(d < 1 or d > 7 for d in self.weekdays):
            raise ValueError("business_hours.weekdays are ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
        return self

    def _open_on(self, day: date) -> bool:
        return day.isoweekday() in self.weekdays and day not in self.holidays

    def add(self, start: datetime, hours: float, zone: ZoneInfo) -> datetime:
        """The instant ``hours`` of business time after ``start`` (aware); counted in ``zone``."""
        left = timedelta(hours=hours)
        local = start.astimezone(zone)
        opens, closes = parse_clock(self.start), parse_clock(self.end)
        for _ in range(3660):  # ten years of days: a bound, never reached with a working day a week
            day = local.date()
            if self._open_on(day):
                day_open = datetime.combine(day, opens, zone)
                day_close = datetime.combine(day, closes, zone)
                begin = max(local, day_open)
                if begin < day_close:
                    if begin + left <= day_close:
                        return (begin + left).astimezone(start.tzinfo)
                    left -= day_close - begin
            local = datetime.combine(day + timedelta(days=1), time(0), zone)
        raise ValueError("business hours never open")

    def between(self, start: datetime, end: datetime, zone: ZoneInfo) -> timedelta:
        """Business time between two instants."""
        if end <= start:
            return timedelta(0)
        total = timedelta(0)
        local, finish = start.astimezone(zone), end.astimezone(zone)
        opens, closes = parse_clock(self.start), parse_clock(self.end)
        while local < finish:
            day = local.date()
            if self._open_on(day):
                begin = max(local, datetime.combine(day, opens, zone))
                stop = min(finish, datetime.combine(day, closes, zone))
                if stop > begin:
                    total += stop - begin
            local = datetime.combine(day + timedelta(days=1), time(0), zone)
        return total


class Night(Frozen):
    """Warnings about normal-priority tickets wait until the night ends (Zammad #4432)."""

    start: ClockTime
    end: ClockTime

    def contains(self, local: datetime) -> bool:
        moment, start, end = local.time(), parse_clock(self.start), parse_clock(self.end)
        return start <= moment < end if start < end else (moment >= start or moment < end)


class ComplaintPushes(Frozen):
    """The pushes.messages the complaint flow sends (alerts to staff, notices to members)."""

    assigned: str  # to the assignee: a new ticket
    transferred: str  # to the new assignee
    member_note: str  # to the assignee: the member added something (补充) or reopened it
    warning: str  # to the assignee: 75 % of a deadline
    breach: str  # to the supervisors: a deadline passed
    low_rating: str  # to the supervisors
    repeated: str  # to the supervisors: the member's third ticket in a category within 30 days
    manager_unreachable: str  # to the supervisors, once per manager and day: a key account's manager has no WeChat
    callback: str  # to the owner of a new call-back task
    callback_overdue: str  # to the owner, once
    reply: str  # to the member: a staff reply when the customer-service window is closed
    resolved: str  # to the member: the summary (and the request to rate while the window is open)
    resolved_rate: str  # the same with the request to rate

    def names(self) -> list[str]:
        return [getattr(self, name) for name in type(self).model_fields]


class ComplaintRules(Frozen):
    """The ``complaints:`` section."""

    pushes: ComplaintPushes

    categories: list[str] = Field(min_length=1)  # the member picks one (by number or name)
    human_category: str = Field(min_length=1)  # 人工客服 conversations (咨询)
    high_priority_tiers: list[str] = Field(default_factory=list)  # go to their account manager first
    sla: dict[str, Sla]  # "high" and "normal"
    warn_at_share: float = Field(default=0.75, gt=0, lt=1)  # the assignee is warned at this share of a deadline
    business_hours: BusinessHours | None = None  # None: calendar hours
    night: Night | None = None  # no warnings for normal tickets then; None: warn at any hour
    rating_window_hours: int = Field(default=48, ge=1, le=48)  # WeChat's customer-service window
    low_rating_at_most: int = Field(default=2, ge=1, le=5)  # this rating or lower alerts the supervisors
    repeated_count: int = Field(default=3, ge=2)  # this many tickets in one category ...
    repeated_days: int = Field(default=30, ge=1)  # ... within these days: flagged repeated
    reopen_days: int = Field(default=7, ge=0)  # 补充 on a resolved ticket reopens it within this
    callback_days: dict[str, int] = Field(default_factory=dict)  # first_purchase / resolved -> days until due
    callback_first_purchase_tiers: dict[str, str] = Field(default_factory=dict)  # tier -> manager | service
    description_max: int = Field(default=1000, ge=10, le=4000)
    excerpt_chars: int = Field(default=40, ge=10, le=200)  # of the description, in staff alerts

    @field_validator("sla")
    @classmethod
    def _both_priorities(cls, sla: dict[str, Sla]) -> dict[str, Sla]:
        missing = {HIGH, NORMAL} - set(sla)
        if missing:
            raise ValueError(f"sla needs the priorities {HIGH} and {NORMAL}; missing: {', '.join(sorted(missing))}")
        return sla

    @field_validator("callback_first_purchase_tiers")
    @classmethod
    def _callback_owner(cls, owners: dict[str, str]) -> dict[str, str]:
        wrong = {tier: who for tier, who in owners.items() if who not in ("manager", "service")}
        if wrong:
            raise ValueError(f"callback_first_purchase_tiers values are manager or service, not {wrong}")
        return owners

    def priority_of(self, tier: str) -> str:
        return HIGH if tier in self.high_priority_tiers else NORMAL

    def category(self, answer: str) -> str | None:
        """The category a member's answer names: its number (1-based) or its name."""
        text = answer.strip()
        if text.isdigit() and 1 <= int(text) <= len(self.categories):
            return self.categories[int(text) - 1]
        return text if text in self.categories else None

    def add_hours(self, start: datetime, hours: float, zone: ZoneInfo) -> datetime:
        """``start`` plus ``hours`` of SLA time: calendar hours, or business hours when configured."""
        if self.business_hours is None:
            return start + timedelta(hours=hours)
        return self.business_hours.add(start, hours, zone)

    def elapsed(self, start: datetime, end: datetime, zone: ZoneInfo) -> timedelta:
        """SLA time between two instants."""
        if self.business_hours is None:
            return max(end - start, timedelta(0))
        return self.business_hours.between(start, end, zone)


class ComplaintMessages(MessageTexts):
    complaint_prompt_category: str
    complaint_bad_category: str
    complaint_prompt_description: str
    complaint_too_long: str
    complaint_confirm: str
    complaint_opened: str
    complaint_media_attached: str
    complaint_list_header: str
    complaint_list_line: str
    complaint_list_empty: str
    complaint_detail: str
    complaint_thread_line: str
    complaint_unknown: str
    complaint_add_usage: str
    complaint_added: str
    complaint_reopened: str
    complaint_closed: str
    rate_usage: str
    rate_thanks: str
    rate_low: str  # a rating of at most low_rating_at_most
    rate_already: str
    rate_not_asked: str
    rate_out_of_range: str
    complaint_who_manager: str  # who answers a ticket, as the member is told
    complaint_who_desk: str
    complaint_who_supervisor: str
    human_opened: str
    human_already: str
    staff_help: str  # 帮助 from a staff account
    staff_bind_usage: str
    staff_bound: str
    staff_bind_refused: str
    staff_bind_member: str
    staff_already_bound: str
    staff_ticket_list_header: str
    staff_ticket_list_line: str
    staff_ticket_list_empty: str
    staff_ticket_detail: str
    staff_thread_line: str
    staff_thread_member: str  # the member, as the thread of 工单 <no> names them
    staff_purchase_line: str  # a recent purchase in 工单 <no>, then one of:
    staff_purchase_refunded: str
    staff_purchase_part_refunded: str
    staff_ticket_unknown: str
    staff_reply_usage: str
    staff_reply_sent: str
    staff_reply_queued: str
    staff_reply_in_doubt: str
    staff_reply_failed: str
    staff_reply_undeliverable: str
    staff_reply_later: str
    staff_wait_usage: str
    staff_waiting: str
    staff_transfer_usage: str
    staff_transferred: str
    staff_transfer_unknown: str
    staff_transfer_unreachable: str
    staff_resolve_usage: str
    staff_resolved: str
    staff_already_resolved: str
    staff_clients_header: str
    staff_clients_line: str
    staff_clients_empty: str
    staff_callbacks_header: str
    staff_callbacks_line: str
    staff_callbacks_empty: str
    staff_callback_usage: str
    staff_callback_done: str
    staff_callback_unknown: str

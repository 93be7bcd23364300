"""Rules of the web dashboard at /admin (issue 14): sign-in throttling, ranges, tier colours, Chinese labels and texts."""
from __future__ import annotations

import re
from datetime import date

from pydantic import Field, field_validator

from rules.base import Frozen, MessageTexts

# Every label the dashboard shows; config.yaml `dashboard.labels` must give each one (zh-CN).
LABEL_KEYS = frozenset({
    # panels
    "panel_members", "panel_retention", "panel_loyalty", "panel_points", "panel_pushes",
    "panel_gifts", "panel_events", "panel_complaints",
    # columns and axes
    "tier", "month", "quarter", "job", "reason", "status", "total", "members", "count",
    "new_members", "upgrades", "downgrades",
    "members_at_start", "retained", "retention_rate", "churned", "churn_rate",
    "repeat_purchases", "repeat_amount", "repeat_buyers", "event_participation",
    "earned", "redeemed", "expired", "reversed", "adjusted", "returned",
    "outstanding", "expiring", "points_unit", "members_unit", "percent_unit", "amount_unit", "pushes_unit",
    "planned", "sent", "delivered", "sent_unconfirmed", "failed", "skipped", "in_doubt", "waiting",
    "gift", "redeemed_codes", "handed_over", "open_codes", "cancelled", "gift_points", "stock", "reserved",
    "available", "handed_over_total", "to_collect", "to_mail", "overdue", "gifts_unit", "withdrawn", "stock_note",
    "c_opened", "c_resolved", "c_within_sla", "c_median_first_response_hours", "c_median_resolution_hours",
    "c_average_rating", "c_ratings", "c_repeated_members", "rating", "card_no", "member_name", "tickets", "flagged",
    "last_opened", "tickets_unit", "hours_unit",
    "event", "e_session", "e_sessions", "e_starts", "capacity", "seats_taken", "fill_rate", "bookings", "waitlisted",
    "attended", "attended_people", "no_shows", "no_show_rate", "cost", "budget", "budget_used", "events_note",
    # empty states
    "empty_range", "empty_members", "empty_gifts", "empty_events",
})


class DashboardTexts(MessageTexts):
    """What the sign-in page and the refusal pages say (``dashboard.texts``, zh-CN)."""

    login_failed: str  # a wrong password, an unknown id, a member's card, staff without a dashboard: all alike
    login_wait: str  # {wait}: after this wrong password, this id from this address must wait
    login_waiting: str  # {wait}: an attempt during that wait (the password is not looked at)
    wait_seconds: str  # {seconds}
    wait_minutes: str  # {minutes}
    title_bad_request: str
    title_forbidden: str
    title_not_found: str
    bad_date: str  # {field} {value}
    date_outside: str  # {field} {value} {earliest} {latest}
    date_order: str  # {first} {last}
    range_too_long: str  # {months}
    other_manager: str  # {manager}
    foreign_form: str
    not_found: str
    refused_other: str  # {code}
    field_from: str
    field_to: str
    back_to_panel: str
    back_to_login: str


class DashboardRules(Frozen):
    """The dashboard's settings (``dashboard:`` in config.yaml)."""

    # Sign-in throttling, per staff id as typed and client address (README: Dashboard).
    free_failures: int = Field(default=5, ge=1)  # wrong passwords from one address before it must wait ...
    first_wait_seconds: int = Field(default=30, ge=1)  # ... this long, twice as long at each further one ...
    longest_wait_minutes: int = Field(default=15, ge=1)  # ... up to this
    forget_failures_hours: int = Field(default=24, ge=1)  # a day without a wrong one starts the count again
    session_hours: int = Field(default=12, ge=1)  # a login lasts this long
    default_months: int = Field(default=12, ge=1, le=120)  # the date range a panel opens with
    max_months: int = Field(default=60, ge=1, le=240)  # the longest range a panel accepts
    earliest_date: date = Field(default=date(2000, 1, 1), ge=date(1900, 1, 1))  # no range starts before it
    future_months: int = Field(default=12, ge=0, le=120)  # a range ends at most this many months after today
    expiring_days: int = Field(default=90, ge=1)  # "points that expire in the next N days"
    tier_colours: dict[str, str]  # tier id -> CSS colour, the same in every chart
    segment_names: dict[str, str]  # upgrade | stable | retention | lapsed -> label
    activity_names: dict[str, str]  # active | swinging | trending | churned -> label
    labels: dict[str, str]
    texts: DashboardTexts

    @field_validator("tier_colours")
    @classmethod
    def _colours(cls, colours: dict[str, str]) -> dict[str, str]:
        bad = [c for c in colours.values() if not re.fullmatch(r"#[0-9a-fA-F]{6}", c)]
        if bad:
            raise ValueError(f"colours must be written #rrggbb, got {', '.join(bad)}")
        return colours

    @field_validator("segment_names")
    @classmethod
    def _segments(cls, names: dict[str, str]) -> dict[str, str]:
        return _exactly(names, {"upgrade", "stable", "retention", "lapsed"})

    @field_validator("activity_names")
    @classmethod
    def _activities(cls, names: dict[str, str]) -> dict[str, str]:
        return _exactly(names, {"active", "swinging", "trending", "churned"})

    @field_validator("labels")
    @classmethod
    def _all_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        missing = sorted(LABEL_KEYS - set(labels))
        if missing:
            raise ValueError(f"labels missing: {', '.join(missing)}")
        return labels


def _exactly(names: dict[str, str], keys: set[str]) -> dict[str, str]:
    if set(names) != keys:
        raise ValueError(f"must name exactly {', '.join(sorted(keys))}")
    return names

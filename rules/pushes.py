"""Rules of proactive messages: how pushes are delivered, their templates, opting out.

Templates follow WeChat's 2023 template rules (in force since 2023-05-04): no ``first`` line and no
``remark`` line are shown any more, and each keyword shows one line of at most 20 characters (WeChat
cuts the rest). So every template field of ``pushes.messages`` is checked when the rules load
(``rules check``, a start, a reload) against ``field_problem``: a field renders to one line of at most
``FIELD_CHARS`` characters, or it is refused with its file and line.
"""
from __future__ import annotations

import string
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from rules.base import ClockTime, Frozen, MessageTexts, check_placeholders, parse_clock, render_text

FIELD_CHARS = 20  # WeChat's 2023 template rules: a keyword shows at most 20 characters, on one line
REMOVED_FIELDS = ("first", "remark")  # no longer shown since WeChat's 2023 template rules
# The longest value of each placeholder whose values the bot makes itself (codes, numbers, dates, times):
# these may share a field with static text and with each other. Any other placeholder (a name, a title,
# a description, an address: free text of any length) must stand alone in its field, where it is cut.
BOUNDED_VALUES: dict[str, int] = {
    "ticket_no": 14,  # T20261123-0001
    "callback_no": 10,
    "code": 8,  # gift codes 8, event booking codes 6
    "voucher_code": 12,
    "due": 11, "response_due": 11, "resolution_due": 11, "next_due": 11,  # 11-23 18:00
    "deadline": 4,  # 首次响应 / 解决
    "rating": 1, "count": 4, "days_left": 4, "party": 3,
    "points": 13, "balance": 13,  # 1,234,567,890
    "keep_min_spend": 13, "keep_needed": 13, "previous_min_spend": 13,  # 1,000,000.00
    "month": 7,  # 2026-12
    "birthday": 6,  # 12月31日
    "expires_on": 10, "grace_until": 10, "downgrade_on": 10, "valid_until": 10, "voucher_valid_until": 10,
    "starts": 16, "first_starts": 16,  # 2027-03-20 14:00
    "mail_phone": 11,
    "mail_address_1": FIELD_CHARS, "mail_address_2": FIELD_CHARS,  # an address cut into two fields' worth
}


def field_problem(text: str) -> str | None:
    """Why a template field's text could break WeChat's 2023 rules (None: it renders to one line of at most
    20 characters): its static text and the longest values of its placeholders must fit; a free-text
    placeholder (not in ``BOUNDED_VALUES``) must be the field's whole text, and is cut to fit."""
    parts = list(string.Formatter().parse(text))
    static = "".join(literal for literal, _, _, _ in parts)
    names = [name for _, name, _, _ in parts if name is not None]
    if "\n" in static or "\r" in static:
        return "holds a line break (a keyword shows one line)"
    free = [name or "{}" for name in names if name not in BOUNDED_VALUES]
    if free:
        if len(names) > 1 or static:
            return (f"puts {{{free[0]}}}, free text of any length, beside other text: a free-text placeholder stands "
                    f"alone in its field, where it is cut to {FIELD_CHARS} characters")
        return None
    longest = len(static) + sum(BOUNDED_VALUES[name] for name in names)
    if longest > FIELD_CHARS:
        spelled = " + ".join([f"{len(static)} of text"] * bool(static) +
                             [f"{{{name}}} up to {BOUNDED_VALUES[name]}" for name in names])
        return f"can be {longest} characters ({spelled}); a keyword shows at most {FIELD_CHARS}"
    return None


def _one_line_within_limit(text: str) -> str:
    check_placeholders(text)
    problem = field_problem(text)
    if problem:
        raise ValueError(f"{text!r} {problem} (WeChat's 2023 template rules)")
    return text


FieldText = Annotated[str, AfterValidator(_one_line_within_limit)]


def field_value(text: str) -> str:
    """A rendered field as WeChat's 2023 rules take it: one line (line breaks folded) of at most 20 characters,
    cut with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= FIELD_CHARS else line[:FIELD_CHARS - 1] + "…"


def field_pieces(text: str, count: int) -> list[str]:
    """``text`` on one line, in ``count`` field-sized pieces (the last cut with an ellipsis when more is left):
    e.g. an address over two fields."""
    line = " ".join(text.split())
    pieces = [line[i * FIELD_CHARS:(i + 1) * FIELD_CHARS] for i in range(count - 1)]
    return pieces + [field_value(line[(count - 1) * FIELD_CHARS:])]


class PushMessage(Frozen):
    """One push: a WeChat template (id, keyword fields, an optional link) and the same words as a
    customer-service text."""

    template_id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    fields: dict[str, FieldText] = Field(default_factory=dict)  # template keyword -> text with {placeholders}
    url: str | None = None  # the template's link, with {placeholders}; a path is joined to pushes.public_url

    @field_validator("text")
    @classmethod
    def _placeholders_parse(cls, text: str) -> str:
        return check_placeholders(text)

    @field_validator("fields")
    @classmethod
    def _no_removed_fields(cls, fields: dict[str, str]) -> dict[str, str]:
        removed = [key for key in fields if key in REMOVED_FIELDS]
        if removed:
            raise ValueError(f"{removed[0]}: WeChat's 2023 template rules no longer show the first and remark lines; "
                             "put what it says in a keyword field (or in text, for customer-service messages)")
        return fields

    @field_validator("url")
    @classmethod
    def _a_link(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("/", "https://", "http://")):
            raise ValueError("url is a path on the bot (/bulletins/{month}) or an http(s):// address")
        return url if url is None else check_placeholders(url)

    def link(self, values: dict[str, Any], public_url: str | None) -> str | None:
        """The template's link for these values (a path joined to ``public_url``), or None."""
        if self.url is None:
            return None
        url = render_text(self.url, values)
        return public_url.rstrip("/") + url if url.startswith("/") and public_url else url


class QuietHours(Frozen):
    start: ClockTime
    end: ClockTime

    def contains(self, local: datetime) -> bool:
        """Whether ``local`` (a time in the rules' zone) falls inside; the window may span midnight."""
        moment, start, end = local.time(), parse_clock(self.start), parse_clock(self.end)
        return start <= moment < end if start < end else (moment >= start or moment < end)


class PushRules(Frozen):
    rate_limit_per_minute: int = Field(ge=0)  # all pushes, all processes; 0 = no limit
    quiet_hours: QuietHours | None = None  # marketing pushes wait; staff alerts do not
    customer_service_window_hours: int = Field(ge=0, le=48)  # 0 = always template messages
    http_timeout_seconds: float = Field(gt=0)
    max_attempts: int = Field(ge=1)
    backoff_seconds: float = Field(ge=0)
    batch_size: int = Field(ge=1)
    concurrent_sends: int = Field(ge=1, le=64)
    claim_timeout_seconds: int = Field(ge=1)  # a row claimed longer than this belongs to a dead sender
    drain_every_seconds: int = Field(ge=1)  # the scheduler resumes held and pending pushes this often
    lease_seconds: int = Field(ge=1, le=60)  # a standby scheduler takes over after this
    public_url: str | None = None  # where members' phones reach the bot: template links are paths below it
    messages: dict[str, PushMessage]

    @field_validator("public_url")
    @classmethod
    def _an_address(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError("public_url is an http(s):// address, e.g. https://your-host")
        return url

    @model_validator(mode="after")
    def _paths_need_the_public_url(self) -> "PushRules":
        paths = sorted(name for name, m in self.messages.items() if m.url and m.url.startswith("/"))
        if paths and self.public_url is None:
            raise ValueError(f"pushes.messages {', '.join(paths)} link to a path on the bot: set pushes.public_url")
        return self


class OptOutMessages(MessageTexts):
    unsubscribed: str
    resubscribed: str

"""Rules of proactive messages: how pushes are delivered, their templates, opting out."""
from __future__ import annotations

from datetime import datetime

from pydantic import Field, field_validator

from rules.base import ClockTime, Frozen, MessageTexts, check_placeholders, parse_clock


class PushMessage(Frozen):
    """One push: a WeChat template (id and fields) and the same words as a customer-service text."""

    template_id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    fields: dict[str, str] = Field(default_factory=dict)  # template keyword -> text with {placeholders}

    @field_validator("text")
    @classmethod
    def _placeholders_parse(cls, text: str) -> str:
        return check_placeholders(text)


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
    messages: dict[str, PushMessage]


class OptOutMessages(MessageTexts):
    unsubscribed: str
    resubscribed: str

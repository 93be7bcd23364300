"""Rules of the chat itself: the webhook's limits, routes, dialogs, and the general texts."""
from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from rules.base import Frozen, MessageTexts


class WebhookRules(Frozen):
    reply_budget_seconds: float = Field(gt=0, lt=5)  # WeChat gives up (and retries) after 5 s
    dedup_ttl_seconds: int = Field(ge=30)
    # A copy's hold on a message (bot/claims.py), refreshed while its handler runs: a retry takes over once it lapses.
    claim_lease_seconds: float = Field(gt=0)
    max_body_bytes: int = Field(ge=1024)
    timestamp_tolerance_seconds: int = Field(ge=1)

    @model_validator(mode="after")
    def _lease_inside_the_budget(self) -> "WebhookRules":
        if self.claim_lease_seconds >= self.reply_budget_seconds:
            raise ValueError(f"claim_lease_seconds ({self.claim_lease_seconds}) must be below reply_budget_seconds "
                             f"({self.reply_budget_seconds}): a retry taking over a dead copy's claim needs time to answer")
        return self


class DialogRules(Frozen):
    ttl_seconds: int = Field(ge=10)
    cancel_words: list[str] = Field(min_length=1)
    yes_words: list[str] = Field(default=["确认", "是", "好", "yes", "y", "ok"], min_length=1)  # confirm a step


class Route(Frozen):
    """One intent: a handler name and the words, prefixes, patterns or menu keys that choose it."""

    handler: str
    exact: list[str] = Field(default_factory=list)
    prefix: list[str] = Field(default_factory=list)
    regex: list[str] = Field(default_factory=list)
    click: list[str] = Field(default_factory=list)  # menu EventKey

    @field_validator("regex")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"regex {pattern!r} does not compile: {exc}") from exc
        return patterns

    @model_validator(mode="after")
    def _has_a_matcher(self) -> "Route":
        if not (self.exact or self.prefix or self.regex or self.click):
            raise ValueError("a route needs at least one of exact, prefix, regex or click")
        return self


class Fallbacks(Frozen):
    text: str  # handler for text no route matched
    other: str  # handler for images, voice, video, links, files and other non-text messages


class ChatMessages(MessageTexts):
    welcome: str
    help: str
    unknown_text: str
    media_received: str
    dialog_cancelled: str
    nothing_to_cancel: str
    dialog_confirm_hint: str
    dialog_confirm_repeated: str
    staff_only: str
    busy: str
    done_without_reply: str

"""Rules of binding a member card to WeChat, and its texts."""
from __future__ import annotations

from pydantic import Field

from rules.base import Frozen, MessageTexts


class BindingRules(Frozen):
    max_failures: int = Field(ge=1)
    lockout_seconds: int = Field(ge=1)


class MembershipMessages(MessageTexts):
    bind_prompt_card: str
    bind_prompt_phone: str
    bind_usage: str
    bind_success: str
    bind_failed: str
    bind_failed_tries_left: str
    bind_locked: str
    bind_already: str
    bind_card_taken: str
    bind_staff_account: str
    unbind_success: str
    not_bound: str
    welcome_back: str

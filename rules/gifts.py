"""Rules of the gift catalogue (DOMAIN.md: Gifts; seed 000 第五节 五 (二)), and its texts.

Three kinds of gift: ``points`` (the points catalogue, paid with points), ``vip_item`` (the month's
VIP-exclusive products, bought in store at the member price: the chat reserves one) and ``vip_gift``
(the VIP gift list: chosen without points against an entitlement earned by a qualifying purchase).
The catalogue is rules; stock is state and lives in the database.
"""
from __future__ import annotations

import calendar
import re
from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rules.base import Frozen, MessageTexts, by_id, unique_ids

GIFT_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class Gift(Frozen):
    """One gift of the catalogue."""

    id: str  # what members type after 兑换: letters, digits, - and _
    name: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=200)
    kind: Literal["points", "vip_item", "vip_gift"]
    points: int | None = Field(default=None, ge=1)  # the points it costs (kind points only)
    member_price: Decimal | None = Field(default=None, gt=0)  # CNY paid in store (kind vip_item only)
    tiers: list[str] = Field(min_length=1)  # tier ids that may have it
    available_from: date | None = None
    available_until: date | None = None  # inclusive
    limit_per_month: int | None = Field(default=None, ge=1)  # per member per calendar month
    limit_total: int | None = Field(default=None, ge=1)  # per member, ever
    fulfilment: Literal["pickup", "mail"] = "pickup"
    valid_days: int | None = Field(default=None, ge=1)  # a code stays valid this long (default gifts.code_valid_days)

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if not GIFT_ID.match(value):
            raise ValueError(f"gift id {value!r} must be 1-32 letters, digits, - or _")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> "Gift":
        if self.kind == "points" and self.points is None:
            raise ValueError("a points gift needs points (its cost)")
        if self.kind != "points" and self.points is not None:
            raise ValueError(f"a {self.kind} gift costs no points; remove points")
        if self.kind == "vip_item":
            if self.member_price is None:
                raise ValueError("a vip_item needs member_price")
            if self.available_from is None or self.available_until is None:
                raise ValueError("a vip_item needs available_from and available_until (its month)")
            start, end = self.available_from, self.available_until
            if (start.year, start.month) != (end.year, end.month):
                raise ValueError("a vip_item is offered within one calendar month")
        elif self.member_price is not None:
            raise ValueError("only a vip_item has a member_price")
        if self.available_from and self.available_until and self.available_until < self.available_from:
            raise ValueError("available_until is before available_from")
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError("a tier is named twice")
        return self

    def open_on(self, day: date) -> bool:
        return (self.available_from is None or self.available_from <= day) and (
            self.available_until is None or day <= self.available_until)


def month_bounds(day: date) -> tuple[date, date]:
    """The first and last day of ``day``'s calendar month."""
    return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])


class GiftRules(Frozen):
    page_size: int = Field(default=5, ge=1, le=20)  # gifts per 礼品 page (更多 shows the next)
    code_valid_days: int = Field(ge=1)  # a code not collected within this many days expires
    vip_gift_tiers: list[str] = Field(default_factory=list)  # diamond tiers that earn gift-list entitlements
    vip_gift_min_purchase: Decimal = Field(gt=0)  # one entitlement per purchase of at least this (CNY)
    annual_gift_tiers: list[str] = Field(default_factory=list)  # first purchase of each year earns one too
    service_desk: str | None = None  # staff id alerted about a mailed gift when the member has no manager
    mail_alert_message: str  # push to the account manager (or service desk): a gift to mail
    entitlement_message: str  # push to the member: an annual gift is theirs to choose
    entitlement_alert_message: str  # push to the member's account manager about it
    catalogue: list[Gift] = Field(default_factory=list)

    @field_validator("catalogue")
    @classmethod
    def _unique_ids(cls, gifts: list[Gift]) -> list[Gift]:
        return unique_ids(gifts, "gift")

    def gift(self, gift_id: str) -> Gift | None:
        """The gift with this id (case does not count), or None."""
        return by_id(self.catalogue, gift_id)

    def push_messages(self) -> list[str]:
        return [self.mail_alert_message, self.entitlement_message, self.entitlement_alert_message]

    def tiers_named(self) -> set[str]:
        return {t for g in self.catalogue for t in g.tiers} | set(self.vip_gift_tiers) | set(self.annual_gift_tiers)

    def valid_days(self, gift: Gift) -> int:
        return gift.valid_days or self.code_valid_days


class GiftsMessages(MessageTexts):
    gifts_header: str
    gifts_line_points: str
    gifts_line_vip_item: str
    gifts_line_vip_gift: str
    gifts_sold_out: str
    gifts_left: str
    gifts_affordable: str
    gifts_short: str
    gifts_footer: str
    gifts_more: str
    gifts_last_page: str
    gifts_none: str
    gift_redeem_usage: str
    gift_confirm: str
    gift_confirm_mail: str
    gift_cost_points: str
    gift_cost_vip_item: str
    gift_cost_vip_gift: str
    gift_ask_name: str
    gift_ask_phone: str
    gift_bad_phone: str
    gift_ask_address: str
    gift_redeemed_pickup: str
    gift_redeemed_mail: str
    gift_spent_points: str
    gift_spent_vip_item: str
    gift_spent_vip_gift: str
    gift_redeem_dropped: str
    gift_unknown: str
    gift_tier_refused: str
    gift_short_points: str
    gift_sold_out: str
    gift_over_month_limit: str
    gift_over_total_limit: str
    gift_not_yet: str
    gift_no_longer: str
    gift_no_entitlement: str
    my_gifts_header: str
    my_gifts_line: str
    my_gifts_empty: str
    my_gifts_entitlements: str
    gift_cancel_usage: str
    gift_code_unknown: str
    gift_cancelled: str
    gift_cancelled_vip_item: str
    gift_cancelled_vip_gift: str
    gift_cancel_refused: str
    gift_status_open: str
    gift_status_open_mail: str
    gift_status_collected: str
    gift_status_mailed: str
    gift_status_cancelled: str
    gift_status_expired: str

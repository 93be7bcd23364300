"""Rules of tiers, segments and points (DOMAIN.md: Tiers, Points), and their texts."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from pydantic import Field

from rules.base import Frozen, MessageTexts


class Tier(Frozen):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)  # the card's display name
    min_spend: Decimal = Field(ge=0)  # CNY over the evaluation window
    points_rate: Decimal = Field(ge=0)  # points per CNY, rounded down
    points_valid_days: int = Field(gt=0)  # an earn lot expires this many days after it is earned
    benefits: list[str] = Field(default_factory=list)  # the care this tier gets, as `会员权益` lists it

    def lot_expiry(self, earned_on: date) -> date:
        """The day an earn lot earned on ``earned_on`` (local date) expires."""
        return earned_on + timedelta(days=self.points_valid_days)


@dataclass(frozen=True)
class TierGap:
    """How far a member's spend is from the tier above theirs (None above the top tier)."""

    next_tier: Tier | None
    needed: Decimal  # spend still needed to reach it; 0 when reached or at the top


class SegmentRules(Frozen):
    """Segments and activity (DOMAIN.md: Tiers; seed 000 and 001 11.2)."""

    window_days: int = Field(gt=0)  # the rolling window for spend and frequency
    frequent_purchases_per_year: Decimal = Field(ge=0)  # upgrade / stable threshold
    lapsed_below_purchases: int = Field(ge=0)  # fewer purchases than this in the window: lapsed
    top_points_share: Decimal = Field(gt=0, le=1)  # "cumulative points in the top 10 %"
    active_min_visits: int = Field(ge=1)  # visits in the last year
    swinging_visits: int = Field(ge=1)
    trending_from_days: int = Field(ge=0)  # one visit between these ages = trending to churn
    trending_to_days: int = Field(gt=0)
    churned_after_days: int = Field(gt=0)
    downgrade_warning_days: int = Field(default=30, ge=1)  # members are told this long before a downgrade


class LedgerKindNames(Frozen):
    """How each kind of ledger entry is named to members."""

    earn: str
    redeem: str
    expire: str
    adjust: str
    reverse: str  # points a refund took back
    opening: str  # an earn lot that is an import's opening balance
    gift_return: str  # points a cancelled or expired redemption gave back (a reverse entry of +points)


class PointsRules(Frozen):
    expiry_reminder_days: int = Field(ge=0)
    history_length: int = Field(ge=1, le=50)  # entries shown by 积分明细
    kind_names: LedgerKindNames


class RetentionRules(Frozen):
    """挽留群体: points, tier and privileges kept ``grace_months``; their points do not expire meanwhile."""

    grace_months: int = Field(ge=0)
    reminder_days_before: list[int] = Field(default_factory=list)


class LapsedRules(Frozen):
    """抛弃客户: marketing stops (pushes); points are reset once when a member the programme has known for
    the whole window lapses; members of ``keep_tier`` keep their card (tier) while lapsed."""

    reset_points: bool = True
    keep_tier: list[str] = Field(default_factory=list)


class PointsMessages(MessageTexts):
    points_summary: str
    points_expiring: str
    points_no_expiry: str
    points_next_tier: str  # the spend, then one of:
    points_upgrade_needed: str  # the spend still needed for the tier above
    points_upgrade_due: str  # reached: when the nightly evaluation (jobs.tier_recalc) upgrades
    points_top_tier: str
    history_header: str
    history_line: str
    history_empty: str
    benefits_summary: str
    benefits_line: str
    benefits_keep_met: str
    benefits_keep_short: str
    benefits_keep_base: str

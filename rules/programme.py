"""The root of the rules: every section of config.yaml, gathered and checked against each other."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from rules.base import Frozen
from rules.chat import ChatMessages, DialogRules, Fallbacks, Route, WebhookRules
from rules.complaints import ComplaintMessages, ComplaintRules
from rules.dashboard import DashboardRules
from rules.events import EventRules, EventsMessages
from rules.gifts import GiftRules, GiftsMessages
from rules.jobs import Jobs
from rules.membership import BindingRules, MembershipMessages
from rules.points import LapsedRules, PointsMessages, PointsRules, RetentionRules, SegmentRules, Tier, TierGap
from rules.pushes import OptOutMessages, PushRules


class Messages(ChatMessages, MembershipMessages, PointsMessages, OptOutMessages, ComplaintMessages, EventsMessages,
               GiftsMessages):
    """Every member-facing text (``messages:``), each declared by its capability's section."""


class Rules(Frozen):
    """The admin's programme rules (config.yaml)."""

    timezone: str
    tiers: list[Tier] = Field(min_length=1)  # lowest first
    segments: SegmentRules
    points: PointsRules
    retention: RetentionRules
    lapsed: LapsedRules
    binding: BindingRules
    dialog: DialogRules
    webhook: WebhookRules
    routes: list[Route]
    wechat_events: dict[str, str]  # lower-case WeChat event name -> handler
    fallbacks: Fallbacks
    messages: Messages
    pushes: PushRules
    jobs: Jobs
    complaints: ComplaintRules
    dashboard: DashboardRules
    gifts: GiftRules
    events: EventRules

    @field_validator("lapsed")
    @classmethod
    def _lapsed_names_known_tiers(cls, lapsed: LapsedRules, info: ValidationInfo) -> LapsedRules:
        tiers = info.data.get("tiers")
        strangers = sorted(set(lapsed.keep_tier) - {t.id for t in tiers}) if tiers else []
        if strangers:
            raise ValueError(f"lapsed.keep_tier names unknown tier(s): {', '.join(strangers)}")
        return lapsed

    @field_validator("events")
    @classmethod
    def _events_name_known_things(cls, events: EventRules, info: ValidationInfo) -> EventRules:
        # tiers and pushes come before events, so they are checked already (absent if they were bad).
        pushes, tiers = info.data.get("pushes"), info.data.get("tiers")
        unknown = sorted(set(events.push_messages()) - set(pushes.messages)) if pushes else []
        if unknown:
            raise ValueError(f"events name push message(s) not in pushes.messages: {', '.join(unknown)}")
        strangers = sorted(set(events.tiers_named()) - {t.id for t in tiers}) if tiers else []
        if strangers:
            raise ValueError(f"events name unknown tier(s): {', '.join(strangers)}")
        return events

    @model_validator(mode="after")
    def _jobs_name_known_things(self) -> "Rules":
        sections = self.jobs.sections().values()
        unknown = sorted({name for s in sections for name in s.push_messages()} - set(self.pushes.messages))
        if unknown:
            raise ValueError(f"jobs name push message(s) not in pushes.messages: {', '.join(unknown)}")
        strangers = sorted({tier for s in sections for tier in s.tiers_named()} - {t.id for t in self.tiers})
        if strangers:
            raise ValueError(f"jobs name unknown tier(s): {', '.join(strangers)}")
        return self

    @model_validator(mode="after")
    def _complaints_name_known_things(self) -> "Rules":
        rules = self.complaints
        unknown = sorted(set(rules.pushes.names()) - set(self.pushes.messages))
        if unknown:
            raise ValueError(f"complaints.pushes name push message(s) not in pushes.messages: {', '.join(unknown)}")
        named = {*rules.high_priority_tiers, *rules.callback_first_purchase_tiers}
        strangers = sorted(named - {t.id for t in self.tiers})
        if strangers:
            raise ValueError(f"complaints name unknown tier(s): {', '.join(strangers)}")
        return self

    @model_validator(mode="after")
    def _dashboard_colours_every_tier(self) -> "Rules":
        tiers = {t.id for t in self.tiers}
        if set(self.dashboard.tier_colours) != tiers:
            raise ValueError(f"dashboard.tier_colours must give a colour to each tier: {', '.join(sorted(tiers))}")
        return self

    @model_validator(mode="after")
    def _gifts_name_known_things(self) -> "Rules":
        unknown = sorted(set(self.gifts.push_messages()) - set(self.pushes.messages))
        if unknown:
            raise ValueError(f"gifts name push message(s) not in pushes.messages: {', '.join(unknown)}")
        strangers = sorted(self.gifts.tiers_named() - {t.id for t in self.tiers})
        if strangers:
            raise ValueError(f"gifts name unknown tier(s): {', '.join(strangers)}")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long for a file
            raise ValueError(f"unknown time zone {name!r}") from exc
        return name

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, tiers: list[Tier]) -> list[Tier]:
        ids = [t.id for t in tiers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"tier ids must be unique, got {ids}")
        if tiers[0].min_spend != 0:
            raise ValueError("the first (base) tier must have min_spend 0")
        for lower, higher in zip(tiers, tiers[1:]):
            if higher.min_spend <= lower.min_spend:
                raise ValueError(f"min_spend must rise from tier {lower.id} to tier {higher.id}")
        return tiers

    @field_validator("wechat_events")
    @classmethod
    def _lower_event_names(cls, events: dict[str, str]) -> dict[str, str]:
        return {name.lower(): handler for name, handler in events.items()}

    # ------------------------------------------------------------------ time in the rules' zone

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def today(self, now: datetime) -> date:
        """The local date at ``now`` (an aware instant, from the injected clock)."""
        return now.astimezone(self.zone).date()

    def local_instant(self, local: datetime) -> datetime:
        """The UTC instant of a local time written without an offset (event times in config.yaml)."""
        return local.replace(tzinfo=self.zone).astimezone(timezone.utc)

    def local_time(self, instant: datetime) -> str:
        """An instant as members read it: 'YYYY-MM-DD HH:MM' in the rules' zone."""
        return instant.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")

    def local_midnight(self, day: date) -> datetime:
        """The UTC instant at which ``day`` starts in the rules' time zone."""
        return datetime.combine(day, time(0), self.zone).astimezone(timezone.utc)

    def moment_on(self, day: date, now: datetime) -> datetime:
        """``now`` moved to the local date ``day``, its local time of day kept (``now`` itself on its own day)."""
        if day == self.today(now):
            return now
        return datetime.combine(day, now.astimezone(self.zone).time(), self.zone).astimezone(timezone.utc)

    def last_days_start(self, today: date, days: int) -> datetime:
        """The UTC instant "the last ``days`` days" start at: local dates after today − days."""
        return self.local_midnight(today - timedelta(days=days - 1))

    # ------------------------------------------------------------------ tiers

    def tier(self, tier_id: str) -> Tier:
        """The tier with this id (KeyError if the rules have none)."""
        for tier in self.tiers:
            if tier.id == tier_id:
                return tier
        raise KeyError(tier_id)

    def next_tier(self, tier_id: str) -> Tier | None:
        ids = [t.id for t in self.tiers]
        index = ids.index(tier_id)
        return self.tiers[index + 1] if index + 1 < len(self.tiers) else None

    def tier_gap(self, tier_id: str, spend: Decimal) -> TierGap:
        """The tier above ``tier_id`` and the spend still needed to reach it from ``spend``."""
        higher = self.next_tier(tier_id)
        if higher is None:
            return TierGap(None, Decimal(0))
        return TierGap(higher, max(higher.min_spend - spend, Decimal(0)))

    def handler_names(self) -> set[str]:
        names = {route.handler for route in self.routes} | set(self.wechat_events.values())
        return names | {self.fallbacks.text, self.fallbacks.other}

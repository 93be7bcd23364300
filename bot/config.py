"""Typed configuration: secrets from the environment, programme rules from config.yaml.

Rules are parsed once into frozen pydantic objects. A bad file is reported with the
file, the line and the dotted path of the bad value (``config.yaml, line 14:
tiers[2].min_spend: ...``), in the manner of Home Assistant's config errors.
"""
from __future__ import annotations

import logging
import os
import re
import string
import threading
from dataclasses import dataclass, field
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RULES_PATH = ROOT / "config.yaml"
DEFAULT_DATABASE_URL = f"sqlite:///{ROOT / 'instance' / 'bot.sqlite3'}"
# The sample key of WeChat's encryption guide: lets the demo console try safe (AES) mode.
DEMO_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


# --------------------------------------------------------------------------- secrets


@dataclass(frozen=True)
class Settings:
    """Deployment settings, read only from environment variables."""

    wechat_token: str = field(repr=False)
    wechat_appid: str
    wechat_secret: str = field(repr=False)
    wechat_aes_key: str | None = field(default=None, repr=False)
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    wechat_api_base: str = "https://api.weixin.qq.com/cgi-bin/"
    api_key: str | None = field(default=None, repr=False)
    redis_prefix: str = "mbot"
    rules_path: Path = DEFAULT_RULES_PATH
    embedded: bool = False  # demo defaults: fake Redis, demo members, in-process scheduler

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Read settings from the environment; missing WeChat secrets fall back to demo values."""
        env = dict(os.environ if env is None else env)
        embedded = not env.get("REDIS_URL")
        demo = {"WECHAT_TOKEN": "demo-token", "WECHAT_APPID": "wx-demo-appid", "WECHAT_SECRET": "demo-secret"}
        missing = [name for name in demo if not env.get(name)]
        if missing and not embedded:
            raise ConfigError(f"environment: {', '.join(missing)} must be set when REDIS_URL is set (production)")
        for name in missing:
            log.warning("%s is not set: using the embedded demo value", name)
        return cls(
            wechat_token=env.get("WECHAT_TOKEN") or demo["WECHAT_TOKEN"],
            wechat_appid=env.get("WECHAT_APPID") or demo["WECHAT_APPID"],
            wechat_secret=env.get("WECHAT_SECRET") or demo["WECHAT_SECRET"],
            wechat_aes_key=env.get("WECHAT_AES_KEY") or (DEMO_AES_KEY if embedded else None),
            database_url=env.get("DATABASE_URL") or cls.database_url,
            redis_url=env.get("REDIS_URL") or None,
            wechat_api_base=env.get("WECHAT_API_BASE") or cls.wechat_api_base,
            api_key=env.get("API_KEY") or None,
            redis_prefix=env.get("REDIS_PREFIX") or "mbot",
            rules_path=Path(env.get("RULES_PATH") or DEFAULT_RULES_PATH),
            embedded=embedded,
        )


# --------------------------------------------------------------------------- rules schema


class ConfigError(Exception):
    """The configuration is invalid; the message names the file, line and path."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tier(Frozen):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)  # the card's display name
    min_spend: Decimal = Field(ge=0)  # CNY over the evaluation window
    points_rate: Decimal = Field(ge=0)  # points per CNY, rounded down
    points_valid_days: int = Field(gt=0)  # an earn lot expires this many days after it is earned


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


class LedgerKindNames(Frozen):
    """How each kind of ledger entry is named to members."""

    earn: str
    redeem: str
    expire: str
    adjust: str
    reverse: str


class PointsRules(Frozen):
    expiry_reminder_days: int = Field(ge=0)
    history_length: int = Field(ge=1, le=50)  # entries shown by 积分明细
    kind_names: LedgerKindNames


class RetentionRules(Frozen):
    grace_months: int = Field(ge=0)
    reminder_days_before: list[int] = Field(default_factory=list)


class BindingRules(Frozen):
    max_failures: int = Field(ge=1)
    lockout_seconds: int = Field(ge=1)


class DialogRules(Frozen):
    ttl_seconds: int = Field(ge=10)
    cancel_words: list[str] = Field(min_length=1)


class WebhookRules(Frozen):
    reply_budget_seconds: float = Field(gt=0, lt=5)  # WeChat gives up (and retries) after 5 s
    dedup_ttl_seconds: int = Field(ge=30)
    max_body_bytes: int = Field(ge=1024)
    timestamp_tolerance_seconds: int = Field(ge=1)


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


class Messages(Frozen):
    """Every member-facing text, rendered with ``{placeholder}`` fields."""

    welcome: str
    help: str
    unknown_text: str
    media_received: str
    bind_prompt_card: str
    bind_prompt_phone: str
    bind_usage: str
    bind_success: str
    bind_failed: str
    bind_locked: str
    bind_already: str
    bind_card_taken: str
    unbind_success: str
    not_bound: str
    dialog_cancelled: str
    nothing_to_cancel: str
    busy: str
    points_summary: str
    points_expiring: str
    points_no_expiry: str
    points_next_tier: str
    points_top_tier: str
    history_header: str
    history_line: str
    history_empty: str
    unsubscribed: str
    resubscribed: str

    @field_validator("*")
    @classmethod
    def _placeholders_parse(cls, text: str) -> str:
        return check_placeholders(text)

    def render(self, message_name: str, /, **values: Any) -> str:
        """Render a message; unknown placeholders stay visible instead of raising."""
        return render_text(getattr(self, message_name), values)


def check_placeholders(text: str) -> str:
    """Refuse a text whose {placeholders} cannot be rendered."""
    try:
        list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"bad placeholder: {exc}") from exc
    return text


def render_text(template: str, values: dict[str, Any]) -> str:
    """Render ``template``; unknown placeholders stay visible instead of raising."""
    return template.format_map(_KeepMissing(values))


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


# --------------------------------------------------------------------------- pushes and jobs


def _clock(text: str) -> str:
    """Accept 'HH:MM' or 'HH:MM:SS' (seconds let tests schedule a job moments ahead)."""
    parse_clock(text)
    return text


ClockTime = Annotated[str, AfterValidator(_clock)]


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


class BirthdayJob(Frozen):
    at: ClockTime
    messages: dict[str, str]  # tier id -> push message
    voucher_tiers: list[str] = Field(default_factory=list)
    voucher_valid_days: int = Field(ge=1)
    manager_alert_tiers: list[str] = Field(default_factory=list)
    manager_alert_days_before: int = Field(ge=0)
    manager_alert_message: str



class BulletinJob(Frozen):
    day: int = Field(ge=1, le=28)
    at: ClockTime
    tiers: list[str]
    folder: str
    message: str



class PointsResetJob(Frozen):
    at: ClockTime
    grace_message: str
    reminder_message: str
    reset_message: str
    expiry_reminder_message: str



class TierRecalcJob(Frozen):
    at: ClockTime
    upgrade_message: str | None  # None: no message
    downgrade_message: str | None



class Jobs(Frozen):
    birthday: BirthdayJob
    monthly_bulletin: BulletinJob
    points_reset: PointsResetJob
    tier_recalc: TierRecalcJob


class Rules(Frozen):
    """The admin's programme rules (config.yaml)."""

    timezone: str
    tiers: list[Tier] = Field(min_length=1)  # lowest first
    segments: SegmentRules
    points: PointsRules
    retention: RetentionRules
    binding: BindingRules
    dialog: DialogRules
    webhook: WebhookRules
    routes: list[Route]
    events: dict[str, str]  # lower-case WeChat event name -> handler
    fallbacks: Fallbacks
    messages: Messages
    pushes: PushRules
    jobs: Jobs

    @model_validator(mode="after")
    def _jobs_name_known_things(self) -> "Rules":
        tier_ids = {t.id for t in self.tiers}
        pushes = set(self.pushes.messages)
        jobs = self.jobs
        names = [jobs.birthday.manager_alert_message, jobs.monthly_bulletin.message,
                 jobs.points_reset.grace_message, jobs.points_reset.reminder_message,
                 jobs.points_reset.reset_message, jobs.points_reset.expiry_reminder_message,
                 *jobs.birthday.messages.values(),
                 *filter(None, [jobs.tier_recalc.upgrade_message, jobs.tier_recalc.downgrade_message])]
        unknown = sorted(set(names) - pushes)
        if unknown:
            raise ValueError(f"jobs name push message(s) not in pushes.messages: {', '.join(unknown)}")
        tiers_named = [*jobs.birthday.messages, *jobs.birthday.voucher_tiers, *jobs.birthday.manager_alert_tiers,
                       *jobs.monthly_bulletin.tiers]
        strangers = sorted(set(tiers_named) - tier_ids)
        if strangers:
            raise ValueError(f"jobs name unknown tier(s): {', '.join(strangers)}")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
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

    @field_validator("events")
    @classmethod
    def _lower_event_names(cls, events: dict[str, str]) -> dict[str, str]:
        return {name.lower(): handler for name, handler in events.items()}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

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

    def handler_names(self) -> set[str]:
        names = {route.handler for route in self.routes} | set(self.events.values())
        return names | {self.fallbacks.text, self.fallbacks.other}


# --------------------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose composed nodes are kept so errors can name their line."""


def _line_map(node: yaml.Node, path: tuple = (), lines: dict | None = None) -> dict[tuple, int]:
    """Map every path in the document (keys and list indexes) to its 1-based line."""
    lines = {} if lines is None else lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            _line_map(value_node, path + (key,), lines)
            # A key's own line beats its value's (a block value starts on the next line).
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, path + (index,), lines)
    return lines


def format_path(loc: tuple) -> str:
    """('tiers', 2, 'min_spend') -> 'tiers[2].min_spend'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_rules(text: str, source: str = "config.yaml") -> Rules:
    """Parse YAML text into Rules, or raise ConfigError naming file, line and path."""
    try:
        node = yaml.compose(text, Loader=_LineLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    lines = _line_map(node) if node is not None else {}
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            line = _nearest_line(lines, loc)
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{source}, line {line}: {format_path(loc)}: {message}")
        raise ConfigError("\n".join(problems)) from None


def _nearest_line(lines: dict[tuple, int], loc: tuple) -> int:
    """The line of the deepest part of ``loc`` present in the file (a missing key names its parent)."""
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def load_rules(path: Path | str) -> Rules:
    """Read and parse a rules file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_rules(text, source=str(path))


class RulesHolder:
    """The rules in force; reloads the file when it changes, keeping the last good rules on error."""

    def __init__(
        self,
        path: Path,
        rules: Rules | None = None,
        check_every: float = 1.0,
        validate: "Callable[[Rules], None] | None" = None,
    ):
        self.path = Path(path)
        self._validate = validate
        self._rules = rules if rules is not None else load_rules(self.path)
        self._mtime = self._stat()
        self._checked_at = 0.0
        self._check_every = check_every
        self._lock = threading.Lock()
        self._listeners: list = []

    @property
    def current(self) -> Rules:
        """The rules in force, re-read at most once a second if the file changed."""
        import time

        now = time.monotonic()
        if now - self._checked_at >= self._check_every:
            self._checked_at = now
            if self._stat() != self._mtime:
                self.reload()
        return self._rules

    def on_reload(self, callback) -> None:
        """Call ``callback(rules)`` after every successful reload (the scheduler re-plans its jobs)."""
        self._listeners.append(callback)

    def reload(self) -> bool:
        """Re-read the file now; a bad file is refused with a log line and the old rules stay."""
        with self._lock:
            mtime = self._stat()
            try:
                rules = load_rules(self.path)
                if self._validate:
                    self._validate(rules)
            except ConfigError as exc:
                self._mtime = mtime  # do not re-log the same bad file every second
                log.error("rules reload refused, the last good rules stay in force: %s", exc)
                return False
            self._rules, self._mtime = rules, mtime
        log.info("rules reloaded from %s", self.path)
        for callback in self._listeners:
            callback(rules)
        return True

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None


def parse_clock(text: str) -> dtime:
    """'09:30' -> time(9, 30); '09:30:15' keeps the seconds."""
    try:
        parts = [int(p) for p in text.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
        return dtime(*parts)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not a time of day as HH:MM") from None

"""The bot's long-lived services, built once per process by create_app() and shared with the scheduler."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Callable

import redis as redis_lib

from bot.settings import Settings
from rules import Rules, RulesHolder
from scheduler.at_once import AtOnce
from storage.db import Database
from storage.redis import Keys

if TYPE_CHECKING:
    from bot.wechat import ApiClient


def system_clock() -> float:
    return time.time()


@dataclass
class BotState:
    settings: Settings
    rules_holder: RulesHolder
    db: Database
    redis: redis_lib.Redis
    keys: Keys
    clock: Callable[[], float] = system_clock  # seconds since the epoch; tests move it
    reply_redis: redis_lib.Redis | None = None  # short timeouts, for calls while a member waits (default: redis)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, "handler"))
    _wechat: "ApiClient | None" = None
    at_once: AtOnce = field(init=False, repr=False)  # sends alerts and replies right after their commit

    def __post_init__(self) -> None:
        if self.reply_redis is None:
            self.reply_redis = self.redis
        self.at_once = AtOnce(self)
        self.db.after_write(self.at_once.after_commit)

    @property
    def rules(self) -> Rules:
        return self.rules_holder.current

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def today(self) -> date:
        """Today's date in the rules' time zone, from the injected clock."""
        return self.rules.today(self.now())

    def moment_on(self, day: date) -> datetime:
        """The clock's now moved to ``day`` (its local time of day kept): the moment of a job run or a
        command told ``--date day`` (now itself when ``day`` is today)."""
        return self.rules.moment_on(day, self.now())

    @property
    def wechat(self) -> "ApiClient":
        """The WeChat API client (created on first use)."""
        if self._wechat is None:
            from bot.wechat import make_client  # the HTTP client stack is loaded only by processes that send

            self._wechat = make_client(self)
        return self._wechat

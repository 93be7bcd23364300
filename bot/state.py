"""The bot's long-lived services, built once per process by create_app()."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import redis as redis_lib

from bot.config import Rules, RulesHolder, Settings
from bot.router import Router
from storage.db import Database
from storage.redis import Keys


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
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, "handler"))
    _router: tuple[Rules, Router] | None = None
    _wechat = None

    @property
    def rules(self) -> Rules:
        return self.rules_holder.current

    def router(self, rules: Rules) -> Router:
        """The router for these rules, rebuilt only when the rules object changes."""
        cached = self._router
        if cached is None or cached[0] is not rules:
            cached = (rules, Router(rules))
            self._router = cached
        return cached[1]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    @property
    def wechat(self):
        """The WeChat API client (created on first use)."""
        if self._wechat is None:
            from bot.wechat import make_client

            self._wechat = make_client(self)
        return self._wechat

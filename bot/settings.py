"""Deployment settings, read only from environment variables; secrets never appear in a repr or a log."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from rules import DEFAULT_RULES_PATH, ROOT, ConfigError

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = f"sqlite:///{ROOT / 'instance' / 'bot.sqlite3'}"
# The sample key of WeChat's encryption guide: lets the demo console try safe (AES) mode.
DEMO_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WECHAT_API_BASE = "https://api.weixin.qq.com/cgi-bin/"
# The embedded default without WECHAT_API_BASE: the API stand-in served inside the bot (`serve` mounts it
# here and points delivery at its own address; other commands reach the bot running on the default port).
FAKE_WECHAT_PATH = "/_fake_wechat"
FAKE_WECHAT_API_BASE = f"http://127.0.0.1:5000{FAKE_WECHAT_PATH}/cgi-bin/"


@dataclass(frozen=True)
class Settings:
    """Deployment settings, read only from environment variables."""

    wechat_token: str = field(repr=False)
    wechat_appid: str
    wechat_secret: str = field(repr=False)
    wechat_aes_key: str | None = field(default=None, repr=False)
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    wechat_api_base: str = WECHAT_API_BASE
    api_key: str | None = field(default=None, repr=False)
    redis_prefix: str = "mbot"
    rules_path: Path = DEFAULT_RULES_PATH
    embedded: bool = False  # demo defaults: fake Redis, demo members, in-process scheduler
    fake_wechat: bool = False  # embedded without WECHAT_API_BASE: pushes go to the API stand-in inside the bot
    trusted_proxies: int = 0  # proxies in front of the app whose X-Forwarded-For names the client (sign-in throttling)

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
        # Production (REDIS_URL set) never falls back to the stand-in.
        fake_wechat = embedded and not env.get("WECHAT_API_BASE")
        proxies = (env.get("TRUSTED_PROXIES") or "0").strip()
        if not (proxies.isascii() and proxies.isdigit()) or int(proxies) > 10:
            raise ConfigError(f"environment: TRUSTED_PROXIES must be a whole number from 0 to 10, got {proxies!r}")
        return cls(
            wechat_token=env.get("WECHAT_TOKEN") or demo["WECHAT_TOKEN"],
            wechat_appid=env.get("WECHAT_APPID") or demo["WECHAT_APPID"],
            wechat_secret=env.get("WECHAT_SECRET") or demo["WECHAT_SECRET"],
            wechat_aes_key=env.get("WECHAT_AES_KEY") or (DEMO_AES_KEY if embedded else None),
            database_url=env.get("DATABASE_URL") or cls.database_url,
            redis_url=env.get("REDIS_URL") or None,
            wechat_api_base=env.get("WECHAT_API_BASE") or (FAKE_WECHAT_API_BASE if fake_wechat else WECHAT_API_BASE),
            api_key=env.get("API_KEY") or None,
            redis_prefix=env.get("REDIS_PREFIX") or "mbot",
            rules_path=Path(env.get("RULES_PATH") or DEFAULT_RULES_PATH),
            embedded=embedded,
            fake_wechat=fake_wechat,
            trusted_proxies=int(proxies),
        )

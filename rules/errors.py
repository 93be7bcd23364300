"""The project's own errors. Every error the bot raises on purpose derives from ``BotError``."""
from __future__ import annotations


class BotError(Exception):
    """Base of the project's own errors (as wechatpy has ``WeChatException``)."""


class ConfigError(BotError):
    """The configuration is invalid; the message names the file, line and path."""

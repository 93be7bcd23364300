"""What a handler sees: the parsed message, its arguments, and the bot's services."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from bot.config import Rules

if TYPE_CHECKING:
    import redis
    from sqlalchemy.engine import Row
    from wechatpy.messages import BaseMessage

    from bot.state import BotState


NOT_FETCHED = object()  # a Dialog's state not read from Redis yet


class Dialog:
    """A multi-step conversation's state, kept in Redis with a TTL so abandoned dialogs vanish."""

    def __init__(self, redis: "redis.Redis", key: str, ttl: int, stored: str | None | object = NOT_FETCHED):
        """``stored``: the raw Redis value when the caller already fetched it (saves a round trip)."""
        self._redis, self._key, self._ttl = redis, key, ttl
        self._loaded = stored is not NOT_FETCHED
        self._state: dict[str, Any] | None = json.loads(stored) if isinstance(stored, str) else None

    @property
    def state(self) -> dict[str, Any] | None:
        """``{"handler": name, "step": str, "data": {...}}`` or None when no dialog is open."""
        if not self._loaded:
            raw = self._redis.get(self._key)
            self._state = json.loads(raw) if raw else None
            self._loaded = True
        return self._state

    def start(self, handler: str, step: str, **data: Any) -> None:
        """Open (or move on) a dialog: the member's next text goes to ``handler``."""
        self._state = {"handler": handler, "step": step, "data": data}
        self._loaded = True
        self._redis.set(self._key, json.dumps(self._state, ensure_ascii=False), ex=self._ttl)

    def end(self) -> bool:
        """Close the dialog; True if one was open."""
        self._state, self._loaded = None, True
        return bool(self._redis.delete(self._key))


@dataclass
class Context:
    """Passed to every handler. ``args`` is the text after a prefix keyword (or the whole text)."""

    state: "BotState"
    rules: Rules
    message: "BaseMessage"
    args: str = ""
    now: datetime = field(default=None)  # type: ignore[assignment]
    _member: Any = field(default=None, repr=False)
    _member_loaded: bool = field(default=False, repr=False)
    _dialog: Dialog | None = field(default=None, repr=False)

    @property
    def openid(self) -> str:
        return self.message.source

    @property
    def db(self):
        return self.state.db

    @property
    def redis(self) -> "redis.Redis":
        return self.state.redis

    def key(self, kind: str, *parts: object) -> str:
        return self.state.keys(kind, *parts)

    @property
    def dialog(self) -> Dialog:
        if self._dialog is None:
            self._dialog = Dialog(self.redis, self.key("dialog", self.openid), self.rules.dialog.ttl_seconds)
        return self._dialog

    def use_fetched_dialog(self, stored: str | None) -> None:
        """Take the dialog state the dispatcher fetched together with its de-duplication claim."""
        self._dialog = Dialog(self.redis, self.key("dialog", self.openid), self.rules.dialog.ttl_seconds, stored)

    @property
    def member(self) -> "Row | None":
        """The member bound to this openid, loaded once as a read-only row (members' columns as attributes)."""
        if not self._member_loaded:
            from storage.members import member_row

            with self.db.engine.connect() as connection:
                self._member = member_row(connection, self.openid)
            self._member_loaded = True
        return self._member

    def text(self, message_name: str, /, **values: Any) -> str:
        """Render member-facing message ``message_name`` from config.yaml."""
        return self.rules.messages.render(message_name, **values)


Handler = Callable[[Context], "str | None"]


def member_required(handler: Handler) -> Handler:
    """Mark a handler as for bound members only; others get the bind hint."""
    handler.member_required = True  # type: ignore[attr-defined]
    return handler

"""What a handler sees: the parsed message, its arguments, the rules, and the bot's services."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Callable

from bot.dialogs import NOT_FETCHED, DialogState
from bot.router import Router, router_for
from rules import Rules
from storage import members

if TYPE_CHECKING:
    import redis
    from wechatpy.messages import BaseMessage

    from sqlalchemy.orm import Session

    from bot.services import BotState
    from storage.db import Database
    from storage.reads import Reads


@dataclass
class Context:
    """Passed to every handler. ``args`` is the text after a prefix keyword (or the whole text)."""

    state: "BotState"
    rules: Rules
    message: "BaseMessage"
    args: str = ""
    now: datetime = field(default=None)  # type: ignore[assignment]
    _member: Any = field(default=NOT_FETCHED, repr=False)
    _staff: Any = field(default=NOT_FETCHED, repr=False)
    _dialog: DialogState | None = field(default=None, repr=False)
    _reads: Any = field(default=None, repr=False)
    # How the member is loaded: a handler may name a statement that loads more with it (bot.guards.loads_member).
    member_loader: Callable[["Reads", str, Rules, date], "tuple | None"] | None = field(default=None, repr=False)
    wrote: bool = field(default=False, repr=False)  # a write transaction of this message committed
    # Told when the message's first write transaction commits (bot.dispatch: its claim is marked changed).
    on_write: Callable[[], None] | None = field(default=None, repr=False)

    @cached_property
    def openid(self) -> str:
        return self.message.source  # wechatpy converts the field on every read

    @cached_property
    def db(self) -> "Database":
        """The bot's database; a write transaction that commits sets ``wrote``."""
        return _WritesNoted(self.state.db, self._written)  # type: ignore[return-value]

    def _written(self) -> None:
        if not self.wrote:
            self.wrote = True
            if self.on_write is not None:
                self.on_write()

    @property
    def redis(self) -> "redis.Redis":
        """Redis for the reply path: short timeouts, since the member is waiting."""
        return self.state.reply_redis

    @property
    def router(self) -> Router:
        return router_for(self.rules)

    @property
    def today(self) -> date:
        """Today in the rules' time zone."""
        return self.rules.today(self.now)

    def key(self, kind: str, *parts: object) -> str:
        return self.state.keys(kind, *parts)

    @property
    def dialog(self) -> DialogState:
        if self._dialog is None:
            self._dialog = DialogState(self.redis, self.key("dialog", self.openid), self.rules.dialog.ttl_seconds)
        return self._dialog

    def use_fetched_dialog(self, stored: str | None) -> None:
        """Take the dialog state the dispatcher fetched together with its de-duplication claim."""
        self._dialog = DialogState(self.redis, self.key("dialog", self.openid), self.rules.dialog.ttl_seconds, stored)

    @property
    def reads(self) -> "Reads":
        """This message's single-statement reads (``storage.reads``), on the thread's kept connection."""
        if self._reads is None:
            self._reads = self.state.db.reads()
        return self._reads

    @property
    def member(self) -> Any:
        """The member bound to this openid, loaded once as a read-only row (members' columns as attributes)."""
        if self._member is NOT_FETCHED:
            if self.member_loader is not None:
                self._member = self.member_loader(self.reads, self.openid, self.rules, self.today)
            else:
                self._member = members.member_row(self.reads, self.openid)
        return self._member

    @property
    def staff(self) -> Any:
        """The staff record bound to this openid, if the sender is staff."""
        if self._staff is NOT_FETCHED:
            self._staff = members.staff_row(self.reads, self.openid)
        return self._staff

    def text(self, message_name: str, /, **values: Any) -> str:
        """Render member-facing message ``message_name`` from config.yaml."""
        return self.rules.messages.render(message_name, **values)


class _WritesNoted:
    """A database whose committed write transactions are reported: WeChat's retry of a message that
    changed something must not run it again (bot/claims.py)."""

    def __init__(self, db: "Database", committed: Callable[[], None]):
        self._db, self._committed = db, committed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @contextmanager
    def write(self) -> Iterator["Session"]:
        with self._db.write() as session:
            yield session
        self._committed()


Handler = Callable[[Context], "str | None"]


def read_only(handler: Handler) -> Handler:
    """Mark a handler that changes nothing: WeChat's retries may recompute its answer, so the
    dispatcher neither claims the message nor keeps the reply (one Redis round trip instead of two)."""
    handler.read_only = True  # type: ignore[attr-defined]
    return handler

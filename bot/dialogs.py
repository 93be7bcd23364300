"""Dialogs: questions asked one message at a time, with their state in Redis (PTB's ConversationHandler as data).

A ``Flow`` is a handler's list of questions (``Ask``), an optional confirmation and a ``finish``
step. Answers given up front (``绑定 D001 138…``) skip their questions; each answer is read
by its ``Ask.read`` (raise ``Invalid`` to ask again); a confirmation goes on once, however many
yes words arrive at the same moment (the others get ``dialog_confirm_repeated``); the state lives under
``prefix:dialog:<openid>`` for ``dialog.ttl_seconds``, so an abandoned dialog vanishes; any
keyword starts afresh and ``取消`` leaves (bot/dispatch.py).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis as redis_lib

from rules import BotError

if TYPE_CHECKING:
    from bot.context import Context

log = logging.getLogger(__name__)

NOT_FETCHED = object()  # a dialog's state not read from Redis yet
CONFIRM = "confirm"  # the step name of a flow's confirmation


class DialogState:
    """One member's open dialog in Redis: ``{"handler": name, "step": str, "data": {...}}`` or nothing."""

    def __init__(self, redis: redis_lib.Redis, key: str, ttl: int, stored: str | None | object = NOT_FETCHED):
        """``stored``: the raw Redis value when the caller already fetched it (saves a round trip)."""
        self._redis, self._key, self._ttl = redis, key, ttl
        self._loaded = stored is not NOT_FETCHED
        self._state: dict[str, Any] | None = json.loads(stored) if isinstance(stored, str) else None

    # With Redis unreachable no dialog is open and none can be kept: the member still gets
    # answers, and a question's reply is then read as a fresh message.

    @property
    def state(self) -> dict[str, Any] | None:
        if not self._loaded:
            try:
                raw = self._redis.get(self._key)
            except redis_lib.RedisError:
                log.warning("Redis unavailable: no dialog state for this message")
                raw = None
            self._state = json.loads(raw) if raw else None
            self._loaded = True
        return self._state

    def start(self, handler: str, step: str, **data: Any) -> None:
        """Open (or move on) a dialog: the member's next text goes to ``handler``."""
        self._state = {"handler": handler, "step": step, "data": data}
        self._loaded = True
        try:
            self._redis.set(self._key, json.dumps(self._state, ensure_ascii=False), ex=self._ttl)
        except redis_lib.RedisError:
            log.warning("Redis unavailable: the dialog of %s cannot be kept", self._key.rsplit(":", 1)[-1])

    def end(self) -> bool:
        """Close the dialog; True if one was open."""
        was_open = self._state is not None
        self._state, self._loaded = None, True
        try:
            return bool(self._redis.delete(self._key))
        except redis_lib.RedisError:
            return was_open


class Invalid(BotError):
    """An answer that cannot be used: the member gets message ``message`` and the question again."""

    def __init__(self, message: str, **values: Any):
        super().__init__(message)
        self.message, self.values = message, values


def one_word(key: str, prompt: str) -> Callable[[str], dict[str, Any]]:
    """An answer that must not be empty; stored as the stripped text."""

    def read(text: str) -> dict[str, Any]:
        if not text.strip():
            raise Invalid(prompt)
        return {key: text.strip()}

    return read


@dataclass(frozen=True)
class Ask:
    """One question: ``prompt`` (a message name) asks it; ``read`` turns the reply into answers."""

    key: str
    prompt: str
    read: Callable[[str], dict[str, Any]] | None = None  # default: the stripped text, not empty

    def answers(self, text: str) -> dict[str, Any]:
        return (self.read or one_word(self.key, self.prompt))(text)


@dataclass(frozen=True)
class Flow:
    """A handler's dialog: questions in order, an optional confirmation, then ``finish(ctx, answers)``."""

    handler: str  # the handler the member's replies go to
    steps: tuple[Ask, ...]
    finish: Callable[["Context", dict[str, Any]], str | None]
    confirm: str | None = None  # a message name showing the answers; a yes word (dialog.yes_words) goes on
    declined: str | None = None  # a message name: any other answer to the confirmation ends the dialog with it
    # (default: the confirmation hint, and the question stays open)

    def handle(self, ctx: "Context", **given: Any) -> str | None:
        """Answer the open step if this flow's dialog is open, else start with the answers ``given``."""
        state = ctx.dialog.state
        if state is not None and state["handler"] == self.handler:
            return self._reply(ctx, state["step"], dict(state["data"]), ctx.args)
        return self._next(ctx, {key: value for key, value in given.items() if value is not None})

    def _reply(self, ctx: "Context", step: str, answers: dict[str, Any], text: str) -> str | None:
        if step == CONFIRM:
            if not ctx.router.is_yes(text):
                if self.declined is None:
                    return ctx.text("dialog_confirm_hint")
                ctx.dialog.end()
                return ctx.text(self.declined, **answers)
            # Two confirmations sent at once (two messages with their own MsgIds, not WeChat's retry of one)
            # both find the dialog at this step: only the one that closes it goes on, and the other is told
            # so, never left with no answer at all.
            if not ctx.dialog.end():
                return ctx.text("dialog_confirm_repeated", **answers)
            answers[CONFIRM] = True
            return self._next(ctx, answers)
        ask = next(a for a in self.steps if a.key == step)
        try:
            answers.update(ask.answers(text))
        except Invalid as exc:
            return ctx.text(exc.message, **(answers | exc.values))
        return self._next(ctx, answers)

    def _next(self, ctx: "Context", answers: dict[str, Any]) -> str | None:
        for ask in self.steps:
            if ask.key not in answers:
                ctx.dialog.start(self.handler, ask.key, **answers)
                return ctx.text(ask.prompt, **answers)
        if self.confirm and not answers.get(CONFIRM):
            ctx.dialog.start(self.handler, CONFIRM, **answers)
            return ctx.text(self.confirm, **answers)
        if ctx.dialog.state is not None:
            ctx.dialog.end()
        answers.pop(CONFIRM, None)
        return self.finish(ctx, answers)

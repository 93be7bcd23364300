"""Pushes that leave at once: alerts to staff and replies and notices to members.

An operation plans them in the outbox with ``at_once`` (``storage.outbox``); the moment its
transaction commits, the process that committed it — a web worker, the API, a CLI command or the
scheduler, whichever runs — sends them in the background through ``scheduler.delivery.send_now``:
the drain's own claim, Redis markers, sender and error classification, so a row goes once whoever
sends it. What this cannot send (the process dies, Redis or WeChat is out of reach, quiet hours)
stays pending for the outbox drain, the safety net (``scheduler run``).
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from redis import RedisError
from sqlalchemy.exc import SQLAlchemyError

from storage import outbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from bot.services import BotState

log = logging.getLogger(__name__)

THREADS = 2  # a few alerts per chat message: two sends at a time are plenty, and keep cores for answers


class AtOnce:
    """This process's background sender of the pushes planned ``at_once``."""

    def __init__(self, state: "BotState"):
        self._state = state
        self._lock = threading.Lock()
        self._pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked worker makes its own
        self._pending: set[Future] = set()

    def after_commit(self, session: "Session") -> None:
        """``Database.after_write``: send in the background what the committed transaction planned at once."""
        ids = outbox.take_at_once(session)
        if ids:
            future = self._executor().submit(self.send, ids)
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._done)

    def send(self, ids: list[int]) -> list[outbox.Outcome]:
        """Send these rows now, here; what cannot go now is left to the drain (logged, never raised)."""
        from scheduler.delivery import send_now  # the HTTP client stack: loaded by processes that send

        try:
            return send_now(self._state, ids)
        except (RedisError, SQLAlchemyError) as exc:  # out of reach now: the rows wait for the drain
            log.warning("could not send %d push(es) at once (%s); the outbox drain sends them", len(ids),
                        type(exc).__name__)
        except Exception:
            log.exception("could not send %d push(es) at once; the outbox drain sends them", len(ids))
        return []

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every send handed over so far is done (tests, and a process about to stop)."""
        with self._lock:
            pending = set(self._pending)
        wait(pending, timeout=timeout)

    def shutdown(self) -> None:
        """Finish the sends handed over, then stop the threads."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and pool[0] == os.getpid():
            pool[1].shutdown(wait=True)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool[0] != os.getpid():
                self._pool = (os.getpid(), ThreadPoolExecutor(THREADS, thread_name_prefix="at-once"))
            return self._pool[1]

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

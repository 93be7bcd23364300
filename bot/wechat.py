"""The WeChat HTTP API client, pointed at WECHAT_API_BASE (the local stand-in in tests and the demo).

The access_token lives in Redis, shared by every process; one process at a time fetches a new
one (a Redis lock), the others wait for it. A token WeChat calls invalid is dropped only if it
is still the one that failed, so a token another process just fetched survives. Without Redis
(down, restarted empty, stalled) a process keeps the token it has, or fetches one of its own.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import redis as redis_lib
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from bot.http import PooledSession
from storage.redis import Fallback, delete_if_same

if TYPE_CHECKING:
    from bot.services import BotState

log = logging.getLogger(__name__)

HTTP_TIMEOUT_SECONDS = 5
TOKEN_ERRORS = {40001, 40014, 42001}  # invalid credential, invalid token, token expired
T = TypeVar("T")


class TokenStore:
    """The shared access_token: cached in Redis, fetched by one process at a time.

    While Redis cannot be reached the process goes on with the token it holds, or fetches one of
    its own (WeChat keeps the previous token valid for five minutes after a new one is fetched);
    a token WeChat then calls invalid is fetched again by ``ApiClient.call``.
    """

    LOCAL_SECONDS = 5.0  # reuse a token read from Redis this long before asking again

    def __init__(self, redis: redis_lib.Redis, key: str, lock_key: str, fetch: Callable[[], dict]):
        self._redis, self._key, self._lock_key, self._fetch = redis, key, lock_key, fetch
        self._local: tuple[str, float] | None = None
        self._redis_ok = Fallback("the access_token")

    def current(self, fresh: bool = False) -> str:
        """A valid token, fetching a new one if there is none; ``fresh`` skips the short local copy."""
        local = self._local
        if local and not fresh and time.monotonic() - local[1] < self.LOCAL_SECONDS:
            return local[0]
        token = self._redis_ok.call(self._current, lambda: self._without_redis(fresh))
        self._local = (token, time.monotonic())
        return token

    def _without_redis(self, fresh: bool) -> str:
        if self._local and not fresh:
            return self._local[0]
        token = self._fetch()["access_token"]
        log.info("fetched an access_token of this process's own (Redis unavailable)")
        return token

    def _current(self) -> str:
        deadline = time.monotonic() + 15
        while True:
            token = self._redis.get(self._key)
            if token:
                return token
            mine = uuid.uuid4().hex
            if self._redis.set(self._lock_key, mine, nx=True, ex=15):
                try:
                    return self._fetch_and_store()
                finally:
                    try:  # release only our own lock: after a stall past its expiry another process may hold it
                        delete_if_same(self._redis, self._lock_key, mine)
                    except redis_lib.RedisError:
                        pass  # it expires by itself
            if time.monotonic() > deadline:
                raise TimeoutError("no access_token: another process holds the fetch lock")
            time.sleep(0.05)  # another process is fetching

    def _fetch_and_store(self) -> str:
        token = self._redis.get(self._key)  # fetched while we waited for the lock
        if token:
            return token
        result = self._fetch()
        token, expires_in = result["access_token"], int(result.get("expires_in", 7200))
        log.info("fetched a new access_token (valid %s s)", expires_in)
        try:  # renew well before WeChat's expiry so a request never carries a token about to lapse
            self._redis.set(self._key, token, ex=max(expires_in - 300, 60))
        except redis_lib.RedisError:
            log.warning("could not share the new access_token through Redis; this process keeps it")
        return token

    def drop_if_same(self, token: str) -> bool:
        """Forget ``token`` if it is still the current one; True if it was."""
        self._local = None
        return self._redis_ok.call(lambda: delete_if_same(self._redis, self._key, token), lambda: False)


class ApiClient(WeChatClient):
    """wechatpy's client with a configurable API base, explicit timeouts and the shared token."""

    def __init__(self, api_base: str, appid: str, secret: str, tokens_for: Callable[["ApiClient"], TokenStore],
                 timeout: float = HTTP_TIMEOUT_SECONDS):
        self.API_BASE_URL = api_base.rstrip("/") + "/"
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self._http = PooledSession()
        self.tokens = tokens_for(self)
        self._pinned = threading.local()

    def fetch_access_token(self) -> dict:
        # wechatpy hard-codes the public host here; use the configured base instead.
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )

    @property
    def access_token(self) -> str:
        return getattr(self._pinned, "token", None) or self.tokens.current()

    @contextmanager
    def _pin(self, token: str):
        self._pinned.token = token
        try:
            yield
        finally:
            self._pinned.token = None

    def call(self, api_call: Callable[[], T]) -> T:
        """Run ``api_call``; on a token error drop that token (if still current) and retry once."""
        token = self.tokens.current()
        try:
            with self._pin(token):
                return api_call()
        except WeChatClientException as exc:
            if errcode(exc) not in TOKEN_ERRORS:
                raise
            self.tokens.drop_if_same(token)
        with self._pin(self.tokens.current(fresh=True)):
            return api_call()

    def send_text(self, openid: str, text: str) -> dict:
        """A customer-service text message (only to members who wrote within 48 hours)."""
        return self.call(lambda: self.message.send_text(openid, text))

    def send_template(self, openid: str, template_id: str, data: dict, url: str | None = None) -> dict:
        return self.call(lambda: self.message.send_template(openid, template_id, data, url=url))


def errcode(exc: WeChatClientException) -> int | None:
    """WeChat's errcode of a failed call, as a number (None: no errcode, e.g. an HTTP error)."""
    try:
        return int(exc.errcode) if exc.errcode is not None else None
    except (TypeError, ValueError):
        return None


def make_client(state: "BotState") -> ApiClient:
    settings = state.settings
    rules = state.rules
    return ApiClient(
        settings.wechat_api_base,
        settings.wechat_appid,
        settings.wechat_secret,
        tokens_for=lambda client: TokenStore(
            state.redis, state.keys("wechat", "token"), state.keys("wechat", "token-lock"),
            client.fetch_access_token,
        ),
        timeout=rules.pushes.http_timeout_seconds,
    )

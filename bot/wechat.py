"""The WeChat HTTP API client, pointed at WECHAT_API_BASE (a local stand-in in tests and the demo)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from wechatpy import WeChatClient
from wechatpy.session.redisstorage import RedisStorage

if TYPE_CHECKING:
    from bot.state import BotState

HTTP_TIMEOUT_SECONDS = 5


class ApiClient(WeChatClient):
    """wechatpy's client with a configurable API base and the access token kept in Redis."""

    def __init__(self, api_base: str, *args, **kwargs):
        self.API_BASE_URL = api_base.rstrip("/") + "/"
        super().__init__(*args, **kwargs)

    def fetch_access_token(self):
        # wechatpy hard-codes the public host here; use the configured base instead.
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


def make_client(state: "BotState") -> ApiClient:
    settings = state.settings
    return ApiClient(
        settings.wechat_api_base,
        settings.wechat_appid,
        settings.wechat_secret,
        session=RedisStorage(state.redis, prefix=state.keys("wechat")),
        timeout=HTTP_TIMEOUT_SECONDS,
    )

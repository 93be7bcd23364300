"""A lean HTTP transport for wechatpy's client: urllib3's pool behind the few requests.Session calls it makes.

Sending pushes is HTTP-bound; requests adds about half a millisecond of Python per call on
top of urllib3, which halves push throughput on two cores. Errors come out as requests'
exceptions, so wechatpy and the delivery code handle them unchanged.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import requests
import urllib3


class Response:
    """The part of requests.Response that wechatpy reads."""

    def __init__(self, status: int, content: bytes, url: str):
        self.status_code, self.content, self.url = status, content, url
        self.request = None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"HTTP {self.status_code} from {self.url}", response=self)


class PooledSession:
    """``request``/``get``/``post`` like requests.Session, over one urllib3 connection pool."""

    def __init__(self, max_connections: int = 64):
        self._pool = urllib3.PoolManager(maxsize=max_connections, retries=False)

    def request(self, method: str, url: str, params: dict | None = None, data: bytes | str | None = None,
                timeout: float | None = None, **_: Any) -> Response:
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        body = data.encode("utf-8") if isinstance(data, str) else data
        try:
            reply = self._pool.request(method, url, body=body, timeout=timeout,
                                       headers={"Content-Type": "application/json"} if body else None)
        except urllib3.exceptions.TimeoutError as exc:
            raise requests.Timeout(str(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:  # refused, reset, protocol errors
            raise requests.ConnectionError(str(exc)) from exc
        return Response(reply.status, reply.data, url)

    def get(self, url: str, params: dict | None = None, **kwargs: Any) -> Response:
        return self.request("GET", url, params=params, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.request("POST", url, **kwargs)

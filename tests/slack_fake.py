"""A Slack-like HTTP receiver (Web API ``chat.postMessage`` and an incoming webhook) plus a Prometheus
``/api/v1/query`` stand-in, on loopback. It records every request and answers from a script: ``ok``, ``429``
(with ``Retry-After``), ``500``, ``hang`` (until released or the client gives up) or ``slow`` (``ok`` after
``slow_s`` seconds)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

WEBHOOK_PATH = "/services/T0000/B0000/hook-secret-9f8e7d6c5b4a"
BOT_TOKEN = "xoxb-bot-token-1234567890-abcdef"

PROMETHEUS_VALUES = {
    "namespace_app_track:http_requests_5xx:ratio_rate1m": {"canary": "0.125", "stable": "0.002"},
    "namespace_app_track:http_request_duration_seconds:p95_rate1m": {"canary": "2.4", "stable": "0.31"},
    "namespace_app_track:http_requests:rate1m": {"canary": "12", "stable": "240"},
    "namespace_app_track:container_memory_working_set_bytes:sum": {"canary": "1020054732.8", "stable": "1932735283.2"},
}


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    authorization: str
    at: float
    answer: str


@dataclass
class FakeSlack:
    url: str = ""
    script: list[str] = field(default_factory=list)  # consumed one per request; empty means "ok"
    default: str = "ok"
    retry_after: str = "1"
    slow_s: float = 1.5
    requests: list[Received] = field(default_factory=list)
    prometheus_queries: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _ts: int = 0

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.answer in ("ok", "slow")]

    async def wait_delivered(self, count: int, within: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.delivered) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} delivered messages, got {[r.answer for r in self.requests]}")
            await asyncio.sleep(0.01)
        return self.delivered

    def _next(self) -> str:
        return self.script.pop(0) if self.script else self.default

    async def _answer(self, request: web.Request, ok: web.Response) -> web.Response:
        answer = self._next()
        body = await request.json()
        self.requests.append(
            Received(request.path, body, request.headers.get("Authorization", ""), time.monotonic(), answer)
        )
        if answer == "hang":
            await self.release.wait()
        if answer == "slow":
            await asyncio.sleep(self.slow_s)
            return ok
        if answer == "429":
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": self.retry_after}
            )
        if answer in ("500", "hang"):
            return web.Response(status=500, text="internal error")
        return ok

    async def post_message(self, request: web.Request) -> web.Response:
        self._ts += 1
        ts = f"1700000000.{self._ts:06d}"
        return await self._answer(request, web.json_response({"ok": True, "channel": "C0CANARY", "ts": ts}))

    async def auth_test(self, request: web.Request) -> web.Response:
        """``auth.test`` (read-only; ``check-config --probe``): not recorded among the messages."""
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "team": "Canary Team", "user": "canary-responder"})

    async def webhook(self, request: web.Request) -> web.Response:
        return await self._answer(request, web.Response(text="ok"))

    async def query(self, request: web.Request) -> web.Response:
        self.prometheus_queries.append(dict(request.query))
        metric = request.query["query"].split("{", 1)[0]
        values = PROMETHEUS_VALUES.get(metric, {})
        result = [{"metric": {"track": t}, "value": [1.0, v]} for t, v in values.items()]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})


@asynccontextmanager
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    app = web.Application()
    app.router.add_post("/api/chat.postMessage", fake.post_message)
    app.router.add_post("/api/auth.test", fake.auth_test)
    app.router.add_post(WEBHOOK_PATH, fake.webhook)
    app.router.add_get("/api/v1/query", fake.query)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    try:
        yield fake
    finally:
        fake.release.set()
        await server.close()

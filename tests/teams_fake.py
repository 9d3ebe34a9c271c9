"""A Teams-like webhook receiver on loopback: a Workflows trigger URL ("When a Teams webhook request is received")
whose query carries the flow's signature, as Power Automate issues them. It records every request and answers from
a script: ``ok`` (202 Accepted, as Workflows does), ``429`` (with ``Retry-After``), ``500`` or ``hang`` (until
released or the client gives up). A wrong signature gets 401."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

WORKFLOW_PATH = "/workflows/5d1f0c2a9b8e4f7d/triggers/manual/paths/invoke"
SIGNATURE = "teams-sig-Q2FuYXJ5UmVzcG9uZGVyVGVzdA"
WEBHOOK_QUERY = f"api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIGNATURE}"


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    content_type: str
    at: float
    answer: str

    @property
    def card(self) -> dict[str, Any]:
        content: dict[str, Any] = self.body["attachments"][0]["content"]
        return content

    @property
    def headline(self) -> str:
        """The first text of the card (its headline band)."""
        return str(self.card["body"][0]["items"][0]["inlines"][0]["text"])


@dataclass
class FakeTeams:
    url: str = ""  # the webhook URL, signature included
    script: list[str] = field(default_factory=list)  # consumed one per request; empty means `default`
    default: str = "ok"
    retry_after: str = "1"
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.answer == "ok"]

    async def wait_delivered(self, count: int, within: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.delivered) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} delivered cards, got {[r.answer for r in self.requests]}")
            await asyncio.sleep(0.01)
        return self.delivered

    async def invoke(self, request: web.Request) -> web.Response:
        if request.query.get("sig") != SIGNATURE:
            return web.json_response({"error": {"code": "DirectApiAuthorizationRequired"}}, status=401)
        answer = self.script.pop(0) if self.script else self.default
        body = await request.json()
        self.requests.append(Received(request.path, body, request.content_type, time.monotonic(), answer))
        if answer == "hang":
            await self.release.wait()
        if answer == "429":
            return web.json_response(
                {"error": {"code": "TooManyRequests", "message": f"Rate limit on {request.path_qs}"}},
                status=429,
                headers={"Retry-After": self.retry_after},
            )
        if answer in ("500", "hang"):
            # Echo the URL, as some gateways do: the client must redact it from its error text.
            return web.Response(status=500, text=f"internal error at {request.url}")
        return web.Response(status=202)


@asynccontextmanager
async def fake_teams() -> AsyncIterator[FakeTeams]:
    fake = FakeTeams()
    app = web.Application()
    app.router.add_post(WORKFLOW_PATH, fake.invoke)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(access_log=None)  # Teams' own access log (the URL in it) is not the responder's
    fake.url = str(server.make_url(WORKFLOW_PATH)) + "?" + WEBHOOK_QUERY
    try:
        yield fake
    finally:
        fake.release.set()
        await server.close()

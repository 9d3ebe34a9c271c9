"""An unexpected exception in any handler is a JSON 500 in the usual error shape, with neither traceback nor
secrets in the body, logged at ERROR with its traceback and counted by route: never aiohttp's plain-text 500.

No handler is known to fail this way (each known one became a 4xx or 503), so the real application gets one
extra route whose handler raises, the way a future bug would."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import ADMIN_TOKEN, bearer, write_config

from responder.app import build_app
from responder.config import load_settings
from responder.http.server import RUNTIME
from responder.metrics import Metrics

BOOM = "/api/v1/boom/{name}"


async def boom(request: web.Request) -> web.Response:
    raise RuntimeError(f"bug while handling {request.match_info['name']}: token {ADMIN_TOKEN}")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, Metrics]]:
    settings, secrets = load_settings(write_config(tmp_path), {})
    metrics = Metrics()
    app = build_app(settings, secrets, metrics=metrics, audit_sink=None)
    app.router.add_get(BOOM, boom)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        assert app[RUNTIME].services is not None
        yield str(server.make_url("")).rstrip("/"), metrics
    finally:
        await server.close()


def internal_errors(metrics: Metrics, route: str) -> float:
    value = metrics.registry.get_sample_value("canary_responder_http_internal_errors_total", {"route": route})
    return value or 0.0


async def test_an_unexpected_exception_is_a_json_500_logged_and_counted(
    server: tuple[str, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    url, metrics = server
    async with aiohttp.ClientSession() as session:
        for name in ("first", "second"):
            async with session.get(f"{url}/api/v1/boom/{name}", headers=bearer(ADMIN_TOKEN)) as response:
                assert (response.status, response.content_type) == (500, "application/json")
                text = await response.text()
                body = await response.json()
    assert body["error"] == "internal" and body["message"]
    assert "Traceback" not in text and "RuntimeError" not in text and "bug while" not in text
    assert ADMIN_TOKEN not in text
    assert internal_errors(metrics, BOOM) == 2  # by route template: the label stays bounded
    [record, *_] = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "responder.http"]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert "GET" in record.getMessage() and BOOM in record.getMessage()


async def test_http_errors_keep_their_own_status(server: tuple[str, Metrics]) -> None:
    url, metrics = server
    async with aiohttp.ClientSession() as session, session.get(f"{url}/api/v1/nope") as response:
        assert response.status == 404 and (await response.json())["error"] == "not_found"
    assert internal_errors(metrics, BOOM) == 0

"""The webhook's HTTP contract: every bad input gets its status code and JSON error, is counted and audited,
and nothing is acted on; everything real Alertmanagers send is accepted."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from support import (
    ADMIN_TOKEN,
    ALL_SECRETS,
    BASIC_PASSWORD,
    WEBHOOK_TOKEN,
    WEBHOOK_TOKEN_NEXT,
    Running,
    alert,
    bearer,
    notification,
    running_responder,
    write_config,
)

from responder.testing.emulator import Emulator

pytestmark = pytest.mark.usefixtures("cluster")


def rejected(running: Running, reason: str) -> float:
    value = running.services.metrics.registry.get_sample_value(
        "canary_responder_rejected_requests_total", {"reason": reason}
    )
    return value or 0.0


async def expect_error(response: aiohttp.ClientResponse, status: int, code: str) -> dict[str, object]:
    assert response.status == status
    assert response.content_type == "application/json"
    body: dict[str, object] = await response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


async def audited_rejections(running: Running) -> list[str]:
    entries = await running.services.store.audit_entries(kind="rejected")
    return [str(e.data["reason"]) for e in entries]


@pytest.fixture
async def running(tmp_path: Path, cluster: tuple[Emulator, str]) -> Running:
    config = write_config(
        tmp_path, kube_url=cluster[1], listen={"host": "127.0.0.1", "port": 0, "body_limit_bytes": 4096}
    )
    async with running_responder(config) as running:
        yield running  # type: ignore[misc]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic " + base64.b64encode(b"alertmanager:wrong").decode()},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Token " + "x" * 20},
    ],
)
async def test_missing_or_bad_credentials_are_401(
    running: Running, cluster: tuple[Emulator, str], headers: dict[str, str]
) -> None:
    response = await running.post_alerts(notification(alert()), headers=headers)
    await expect_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert rejected(running, "unauthorized") == 1
    assert await audited_rejections(running) == []  # audited as a summary per interval: test_rejection_flood.py
    await running.services.engine.drain()
    assert cluster[0].mutations == []


async def test_rotation_token_and_basic_auth_are_accepted(running: Running) -> None:
    response = await running.post_alerts(notification(alert(status="resolved")), headers=bearer(WEBHOOK_TOKEN_NEXT))
    assert response.status == 200
    basic = base64.b64encode(f"alertmanager:{BASIC_PASSWORD}".encode()).decode()
    response = await running.post_alerts(
        notification(alert(status="resolved")), headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status == 200


async def test_non_json_content_type_is_415(running: Running) -> None:
    response = await running.session.post(
        f"{running.url}/api/v1/alerts", data=b"{}", headers={**bearer(), "Content-Type": "text/plain"}
    )
    body = await expect_error(response, 415, "unsupported_media_type")
    assert "text/plain" in str(body["message"])
    assert rejected(running, "unsupported_media_type") == 1


async def test_body_over_the_limit_is_413(running: Running) -> None:
    big = notification(alert(description="x" * 8000))
    response = await running.post_alerts(big)
    await expect_error(response, 413, "too_large")

    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(10):
            yield b" " * 1000

    response = await running.session.post(
        f"{running.url}/api/v1/alerts", data=chunks(), headers={**bearer(), "Content-Type": "application/json"}
    )
    await expect_error(response, 413, "too_large")
    assert rejected(running, "too_large") == 2


async def test_malformed_json_is_400(running: Running) -> None:
    response = await running.session.post(
        f"{running.url}/api/v1/alerts",
        data=b'{"version": "4",',
        headers={**bearer(), "Content-Type": "application/json"},
    )
    await expect_error(response, 400, "malformed_json")
    assert rejected(running, "malformed_json") == 1


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda n: n.pop("alerts"), "alerts"),
        (lambda n: n.update(version="3"), "version"),
        (lambda n: n["alerts"][0].update(status="pending"), "alerts.0.status"),
        (lambda n: n["alerts"][0]["labels"].update(app=7), "alerts.0.labels.app"),
        (lambda n: n["alerts"][0].update(startsAt="2026-11-27T12:00:00"), "alerts.0.startsAt"),
        (lambda n: n["alerts"][0].pop("fingerprint"), "alerts.0.fingerprint"),
        (lambda n: n.update(truncatedAlerts=-1), "truncatedAlerts"),
        # outside the documented ranges (README, HTTP): what Go tooling and SQLite can hold
        (lambda n: n["alerts"][0].update(startsAt="0001-01-01T00:00:00Z"), "alerts.0.startsAt"),
        (lambda n: n["alerts"][0].update(startsAt="9999-12-31T23:59:59Z"), "alerts.0.startsAt"),
        (lambda n: n["alerts"][0].update(endsAt="9999-12-31T23:59:59Z"), "alerts.0.endsAt"),
        (lambda n: n.update(truncatedAlerts=2**63), "truncatedAlerts"),  # once killed the store writer
    ],
)
async def test_schema_violations_are_422_naming_the_field(
    running: Running, cluster: tuple[Emulator, str], mutate, path: str
) -> None:
    payload = notification(alert())
    mutate(payload)
    response = await running.post_alerts(payload)
    body = await expect_error(response, 422, "schema")
    assert path in [e["path"] for e in body["errors"]]  # type: ignore[union-attr]
    assert rejected(running, "schema") == 1
    await running.services.engine.drain()
    assert cluster[0].mutations == []
    assert await running.services.store.rollbacks() == []


async def test_accepts_what_newer_alertmanagers_send(running: Running) -> None:
    payload = notification(
        alert(status="resolved"),
        receiver="web\\.hook",
        truncatedAlerts=3,
        notification_reason="repeat",
        routeLabels={"team": "shop"},
    )
    payload["alerts"][0]["startsAt"] = "2026-11-27T12:00:00.123456789Z"
    payload["alerts"][0]["endsAt"] = "2026-11-27T12:05:00.987654321+01:00"
    payload["alerts"][0]["someFutureField"] = {"nested": True}
    response = await running.post_alerts(payload)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "accepted" and body["events"] == 1
    metrics = running.services.metrics.registry
    assert metrics.get_sample_value("canary_responder_truncated_alerts_total") == 3
    receipt = (await running.services.store.audit_entries(kind="receipt"))[0]
    assert receipt.data["truncated_alerts"] == 3 and receipt.data["receiver"] == "web\\.hook"


async def test_store_unavailable_is_503_then_recovers(running: Running, tmp_path: Path) -> None:
    blocker = sqlite3.connect(tmp_path / "responder.db", timeout=0.1, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database: the inbox cannot be written
    try:
        response = await running.post_alerts(notification(alert()))
        body = await expect_error(response, 503, "store_unavailable")
        assert response.headers["Retry-After"]
        assert "retry" in str(body["message"])
        ready = await running.session.get(f"{running.url}/readyz")
        assert ready.status == 503 and (await ready.json())["checks"]["inbox"].startswith("failing")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert rejected(running, "store_unavailable") == 1
    response = await running.post_alerts(notification(alert()))
    assert response.status == 200


async def test_probes_and_metrics(running: Running) -> None:
    assert (await running.session.get(f"{running.url}/healthz")).status == 200
    ready = await running.session.get(f"{running.url}/readyz")
    assert ready.status == 200, await ready.text()
    assert (await ready.json())["checks"] == {"inbox": "ok", "kubernetes": "ok"}
    await running.post_alerts(notification(alert()), headers={})
    text = await (await running.session.get(f"{running.url}/metrics")).text()
    for name in (
        "canary_responder_webhooks_total",
        "canary_responder_rejected_requests_total",
        "canary_responder_alert_events_total",
        "canary_responder_actions_total",
        "canary_responder_action_latency_seconds",
        "canary_responder_audit_chain_length",
    ):
        assert name in text


async def test_unknown_route_gets_json_404(running: Running) -> None:
    response = await running.session.get(f"{running.url}/api/v1/nope")
    await expect_error(response, 404, "not_found")


async def test_secrets_never_reach_the_audit_log_or_logs(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    for headers in ({}, {"Authorization": "Bearer " + ALL_SECRETS[2]}, bearer()):
        await running.post_alerts(notification(alert()), headers=headers)
    await running.services.engine.drain()
    dumped = repr(running.captured) + caplog.text
    for secret in ALL_SECRETS:
        assert secret not in dumped


# -- a body that never arrives --


async def send_headers_and_one_byte(url: str, path: str, token: str) -> tuple[int, dict[str, object], float, bytes]:
    """Announce a 100-byte body, send one byte, then wait: the answer, its JSON body, the time it took, and what
    the server sent after it (b"" once it closed the connection)."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    started = time.monotonic()
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        writer.write(head.encode())
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers["content-length"]))
        elapsed = time.monotonic() - started
        async with asyncio.timeout(5):
            rest = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1]), orjson.loads(body), elapsed, rest


@pytest.mark.parametrize(
    ("path", "token"), [("/api/v1/alerts", WEBHOOK_TOKEN), ("/api/v1/pause", ADMIN_TOKEN)], ids=["webhook", "admin"]
)
async def test_a_body_not_received_in_time_is_408(
    tmp_path: Path, cluster: tuple[Emulator, str], path: str, token: str
) -> None:
    listen = {"host": "127.0.0.1", "port": 0, "body_timeout": "500ms"}
    async with running_responder(write_config(tmp_path, kube_url=cluster[1], listen=listen)) as running:
        status, body, elapsed, rest = await send_headers_and_one_byte(running.url, path, token)
        assert (status, body["error"]) == (408, "body_timeout"), body
        assert 0.4 <= elapsed < 2.0, elapsed
        assert rest == b""  # the connection is closed: the rest of that body is never waited for
        assert rejected(running, "body_timeout") == 1
        assert await audited_rejections(running) == ["body_timeout"]
        assert (await running.services.store.pause_state()) is None
        assert await running.services.store.audit_entries(kind="receipt") == []

"""Slack notifications through the durable outbox, end to end: the real responder, the emulator, and a
Slack-like receiver (plus a Prometheus stand-in) on loopback. Assertions are on what the receiver got."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from slack_fake import BOT_TOKEN, WEBHOOK_PATH, FakeSlack, fake_slack
from support import ADMIN_TOKEN, ALL_SECRETS, READ_TOKEN, Running, alert, notification, running_responder, write_config

from responder.testing.emulator import Emulator

SECRETS = (*ALL_SECRETS, BOT_TOKEN, WEBHOOK_PATH.rsplit("/", 1)[1])
RUNBOOK = "https://runbooks.example.com/canary#high-error-rate"
DELIVERIES = "canary_responder_notification_deliveries_total"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as fake:
        yield fake


def slack_config(
    tmp_path: Path, kube_url: str, fake: FakeSlack, *, mode: str = "bot", timeout: str = "2s", **extra: Any
) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "slack-token").write_text(BOT_TOKEN)
    (secrets / "slack-hook").write_text(fake.url + WEBHOOK_PATH)
    if mode == "bot":
        slack: dict[str, Any] = {"bot_token": {"file": str(secrets / "slack-token")}, "channel": "#canaries"}
        slack["api_base_url"] = fake.url + "/api/"
    else:
        slack = {"webhook_url": {"file": str(secrets / "slack-hook")}}
    notifications = {
        "slack": {**slack, "timeout": timeout},
        "outbox": {"base_delay": "50ms", "max_delay": "200ms"},
        "prometheus_url": fake.url,
        "public_url": "https://responder.example.com",
        "alertmanager_url": "https://alertmanager.example.com",
        "dashboard_url": "https://grafana.example.com/d/canary?var-namespace={namespace}&var-app={app}"
        "&from={from_ms}&to={to_ms}",
    }
    return write_config(tmp_path, kube_url=kube_url, notifications=notifications, **extra)


def firing(**labels: str) -> dict[str, Any]:
    item = alert("CanaryHighErrorRate", **labels)
    item["annotations"]["runbook_url"] = RUNBOOK
    return item


def block_text(blocks: list[dict[str, Any]]) -> str:
    return orjson.dumps(blocks).decode()


async def outbox_rows(running: Running, *, settle: bool = True) -> list[tuple[str, str, str, int]]:
    """The outbox (kind, destination, state, attempts), by default once settled: Slack's answer reaches the fake
    before the worker commits the row's new state."""
    sql = "SELECT kind, destination, state, attempts FROM outbox ORDER BY id"
    for _ in range(100 if settle else 1):
        rows = await running.services.store.read(lambda r: [tuple(row) for row in r.conn.execute(sql)])
        if not settle or all(state != "pending" for _, _, state, _ in rows):
            break
        await asyncio.sleep(0.05)
    return rows


async def test_rollback_gives_one_message_with_everything_and_a_thread_reply_on_resolution(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, url = cluster
    async with running_responder(slack_config(tmp_path, url, slack)) as running:
        assert (await running.post_alerts(notification(firing()))).status == 200
        await running.services.engine.drain()
        [message] = await slack.wait_delivered(1)
        [record] = await running.services.store.rollbacks()

        assert message.authorization == f"Bearer {BOT_TOKEN}" and message.body["channel"] == "#canaries"
        assert message.body["text"] == "Canary rolled back: shop/checkout-canary"
        text = block_text(message.body["blocks"])
        assert message.body["blocks"][0]["type"] == "header"
        assert "canary 5xx ratio 12.5%" in text  # observed value from the alert's description
        assert "12.50%" in text and "0.20%" in text and "2.40 s" in text and "240.00 req/s" in text  # Prometheus
        assert "972.8 MiB" in text and "1.8 GiB" in text  # memory, canary vs stable
        for step in ("check", "traffic_off:nginx/checkout-canary", "scale_zero"):
            assert f"`{step}`: *done*" in text
        assert "http://prometheus:9090/graph?g0.expr=canary" in text  # generatorURL
        assert (
            "https://alertmanager.example.com/#/silences/new?filter=%7Baction%3D%22rollback%22%2C%20alertname%3D"
            in text
        )
        assert RUNBOOK in text
        assert f"https://responder.example.com/api/v1/incidents/{record.incident}" in text
        assert "https://grafana.example.com/d/canary?var-namespace=shop&amp;var-app=checkout&amp;from=" in text
        assert "canary-responder replay --notification-id 1 " in text and "--execute" in text
        assert "canary-responder restore shop checkout-canary" in text
        # Prometheus was asked at the decision time, for this canary's recording rules.
        assert len(slack.prometheus_queries) == 4  # error ratio, P95, request rate, memory
        assert all('namespace="shop",app="checkout"' in q["query"] for q in slack.prometheus_queries)

        resolved = alert("CanaryHighErrorRate", status="resolved")
        assert (await running.post_alerts(notification(resolved))).status == 200
        await running.services.engine.drain()
        first, reply = await slack.wait_delivered(2)
        assert reply.body["thread_ts"] == "1700000000.000001"
        assert "Resolved: CanaryHighErrorRate" in reply.body["text"]
        assert len(slack.requests) == 2
        assert await outbox_rows(running) == [
            ("rollback", "slack", "delivered", 1),
            ("resolved", "slack", "delivered", 1),
        ]
        registry = running.services.metrics.registry
        sample = registry.get_sample_value
        assert sample(DELIVERIES, {"result": "delivered", "reason": "", "destination": "slack"}) == 2
        assert sample("canary_responder_outbox_depth") == 0
        assert [e["data"]["result"] for e in running.captured if e["kind"] == "notification"] == ["delivered"] * 2

        # No secret anywhere: audit lines, logs, messages, the incident report.
        report = await running.session.get(
            f"{running.url}/api/v1/incidents/{record.incident}", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        seen = [orjson.dumps(running.captured).decode(), caplog.text, await report.text()]
        seen += [orjson.dumps(r.body).decode() for r in slack.requests]
        for secret in SECRETS:
            assert all(secret not in text for text in seen), secret


async def test_rate_limited_then_delivered_once_after_retry_after(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    _, url = cluster
    slack.script = ["429"]
    slack.retry_after = "1"
    async with running_responder(slack_config(tmp_path, url, slack)) as running:
        await running.post_alerts(notification(firing()))
        await running.services.engine.drain()
        [message] = await slack.wait_delivered(1)
        limited, _ = slack.requests
        assert limited.answer == "429" and message.at - limited.at >= 0.95  # Retry-After beats the 50ms backoff
        assert await outbox_rows(running) == [("rollback", "slack", "delivered", 2)]
        registry = running.services.metrics.registry
        labels = {"result": "retry", "reason": "rate_limited", "destination": "slack"}
        assert registry.get_sample_value(DELIVERIES, labels) == 1


async def test_server_errors_and_a_hanging_receiver_are_retried_until_delivered_once(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    _, url = cluster
    slack.script = ["500", "hang", "500"]
    async with running_responder(slack_config(tmp_path, url, slack, mode="webhook", timeout="300ms")) as running:
        await running.post_alerts(notification(firing()))
        await running.services.engine.drain()
        [message] = await slack.wait_delivered(1)
        assert message.path == WEBHOOK_PATH and message.authorization == ""
        assert [r.answer for r in slack.requests] == ["500", "hang", "500", "ok"]
        assert await outbox_rows(running) == [("rollback", "slack", "delivered", 4)]
        reasons = [e["data"].get("reason") for e in running.captured if e["kind"] == "notification"]
        assert reasons == ["server_error", "timeout", "server_error", None]


async def test_a_hanging_slack_never_delays_the_rollback(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    emulator, url = cluster
    slack.default = "hang"
    async with running_responder(slack_config(tmp_path, url, slack, timeout="30s")) as running:
        # A first incident leaves the worker stuck inside a Slack call...
        await running.post_alerts(notification(firing(app="payments")))
        await running.services.engine.drain()
        deadline = time.monotonic() + 5
        while not slack.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert slack.requests and slack.requests[0].answer == "hang"
        # ...and the next rollback still completes at once.
        started = time.monotonic()
        await running.post_alerts(notification(firing(app="checkout")))
        await running.services.engine.drain()
        elapsed = time.monotonic() - started
        statuses = {r.key: r.status for r in await running.services.store.rollbacks()}
        assert statuses == {"shop/payments-canary": "done", "shop/checkout-canary": "done"}
        assert elapsed < 2.0 and not slack.delivered
        assert emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")["spec"]["replicas"] == 0
        assert running.services.metrics.registry.get_sample_value("canary_responder_outbox_depth") is not None
        slack.release.set()


async def test_pending_notifications_survive_a_restart_and_are_delivered_once(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    _, url = cluster
    config = slack_config(tmp_path, url, slack)
    slack.default = "500"
    async with running_responder(config) as running:
        await running.post_alerts(notification(firing()))
        await running.services.engine.drain()
        deadline = time.monotonic() + 5
        while len(slack.requests) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not slack.delivered
        [(kind, destination, state, attempts)] = await outbox_rows(running, settle=False)
        assert destination == "slack" and state == "pending" and attempts >= 1
    slack.default = "ok"
    async with running_responder(config) as running:
        [message] = await slack.wait_delivered(1)
        assert message.body["text"] == "Canary rolled back: shop/checkout-canary"
        await asyncio.sleep(0.3)  # give a duplicate every chance to show up
        assert len(slack.delivered) == 1
        assert (await outbox_rows(running))[0][2] == "delivered"
        assert await running.services.store.read(lambda r: r.outbox_backlog()) == (0, None)


async def test_incident_report_endpoints(tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack) -> None:
    _, url = cluster
    async with running_responder(slack_config(tmp_path, url, slack)) as running:
        await running.post_alerts(notification(firing()))
        await running.services.engine.drain()
        await slack.wait_delivered(1)
        [record] = await running.services.store.rollbacks()
        base = f"{running.url}/api/v1/incidents"
        read = {"Authorization": f"Bearer {READ_TOKEN}"}

        for headers in ({}, {"Authorization": "Bearer nope"}):
            response = await running.session.get(base, headers=headers)
            assert response.status == 401 and (await response.json())["error"] == "unauthorized"
        response = await running.session.get(base, headers={"Authorization": f"Bearer {ALL_SECRETS[0]}"})
        assert response.status == 403  # the webhook token may only post alerts

        listing = await (await running.session.get(base, headers=read)).json()
        assert [i["id"] for i in listing["incidents"]] == [record.incident]
        assert listing["incidents"][0]["status"] == "done"

        response = await running.session.get(f"{base}/{record.incident}", headers=read)
        assert response.status == 200 and response.content_type == "application/json"
        body = await response.json()
        assert body["id"] == record.incident and body["date"] == record.created_at
        assert body["canary_images"] == record.steps["check"]["before"]["images"]
        assert body["traffic_weight"] == "10%"  # the emulator's canary Ingress, as the check step read it
        assert body["metrics"]["canary"]["error_rate"] == 0.125  # the numbers the Slack message showed
        steps = [a["step"] for a in body["actions"]]
        assert steps == ["check", "traffic_off:nginx/checkout-canary", "evidence", "scale_zero", "event"]
        assert body["alerts"][0]["labels"]["alertname"] == "CanaryHighErrorRate" and body["checklist"]

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        markdown = await running.session.get(f"{base}/{record.incident}.md", headers=admin)
        via_accept = await running.session.get(
            f"{base}/{record.incident}", headers={**admin, "Accept": "text/markdown"}
        )
        assert markdown.content_type == via_accept.content_type == "text/markdown"
        text = await markdown.text()
        assert text == await via_accept.text()
        for heading in ("## Reason", "## Metrics at rollback", "## Actions taken", "## Follow-up checklist"):
            assert heading in text
        assert "**Traffic weight at the time:** 10%" in text and "- [ ] " in text

        missing = await running.session.get(f"{base}/shop:nothing:20260101T000000.000000Z", headers=read)
        assert missing.status == 404 and (await missing.json())["error"] == "not_found"

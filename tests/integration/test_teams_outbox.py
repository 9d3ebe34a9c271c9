"""Teams cards through the durable outbox, next to Slack, end to end: the real responder, the emulator, a Slack-like
receiver (with its Prometheus stand-in) and a Teams-like Workflows receiver on loopback. Assertions are on what the
receivers got, the outbox rows, the audit trail and the logs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from slack_fake import BOT_TOKEN, FakeSlack, fake_slack
from support import ALL_SECRETS, Running, alert, notification, running_responder, write_config
from teams_fake import SIGNATURE, WORKFLOW_PATH, FakeTeams, fake_teams

from responder.testing.emulator import Emulator

WORKFLOW_ID = WORKFLOW_PATH.split("/")[2]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as fake:
        yield fake


@pytest.fixture
async def teams() -> AsyncIterator[FakeTeams]:
    async with fake_teams() as fake:
        yield fake


def both_config(tmp_path: Path, kube_url: str, slack: FakeSlack, teams: FakeTeams, *, timeout: str = "2s") -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "slack-token").write_text(BOT_TOKEN)
    (secrets / "teams-url").write_text(teams.url + "\n")
    notifications = {
        "slack": {
            "bot_token": {"file": str(secrets / "slack-token")},
            "channel": "#canaries",
            "api_base_url": slack.url + "/api/",
        },
        "teams": {"webhook_url": {"file": str(secrets / "teams-url")}, "timeout": timeout},
        "outbox": {"base_delay": "50ms", "max_delay": "200ms"},
        "prometheus_url": slack.url,
        "public_url": "https://responder.example.com",
        "alertmanager_url": "https://alertmanager.example.com",
    }
    return write_config(tmp_path, kube_url=kube_url, notifications=notifications)


def firing(**labels: str) -> dict[str, Any]:
    item = alert("CanaryHighErrorRate", **labels)
    item["annotations"]["description"] = "canary 5xx ratio 12.5% (threshold 5%)"
    return item


def texts_of(card: dict[str, Any]) -> str:
    return orjson.dumps(card).decode()


async def outbox_rows(running: Running, *, settle: bool = True) -> list[tuple[str, str, str, int]]:
    """(kind, destination, state, attempts) by id, by default once no row is pending."""
    sql = "SELECT kind, destination, state, attempts FROM outbox ORDER BY id"
    for _ in range(100 if settle else 1):
        rows = await running.services.store.read(lambda r: [tuple(row) for row in r.conn.execute(sql)])
        if not settle or all(state != "pending" for _, _, state, _ in rows):
            break
        await asyncio.sleep(0.05)
    return rows


def teams_reasons(running: Running) -> list[str | None]:
    return [
        e["data"].get("reason")
        for e in running.captured
        if e["kind"] == "notification" and e["data"]["destination"] == "teams"
    ]


async def nothing_secret_anywhere(running: Running, teams: FakeTeams, *more: str) -> None:
    """The Teams URL (or any piece of it) and every other secret: not in audit lines, stored audit entries, outbox
    errors or the messages sent."""
    errors = await running.services.store.read(
        lambda r: [row[0] or "" for row in r.conn.execute("SELECT last_error FROM outbox")]
    )
    entries = await running.services.store.audit_entries(limit=10_000)
    seen = [orjson.dumps(running.captured).decode(), *errors, *(orjson.dumps(e.as_dict()).decode() for e in entries)]
    seen += [orjson.dumps(r.body).decode() for r in teams.requests]
    for secret in (teams.url, SIGNATURE, WORKFLOW_ID, BOT_TOKEN, *ALL_SECRETS, *more):
        assert all(secret not in text for text in seen), secret


async def test_a_rollback_gives_one_slack_message_and_one_teams_card_and_each_follow_up_once(
    tmp_path: Path,
    cluster: tuple[Emulator, str],
    slack: FakeSlack,
    teams: FakeTeams,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, url = cluster
    async with running_responder(both_config(tmp_path, url, slack, teams)) as running:
        assert (await running.post_alerts(notification(firing()))).status == 200
        await running.services.engine.drain()
        [message] = await slack.wait_delivered(1)
        [card] = await teams.wait_delivered(1)
        [record] = await running.services.store.rollbacks()

        assert message.body["text"] == "Canary rolled back: shop/checkout-canary"
        assert card.headline == "🔴 Canary rolled back: shop/checkout-canary"
        assert card.content_type == "application/json" and card.path == WORKFLOW_PATH
        assert card.body["type"] == "message"
        assert card.body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert card.card["type"] == "AdaptiveCard" and card.card["version"] == "1.2"
        text = texts_of(card.card)
        assert "canary 5xx ratio 12.5% (threshold 5%)" in text
        assert '"12.50%"' in text and '"0.20%"' in text and '"2.40 s"' in text and '"240.00 req/s"' in text
        for step in ("check", "traffic_off:nginx/checkout-canary", "scale_zero"):
            assert f'"text":"{step}"' in text
        assert f'"url":"https://responder.example.com/api/v1/incidents/{record.incident}"' in text
        assert '"url":"http://prometheus:9090/graph?g0.expr=canary"' in text
        assert "canary-responder restore shop checkout-canary" in text

        resolved = alert("CanaryHighErrorRate", status="resolved")
        assert (await running.post_alerts(notification(resolved))).status == 200
        await running.services.engine.drain()
        _, reply = await slack.wait_delivered(2)
        _, update = await teams.wait_delivered(2)
        assert reply.body["thread_ts"] == "1700000000.000001"  # Slack threads; Teams names the incident instead
        assert update.headline.startswith(
            f"Update on shop/checkout-canary (incident {record.incident}): Resolved: CanaryHighErrorRate ("
        )
        assert update.headline.endswith(") is no longer firing.")
        await asyncio.sleep(0.3)  # give a duplicate every chance to show up
        assert len(slack.requests) == 2 and len(teams.requests) == 2
        assert sorted(await outbox_rows(running)) == [
            ("resolved", "slack", "delivered", 1),
            ("resolved", "teams", "delivered", 1),
            ("rollback", "slack", "delivered", 1),
            ("rollback", "teams", "delivered", 1),
        ]
        sample = running.services.metrics.registry.get_sample_value
        for destination in ("slack", "teams"):
            labels = {"result": "delivered", "reason": "", "destination": destination}
            assert sample("canary_responder_notification_deliveries_total", labels) == 2
        assert teams_reasons(running) == [None, None]
        await nothing_secret_anywhere(running, teams)
        assert all(s not in caplog.text for s in (teams.url, SIGNATURE, WORKFLOW_ID, BOT_TOKEN))


async def test_rate_limited_then_delivered_once_after_retry_after(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack, teams: FakeTeams
) -> None:
    _, url = cluster
    teams.script = ["429"]
    teams.retry_after = "1"
    async with running_responder(both_config(tmp_path, url, slack, teams)) as running:
        await running.post_alerts(notification(firing()))
        await running.services.engine.drain()
        [card] = await teams.wait_delivered(1)
        limited, _ = teams.requests
        assert limited.answer == "429" and card.at - limited.at >= 0.95  # Retry-After beats the 50ms backoff
        assert len(slack.delivered) == 1  # Slack was not held up by Teams' rate limit
        assert sorted(await outbox_rows(running)) == [
            ("rollback", "slack", "delivered", 1),
            ("rollback", "teams", "delivered", 2),
        ]
        assert teams_reasons(running) == ["rate_limited", None]
        labels = {"result": "retry", "reason": "rate_limited", "destination": "teams"}
        sample = running.services.metrics.registry.get_sample_value
        assert sample("canary_responder_notification_deliveries_total", labels) == 1


async def test_server_errors_are_retried_until_delivered_once_and_the_url_never_shows(
    tmp_path: Path,
    cluster: tuple[Emulator, str],
    slack: FakeSlack,
    teams: FakeTeams,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, url = cluster
    teams.script = ["500", "500", "500"]  # the fake's 500 page quotes the whole URL back
    async with running_responder(both_config(tmp_path, url, slack, teams)) as running:
        await running.post_alerts(notification(firing()))
        await running.services.engine.drain()
        [card] = await teams.wait_delivered(1)
        assert [r.answer for r in teams.requests] == ["500", "500", "500", "ok"]
        assert card.headline.endswith("Canary rolled back: shop/checkout-canary")
        assert ("rollback", "teams", "delivered", 4) in await outbox_rows(running)
        assert teams_reasons(running) == ["server_error", "server_error", "server_error", None]
        assert "Teams answered 500: internal error at <webhook>" in caplog.text  # redacted, still useful
        await nothing_secret_anywhere(running, teams)
        assert all(s not in caplog.text for s in (teams.url, SIGNATURE, WORKFLOW_ID))


async def test_a_hanging_teams_times_out_and_is_retried(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack, teams: FakeTeams
) -> None:
    _, url = cluster
    teams.script = ["hang"]
    async with running_responder(both_config(tmp_path, url, slack, teams, timeout="300ms")) as running:
        started = time.monotonic()
        await running.post_alerts(notification(firing()))
        await running.services.engine.drain()
        assert time.monotonic() - started < 2.0  # the rollback never waits on a notifier
        [card] = await teams.wait_delivered(1)
        hung, _ = teams.requests
        assert hung.answer == "hang" and card.at - hung.at >= 0.25
        assert ("rollback", "teams", "delivered", 2) in await outbox_rows(running)
        assert teams_reasons(running) == ["timeout", None]
        assert len(slack.delivered) == 1
        teams.release.set()


async def test_a_pending_teams_card_survives_a_restart_and_is_delivered_once(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack, teams: FakeTeams
) -> None:
    _, url = cluster
    config = both_config(tmp_path, url, slack, teams)
    teams.default = "500"
    async with running_responder(config) as running:
        await running.post_alerts(notification(firing()))
        await running.services.engine.drain()
        await slack.wait_delivered(1)
        deadline = time.monotonic() + 5
        while len(teams.requests) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not teams.delivered
        rows = {
            destination: (state, attempts)
            for _, destination, state, attempts in await outbox_rows(running, settle=False)
        }
        assert rows["slack"] == ("delivered", 1)
        assert rows["teams"][0] == "pending" and rows["teams"][1] >= 1
    teams.default = "ok"
    async with running_responder(config) as running:
        [card] = await teams.wait_delivered(1)
        assert card.headline.endswith("Canary rolled back: shop/checkout-canary")
        await asyncio.sleep(0.3)  # give a duplicate every chance to show up
        assert len(teams.delivered) == 1 and len(slack.delivered) == 1  # Slack is not sent again
        assert [state for _, _, state, _ in await outbox_rows(running)] == ["delivered", "delivered"]
        assert await running.services.store.read(lambda r: r.outbox_backlog()) == (0, None)

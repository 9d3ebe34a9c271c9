"""Issue 14: what on-call reads in Slack, end to end (the real responder, the emulator, the Slack-like receiver):
several HELD alerts for one target give one message, a dry-run restore is not posted, and without threads every
follow-up names its target."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from slack_fake import FakeSlack, fake_slack
from support import ADMIN_TOKEN, READ_TOKEN, alert, notification, running_responder
from test_slack_outbox import outbox_rows, slack_config

from responder.testing.emulator import Emulator

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as fake:
        yield fake


async def test_held_alerts_for_one_target_within_the_coalesce_window_give_one_message(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    _, url = cluster
    async with running_responder(slack_config(tmp_path, url, slack)) as running:
        paused = await running.session.post(
            f"{running.url}/api/v1/pause", json={"actor": "t", "reason": "freeze"}, headers=ADMIN
        )
        assert paused.status == 200
        # two held alerts in one notification, a third one later (within the coalesce window), another target
        both = notification(alert("CanaryHighErrorRate"), alert("CanaryHighLatencyP95"))
        assert (await running.post_alerts(both)).status == 200
        await running.services.engine.drain()
        await slack.wait_delivered(1)
        assert (await running.post_alerts(notification(alert("CanaryErrorRateDivergence")))).status == 200
        assert (await running.post_alerts(notification(alert("CanaryHighErrorRate", app="payments")))).status == 200
        await running.services.engine.drain()
        await outbox_rows(running)
        await asyncio.sleep(0.3)
        texts = [r.body["text"] for r in slack.delivered]
        assert len([t for t in texts if "shop/checkout" in t]) == 1, texts
        assert len([t for t in texts if "shop/payments" in t]) == 1, texts
        [checkout] = [r for r in slack.delivered if "shop/checkout" in r.body["text"]]
        listing = orjson.dumps(checkout.body["blocks"]).decode()
        assert "CanaryHighErrorRate" in listing and "CanaryHighLatencyP95" in listing  # both alerts of the batch
        assert "canary-responder resume" in listing and "restore" not in listing
        # the alert held later is recorded with the incident (its report and page), though not posted
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        listed = await (await running.session.get(f"{running.url}/api/v1/incidents", headers=read)).json()
        ids = [i["id"] for i in listed["incidents"] if "checkout" in str(i.get("target"))]
        assert len(ids) == 1, listed
        report = await (await running.session.get(f"{running.url}/api/v1/incidents/{ids[0]}", headers=read)).text()
        assert "CanaryErrorRateDivergence" in report


async def test_a_dry_run_restore_is_not_posted(tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack) -> None:
    _, url = cluster
    async with running_responder(slack_config(tmp_path, url, slack)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await running.services.engine.drain()
        await slack.wait_delivered(1)
        path = f"{running.url}/api/v1/targets/shop/checkout-canary/restore"
        answer = await running.session.post(path, json={"dry_run": True, "actor": "alice"}, headers=ADMIN)
        assert answer.status == 200 and (await answer.json())["status"] == "dry_run"
        await outbox_rows(running)
        await asyncio.sleep(0.3)
        assert len(slack.requests) == 1, [r.body["text"] for r in slack.requests]
        answer = await running.session.post(path, json={"actor": "alice"}, headers=ADMIN)
        assert answer.status == 200
        _, restored = await slack.wait_delivered(2)
        assert restored.body["text"].startswith("Restored by") and "alice" in restored.body["text"]


async def test_without_threads_each_followup_names_its_target(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    _, url = cluster
    async with running_responder(slack_config(tmp_path, url, slack, mode="webhook")) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await running.services.engine.drain()
        await slack.wait_delivered(1)
        assert (await running.post_alerts(notification(alert(status="resolved")))).status == 200
        await running.services.engine.drain()
        _, reply = await slack.wait_delivered(2)
        assert reply.body["text"].startswith("Update on shop/checkout-canary (incident "), reply.body["text"]
        assert "Resolved: CanaryHighErrorRate" in reply.body["text"]

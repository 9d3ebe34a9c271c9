"""Slack faults, end to end (the real responder, the emulator and a Slack-like receiver on loopback).

Documented behaviour (responder/notify/outbox.py): a notification is a durable outbox row written in the transaction
that records its fact; the worker retries 429 (after Retry-After), 5xx and timeouts with backoff until the
message is delivered, exactly once; the rollback never waits for Slack."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from slack_fake import FakeSlack
from support import alert, bearer, free_port, notification, running_responder, start_server, wait_for, wait_healthy

from faults.helpers import audit_kinds, query, settle, slack_config
from responder.testing.emulator import Emulator


@pytest.mark.parametrize(
    ("script", "reasons"),
    [
        (["429", "429"], ["rate_limited", "rate_limited"]),
        (["500", "500", "500"], ["server_error"] * 3),
        (["hang", "hang"], ["timeout", "timeout"]),
        (["429", "500", "hang"], ["rate_limited", "server_error", "timeout"]),
    ],
    ids=["429-retry-after", "500", "hang", "mixed"],
)
async def test_slack_failures_are_delivered_later_exactly_once(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack, script: list[str], reasons: list[str]
) -> None:
    _, url = cluster
    slack.script = list(script)
    slack.retry_after = "1"
    async with running_responder(slack_config(tmp_path, url, slack, timeout="300ms")) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await settle(running)
        [record] = await running.services.store.rollbacks()
        assert record.status == "done"  # done before Slack ever answered
        [message] = await slack.wait_delivered(1, within=15)
        await asyncio.sleep(0.5)  # a duplicate would show up now
        assert len(slack.delivered) == 1
        assert [r.answer for r in slack.requests] == [*script, "ok"]
        rows = await query(running, "SELECT kind, state, attempts FROM outbox")
        attempts = [e.get("reason") for e in await audit_kinds(running, "notification")]
    assert message.body["text"] == "Canary rolled back: shop/checkout-canary"
    assert rows == [("rollback", "delivered", len(script) + 1)]
    assert attempts == [*reasons, None]  # every attempt audited, the last one delivered
    if "429" in script:  # Retry-After (1 s) is honoured over the 50 ms backoff
        limited = slack.requests[script.index("429")]
        follower = slack.requests[script.index("429") + 1]
        assert follower.at - limited.at >= 0.95


async def test_the_rollback_is_never_delayed_while_slack_hangs(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    emulator, url = cluster
    slack.default = "hang"
    config = slack_config(tmp_path, url, slack, timeout="30s", rollback_cap={"max": 10, "window": "10m"})
    async with running_responder(config) as running:

        async def traffic_off_after_webhook(app: str) -> float:
            sent = time.time()
            assert (await running.post_alerts(notification(alert(app=app)))).status == 200
            name = f"{app}-canary"
            await wait_for(
                lambda: any(m.ok and m.kind == "Ingress" and m.name == name for m in emulator.mutations), name
            )
            [done] = [m.at for m in emulator.mutations if m.ok and m.kind == "Ingress" and m.name == name]
            return done - sent

        baseline = await traffic_off_after_webhook("payments")  # Slack not involved yet
        await wait_for(lambda: bool(slack.requests), "the worker stuck in a Slack call")
        during = [await traffic_off_after_webhook(app) for app in ("checkout", "search", "cart")]
        await settle(running)
        statuses = {r.key: r.status for r in await running.services.store.rollbacks()}
        assert set(statuses.values()) == {"done"} and len(statuses) == 4
        assert not slack.delivered and len(slack.requests) == 1  # the worker is still inside the hanging call
        # Slack comes back: every message is delivered exactly once.
        slack.default = "ok"
        slack.release.set()
        delivered = await slack.wait_delivered(4, within=15)
        await asyncio.sleep(0.5)
        assert len(slack.delivered) == 4
        texts = sorted(r.body["text"] for r in delivered)
    assert texts == sorted(
        f"Canary rolled back: shop/{app}-canary" for app in ("payments", "checkout", "search", "cart")
    )
    print(f"webhook -> traffic off: baseline {baseline * 1000:.1f} ms, while Slack hangs {max(during) * 1000:.1f} ms")
    assert max(during) < 1.0


async def test_sigterm_during_a_delivery_lets_it_finish_and_a_restart_does_not_send_it_again(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    """Issue 18: a rolling update (SIGTERM) used to cancel a delivery mid-request, so the restarted responder sent
    it again. Only a crash may duplicate a message; a SIGTERM lets the delivery finish and records it."""
    _, url = cluster
    port = free_port()
    config = slack_config(tmp_path, url, slack, timeout="5s", listen={"host": "127.0.0.1", "port": port})
    log, base = tmp_path / "server.log", f"http://127.0.0.1:{port}"
    slack.script = ["slow"]  # the first message takes 1.5 s to be answered
    async with aiohttp.ClientSession() as session:
        server = start_server(config, log)
        try:
            await wait_healthy(session, base, server, log)
            async with session.post(f"{base}/api/v1/alerts", json=notification(alert()), headers=bearer()) as answer:
                assert answer.status == 200
            await wait_for(lambda: len(slack.requests) == 1, "the delivery to start")
            server.send_signal(signal.SIGTERM)
            exited = await asyncio.to_thread(server.wait, 20)  # the fake Slack (this loop) must go on answering
            assert exited == 0, log.read_text()[-3000:]
            server = start_server(config, log)  # the rolling update's new pod, on the same database
            await wait_healthy(session, base, server, log)
            await asyncio.sleep(2.0)  # a pending row would be sent again by now
        finally:
            server.terminate()
            await asyncio.to_thread(server.wait, 20)
    assert [r.answer for r in slack.requests] == ["slow"], log.read_text()[-3000:]

"""Smoke test of the real chain: demo app -> Prometheus (shipped rules) -> Alertmanager (shipped route) -> webhook.

One test, three phases on one running chain (starting the binaries costs more than a phase):
  1. a canary at 0.4 requests/s with 50% errors: its error ratio is far above 5%, but it is below the traffic
     gate, so nothing fires (not even pending) and nothing is delivered;
  2. a healthy canary at 20 requests/s breaks (30% errors): a firing CanaryHighErrorRate notification arrives,
     with the labels the responder needs and Alertmanager's Bearer credentials;
  3. the canary recovers: a resolved notification arrives.
The breach -> webhook and recovery -> resolved times are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from .harness import APP, NAMESPACE, Chain, Notification, TrafficProfile, WebhookReceiver, parse_timestamp

CANARY_RATE = 'namespace_app_track:http_requests:rate1m{track="canary"}'
CANARY_RATIO = 'namespace_app_track:http_requests_5xx:ratio_rate1m{track="canary"}'
RATE_WINDOW_S = 10  # ChainTiming.rate_window


async def until(chain: Chain, promql: str, *, timeout: float) -> None:
    """Wait until an instant query returns something (use a filtering expression)."""
    deadline = time.monotonic() + timeout
    while not await chain.query(promql):
        if time.monotonic() > deadline:
            raise AssertionError(f"still empty after {timeout}s: {promql}")
        await asyncio.sleep(0.25)


def fired(alertname: str, status: str) -> Callable[[Notification], bool]:
    def predicate(notification: Notification) -> bool:
        return bool(notification.alerts(alertname=alertname, status=status))

    return predicate


async def low_traffic_never_fires(chain: Chain, receiver: WebhookReceiver) -> None:
    chain.demo.set(canary=TrafficProfile(rps=0.4, error_ratio=0.5))
    await until(chain, f"{CANARY_RATIO} > 0.05 and {CANARY_RATE} < 1", timeout=20)
    # Long enough for a breach to go pending, fire and be delivered (about 5 s, see phase 2), with margin.
    watch_until = time.monotonic() + 8
    while time.monotonic() < watch_until:
        assert await chain.query('ALERTS{alertname=~"Canary.*"}') == []
        await asyncio.sleep(0.5)
    assert await chain.query(f"{CANARY_RATIO} > 0.05"), "the error ratio stayed high throughout"
    assert receiver.notifications == []


async def healthy_canary(chain: Chain) -> None:
    # Let the low-traffic errors leave the rate window before real traffic starts, so that the breach below
    # starts from a clean window (and the gate never opens on the old errors).
    chain.demo.set(canary=TrafficProfile(rps=0))
    await until(chain, f"{CANARY_RATE} == 0", timeout=RATE_WINDOW_S + 10)
    chain.demo.set(canary=TrafficProfile(rps=20))
    await until(chain, f"{CANARY_RATE} >= 1 and {CANARY_RATIO} == 0", timeout=10)


@pytest.mark.slow
async def test_error_rate_breach_fires_and_resolves_low_traffic_does_not(
    chain: Chain, webhook_receiver: WebhookReceiver, webhook_token: str, record_property: pytest.RecordProperty
) -> None:
    await until(chain, f'up{{namespace="{NAMESPACE}", app="{APP}"}} == 1', timeout=10)

    await low_traffic_never_fires(chain, webhook_receiver)
    await healthy_canary(chain)

    breach = time.time()
    chain.demo.set(canary=TrafficProfile(rps=20, error_ratio=0.3))
    firing = await webhook_receiver.wait_for(fired("CanaryHighErrorRate", "firing"), timeout=30)
    [alert] = firing.alerts(alertname="CanaryHighErrorRate", status="firing")
    assert alert["labels"]["namespace"] == NAMESPACE
    assert alert["labels"]["app"] == APP
    assert alert["labels"]["action"] == "rollback"
    assert alert["labels"]["severity"] == "critical"
    assert firing.headers["Authorization"] == f"Bearer {webhook_token}"
    assert firing.headers["User-Agent"].startswith("Alertmanager/")
    assert firing.body["groupLabels"] == {"alertname": "CanaryHighErrorRate", "namespace": NAMESPACE, "app": APP}

    recovery = time.time()
    chain.demo.set(canary=TrafficProfile(rps=20))
    resolved = await webhook_receiver.wait_for(fired("CanaryHighErrorRate", "resolved"), timeout=30)
    [gone] = resolved.alerts(alertname="CanaryHighErrorRate", status="resolved")
    assert gone["fingerprint"] == alert["fingerprint"]

    figures = {
        "breach_to_webhook_s": firing.received_at - breach,
        "breach_to_prometheus_firing_s": parse_timestamp(alert["startsAt"]) - breach,
        "prometheus_firing_to_webhook_s": firing.received_at - parse_timestamp(alert["startsAt"]),
        "recovery_to_resolved_webhook_s": resolved.received_at - recovery,
    }
    for name, seconds in figures.items():
        record_property(name, round(seconds, 3))
    print(
        "\nchain (1s scrape/eval, [10s] window, for/30, group_wait 1s): "
        + ", ".join(f"{name}={seconds:.2f}" for name, seconds in figures.items())
    )

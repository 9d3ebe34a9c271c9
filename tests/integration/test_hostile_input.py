"""Hostile webhook input against the live responder: generated notifications, valid ones at the edges of the
schema and mutations of them, posted over real HTTP. Valid input gets 200; everything else gets the 4xx it
deserves, never a 5xx; every rejection is counted and audited; and nothing is ever done to the cluster (the valid
ones here name namespaces outside the allowlist, so any mutation at all would be a bug)."""

from __future__ import annotations

import asyncio
import collections
import copy
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from prometheus_client import CollectorRegistry
from strategies import Probe, dump, hostile_probes
from support import ADMIN_TOKEN, Running, alert, bearer, notification, running_responder, write_config

from responder.testing.emulator import Emulator

BODY_LIMIT = 1024 * 1024
EXAMPLES = 200


def sample_total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def post(session: requests.Session, url: str, probe: Probe) -> requests.Response:
    headers = bearer()
    if probe.content_type:
        headers["Content-Type"] = probe.content_type
    return session.post(f"{url}/api/v1/alerts", data=probe.body, headers=headers, timeout=30)


def fuzz_webhook(url: str) -> list[tuple[str, int, int]]:
    """Posts every generated probe (blocking: run in a thread while the server runs on the test's loop)."""
    answered: list[tuple[str, int, int]] = []
    with requests.Session() as session:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(probe=hostile_probes(body_limit=BODY_LIMIT))
        def run(probe: Probe) -> None:
            response = post(session, url, probe)
            answered.append((probe.kind, probe.expected, response.status_code))
            assert response.status_code == probe.expected, (probe.kind, response.text[:500])
            assert response.headers["Content-Type"].startswith("application/json")
            body = response.json()
            if probe.valid:
                assert body["status"] == "accepted" and (body["events"] >= 1 or body.get("repeat") is True)
            else:
                assert isinstance(body["error"], str) and isinstance(body["message"], str) and body["message"]

        run()
    return answered


@pytest.fixture
async def running(tmp_path: Path, cluster: tuple[Emulator, str]) -> Any:
    listen = {"host": "127.0.0.1", "port": 0, "body_limit_bytes": BODY_LIMIT}
    async with running_responder(write_config(tmp_path, kube_url=cluster[1], listen=listen)) as running:
        yield running


@pytest.mark.slow
async def test_generated_hostile_notifications(running: Running, cluster: tuple[Emulator, str]) -> None:
    started = time.monotonic()
    answered = await asyncio.to_thread(fuzz_webhook, running.url)
    elapsed = time.monotonic() - started
    await running.services.engine.drain()

    accepted = sum(1 for _, _, status in answered if status == 200)
    refused = len(answered) - accepted
    assert accepted >= 30 and refused >= 30, collections.Counter(s for _, _, s in answered)
    registry = running.services.metrics.registry
    assert sample_total(registry, "canary_responder_webhooks_total", result="accepted") == accepted
    assert sample_total(registry, "canary_responder_rejected_requests_total") == refused
    assert len(await running.services.store.audit_entries(kind="rejected", limit=1000)) == refused
    assert await running.services.store.rollbacks() == []
    assert cluster[0].mutations == []  # neither the refused input nor the valid input (foreign namespaces) acted
    kinds = collections.Counter((kind if status != 422 else "schema", status) for kind, _, status in answered)
    print(f"hostile webhook input: {len(answered)} requests in {elapsed:.1f} s: {sorted(kinds.items())}")


async def test_hostile_but_valid_notification_rolls_back_once(running: Running, cluster: tuple[Emulator, str]) -> None:
    """Everything at once in a notification that really names a canary: it is accepted and acted on once."""
    first = alert(description="é" * 500, **{f"lbl_{i}_ß": "✓" * 20 for i in range(240)})
    first["startsAt"] = "2026-11-27T12:00:00.123456789+01:00"
    first["futureField"] = {"deep": [[{"x": [1]}]] * 3}
    for _ in range(200):
        first["futureField"] = [first["futureField"]]
    payload = notification(first, copy.deepcopy(first), copy.deepcopy(first), routeLabels={"🙂": ""}, truncatedAlerts=7)
    payload["groupKey"] = ""
    response = await running.post_alerts(payload)
    assert response.status == 200, await response.text()
    assert (await response.json())["events"] == 3
    await running.services.engine.drain()
    records = await running.services.store.rollbacks()
    assert [(r.key, r.status) for r in records] == [("shop/checkout-canary", "done")]
    decisions = [e.data["outcome"] for e in await running.services.store.audit_entries(kind="decision")]
    assert sorted(decisions) == ["duplicate", "duplicate", "rollback"]


async def test_refusals_leave_no_trace_in_the_inbox(running: Running) -> None:
    """A refused notification is never stored: no receipt, no event, and replay cannot find it."""
    broken = notification(alert())
    broken["alerts"][0]["startsAt"] = "0001-01-01T00:00:00+01:00"
    response = await running.session.post(
        f"{running.url}/api/v1/alerts", data=dump(broken), headers={**bearer(), "Content-Type": "application/json"}
    )
    assert response.status == 422
    body = await response.json()
    assert [e["path"] for e in body["errors"]] == ["alerts.0.startsAt"]
    assert await running.services.store.audit_entries(kind="receipt") == []
    assert await running.services.store.raw_notification(1) is None


async def test_deeply_nested_unknown_fields_replay_without_a_500(running: Running) -> None:
    """The webhook stores up to orjson's 1024 levels; replaying past the serialisers' limits (254) once gave 500s."""
    deep = notification(alert(status="resolved"))
    deep["alerts"][0]["futureField"] = orjson.loads(b"[" * 600 + b"]" * 600)
    assert (await running.post_alerts(deep)).status == 200
    admin = bearer(ADMIN_TOKEN)
    by_id = await running.session.post(f"{running.url}/api/v1/replay", json={"notification_id": 1}, headers=admin)
    assert by_id.status == 200, await by_id.text()
    by_payload = await running.session.post(f"{running.url}/api/v1/replay", json={"payload": deep}, headers=admin)
    assert by_payload.status == 422
    assert (await by_payload.json())["errors"] == [{"path": "payload", "message": "nested too deeply to replay"}]


@pytest.mark.parametrize(
    "query",
    [
        "after=99999999999999999999",  # past SQLite's INTEGER: once a 500
        "since=0001-01-01T00:00:00%2B01:00",  # before year 1 in UTC: once a 500
        "until=9999-12-31T23:59:59-01:00",
        "limit=%C2%B2",
        "since=2026-11-27T12:00:00",
    ],
)
async def test_audit_query_extremes_are_400(running: Running, query: str) -> None:
    response = await running.session.get(f"{running.url}/api/v1/audit?{query}", headers=bearer(ADMIN_TOKEN))
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == "invalid_query"

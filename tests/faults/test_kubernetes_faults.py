"""Kubernetes API faults, end to end: the real responder (HTTP, SQLite, engine) and the real kubernetes_asyncio
client against the emulator, whose injected faults are real HTTP answers, delays and dropped connections.

Documented behaviour (README "Safe, idempotent steps"): retryable failures (5xx, timeouts, connection errors,
409 after a re-read) back off and are retried; permanent ones (401/403/404/422) stop with "manual action
required"; a failed traffic step never lets the scale-down run; whatever happens, the rollback ends with a
recorded status, an audit entry and a notification (never a half-done plan left silent)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from slack_fake import FakeSlack
from support import alert, notification, running_responder, wait_for, write_config

from faults.helpers import audit_kinds, ok_mutations, query, settle, slack_config
from responder.testing.emulator import Emulator

DEPLOYMENTS = "apps/v1/deployments"
INGRESSES = "networking.k8s.io/v1/ingresses"
TRAFFIC_OFF = "traffic_off:nginx/checkout-canary"  # the step id of turning the canary Ingress off
PATIENT_RETRY = {"attempts": 10, "base_delay": "20ms", "max_delay": "200ms"}


def replicas(emulator: Emulator, name: str) -> int:
    return int(emulator.get_object(DEPLOYMENTS, "shop", name)["spec"]["replicas"])


def canary_annotation(emulator: Emulator, name: str) -> str | None:
    annotations = emulator.get_object(INGRESSES, "shop", name)["metadata"].get("annotations") or {}
    return annotations.get("nginx.ingress.kubernetes.io/canary")


async def test_server_errors_for_a_while_are_retried_then_the_rollback_succeeds(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    # The API answers 500 to the Ingress PATCH (and 503 to the /scale PATCH) until two have failed.
    emulator.add_fault(method="PATCH", path_contains="/ingresses/", status=500, times=None)
    emulator.add_fault(method="PATCH", path_contains="/scale", status=503, times=None)
    async with running_responder(write_config(tmp_path, kube_url=url, retry=PATIENT_RETRY)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await wait_for(lambda: sum(m.status == 500 for m in emulator.mutations) >= 2, "two failed PATCHes")
        emulator.clear_faults()
        await settle(running)
        [record] = await running.services.store.rollbacks()
    assert record.status == "done"
    assert record.steps[TRAFFIC_OFF]["attempts"] >= 2 and record.steps[TRAFFIC_OFF]["result"] == "done"
    failed_patches = [m for m in emulator.mutations if m.status in (500, 503)]
    assert len(failed_patches) >= 2
    assert ok_mutations(emulator, kind="Ingress") == ["checkout-canary"]  # landed exactly once
    assert ok_mutations(emulator, kind="Deployment", subresource="scale") == ["checkout-canary"]
    assert replicas(emulator, "checkout-canary") == 0 and canary_annotation(emulator, "checkout-canary") == "false"


async def test_conflicts_are_re_read_and_retried(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    emulator.add_fault(method="PATCH", path_contains="/ingresses/", status=409, times=2)
    emulator.add_fault(method="PATCH", path_contains="/scale", status=409, times=2)
    async with running_responder(write_config(tmp_path, kube_url=url, retry=PATIENT_RETRY)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await settle(running)
        [record] = await running.services.store.rollbacks()
    assert record.status == "done"
    assert record.steps[TRAFFIC_OFF]["attempts"] == 3 and record.steps["scale_zero"]["attempts"] == 3
    # Each retry started from a fresh read: the Ingress is read once by the check and once per retry, the
    # scale subresource once per attempt.
    ingress_reads = [p for m, p in emulator.calls if m == "GET" and p.endswith("/ingresses/checkout-canary")]
    scale_reads = [p for m, p in emulator.calls if m == "GET" and p.endswith("/checkout-canary/scale")]
    assert len(ingress_reads) == 3 and len(scale_reads) == 3
    assert replicas(emulator, "checkout-canary") == 0 and canary_annotation(emulator, "checkout-canary") == "false"


async def test_a_10s_response_times_out_and_is_retried(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    emulator.add_fault(method="PATCH", path_contains="/ingresses/", delay=10.0, times=1)
    emulator.add_fault(method="PATCH", path_contains="/scale", delay=10.0, times=1)
    kubernetes = {"mode": "url", "url": url, "request_timeout": "300ms"}
    config = write_config(tmp_path, kube_url=url, kubernetes=kubernetes, retry=PATIENT_RETRY)
    async with running_responder(config) as running:
        started = time.monotonic()
        assert (await running.post_alerts(notification(alert()))).status == 200
        await settle(running)
        elapsed = time.monotonic() - started
        [record] = await running.services.store.rollbacks()
        actions = await audit_kinds(running, "action")
    assert record.status == "done"
    assert record.steps[TRAFFIC_OFF]["attempts"] == 2 and record.steps["scale_zero"]["attempts"] == 2
    assert elapsed < 3.0  # two 300 ms timeouts and the retries, not two 10 s waits
    assert {a["step"]: a["attempts"] for a in actions}["scale_zero"] == 2
    # The held requests were dropped unprocessed once the client gave up: each change landed once.
    assert ok_mutations(emulator, kind="Ingress") == ["checkout-canary"]
    assert ok_mutations(emulator, kind="Deployment", subresource="scale") == ["checkout-canary"]


async def test_connection_resets_are_retried(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    emulator.add_fault(method="PATCH", path_contains="/ingresses/", reset=True, times=2)
    emulator.add_fault(method="PATCH", path_contains="/scale", reset=True, times=1)
    async with running_responder(write_config(tmp_path, kube_url=url, retry=PATIENT_RETRY)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await settle(running)
        [record] = await running.services.store.rollbacks()
    assert record.status == "done"
    assert record.steps[TRAFFIC_OFF]["attempts"] == 3 and record.steps["scale_zero"]["attempts"] == 2
    dropped = [m for m in emulator.mutations if m.status == 0]
    assert len(dropped) == 3
    assert replicas(emulator, "checkout-canary") == 0 and canary_annotation(emulator, "checkout-canary") == "false"


async def test_forbidden_is_manual_action_required_recorded_and_notified(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack
) -> None:
    emulator, url = cluster
    emulator.add_fault(method="PATCH", path_contains="/ingresses/", status=403, times=None)
    async with running_responder(slack_config(tmp_path, url, slack)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await settle(running)
        [message] = await slack.wait_delivered(1)
        [record] = await running.services.store.rollbacks()
        results = await audit_kinds(running, "rollback.result")
        rows = await query(running, "SELECT kind, destination, state, data FROM outbox")
    assert record.status == "failed"
    traffic = record.steps[TRAFFIC_OFF]
    assert traffic["result"] == "failed" and traffic["reason"] == "forbidden" and traffic["attempts"] == 1
    assert "manual action required" in traffic["message"]
    assert "scale_zero" not in record.steps  # a failed traffic step never lets the scale-down run
    assert ok_mutations(emulator, kind="Deployment", subresource="scale") == []
    assert replicas(emulator, "checkout-canary") == 2
    # Failed means failed: nothing changed, the canary is still live, and it is retried while the alert fires.
    failed = {"incident": record.incident, "status": "failed", "changed": False, "attempt": 0, "retrying": True}
    assert results == [failed]
    notices = [(kind, destination, state, orjson.loads(data)) for kind, destination, state, data in rows]
    assert notices == [("rollback", "slack", "delivered", failed)]
    assert message.body["text"] == "Rollback FAILED: shop/checkout-canary, retrying while its alerts fire"
    assert "manual action required" in str(message.body["blocks"])


@pytest.mark.parametrize(
    ("status", "times", "reason", "attempts"),
    [(403, None, "forbidden", 1), (503, None, "server_error", 4), (422, None, "invalid", 1)],
)
async def test_a_half_done_plan_is_never_left_silent(
    tmp_path: Path,
    cluster: tuple[Emulator, str],
    slack: FakeSlack,
    status: int,
    times: int | None,
    reason: str,
    attempts: int,
) -> None:
    """Traffic is off, then the scale-down fails for good: the rollback is recorded as failed, audited and
    notified with "manual action required", and the canary traffic stays off."""
    emulator, url = cluster
    emulator.add_fault(method="PATCH", path_contains="/scale", status=status, times=times)
    async with running_responder(slack_config(tmp_path, url, slack)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await settle(running)
        [message] = await slack.wait_delivered(1)
        [record] = await running.services.store.rollbacks()
        results = await audit_kinds(running, "rollback.result")
        actions = await audit_kinds(running, "action")
    assert record.status == "failed"
    assert record.steps[TRAFFIC_OFF]["result"] == "done"
    scale = record.steps["scale_zero"]
    assert (scale["result"], scale["reason"], scale["attempts"]) == ("failed", reason, attempts)
    assert scale["message"].startswith("manual action required: scale_zero failed")
    assert [a["step"] for a in actions] == ["check", TRAFFIC_OFF, "evidence", "scale_zero"]  # no event for a failure
    assert results == [
        {"incident": record.incident, "status": "failed", "changed": True, "attempt": 0, "retrying": True}
    ]
    assert canary_annotation(emulator, "checkout-canary") == "false" and replicas(emulator, "checkout-canary") == 2
    assert "retrying while its alerts fire" in message.body["text"]
    assert "manual action required" in str(message.body["blocks"])
    assert "scale_zero" in str(message.body["blocks"]) and "failed" in str(message.body["blocks"])

"""The whole responder over real HTTP, with the real kubernetes_asyncio client against the emulator:
assertions are on the emulator's objects and mutation history, the audit chain and the metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from support import Running, alert, notification, running_responder, write_config

from responder.testing.emulator import Emulator

CANARY = "nginx.ingress.kubernetes.io/canary"
TRAFFIC_OFF = "traffic_off:nginx/checkout-canary"  # the step id of the canary Ingress's traffic switch


def obj(emulator: Emulator, kind: str, name: str) -> dict:
    resource = {"deployment": "apps/v1/deployments", "ingress": "networking.k8s.io/v1/ingresses"}[kind]
    return emulator.get_object(resource, "shop", name)


def touched(emulator: Emulator) -> list[tuple[str, str | None, str | None]]:
    """(kind, name, subresource) of every successful mutation except Events, in order."""
    return [(m.kind, m.name, m.subresource) for m in emulator.mutations if m.ok and m.kind != "Event"]


async def settle(running: Running) -> None:
    await running.services.engine.drain()


async def test_error_rate_alert_rolls_back_traffic_first_then_scale(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        response = await running.post_alerts(notification(alert("CanaryHighErrorRate")))
        assert response.status == 200
        await settle(running)
        assert touched(emulator) == [("Ingress", "checkout-canary", None), ("Deployment", "checkout-canary", "scale")]
        assert obj(emulator, "ingress", "checkout-canary")["metadata"]["annotations"][CANARY] == "false"
        assert obj(emulator, "deployment", "checkout-canary")["spec"]["replicas"] == 0
        assert obj(emulator, "deployment", "checkout")["spec"]["replicas"] == 4  # stable untouched
        assert any(m.kind == "Event" and m.ok for m in emulator.mutations)

        [record] = await running.services.store.rollbacks()
        assert record.status == "done" and record.key == "shop/checkout-canary"
        assert record.steps[TRAFFIC_OFF]["before"] == {"annotations": {CANARY: "true"}}
        assert record.steps["scale_zero"]["before"] == {"replicas": 2}
        assert record.cites[0]["alertname"] == "CanaryHighErrorRate"

        report = await running.services.store.verify()
        assert report.ok and report.length == len(running.captured)
        kinds = [e["kind"] for e in running.captured]
        assert kinds[:2] == ["receipt", "decision"] and "rollback.intent" in kinds
        [receipt] = [e["data"] for e in running.captured if e["kind"] == "receipt"]  # carries its alert, as stored
        assert [(a["alertname"], a["status"], a["event_id"]) for a in receipt["events"]] == [
            ("CanaryHighErrorRate", "firing", record.cites[0]["event_id"])
        ]
        registry = running.services.metrics.registry
        assert (
            registry.get_sample_value("canary_responder_actions_total", {"step": "traffic_off", "result": "done"}) == 1
        )
        assert registry.get_sample_value("canary_responder_action_latency_seconds_count", {"step": "scale_zero"}) == 1
        assert registry.get_sample_value("canary_responder_alert_events_total", {"decision": "rollback"}) == 1


async def test_ha_duplicates_and_coalesced_alerts_give_one_rollback(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        error = alert("CanaryHighErrorRate")
        latency = alert("CanaryHighLatencyP95")
        for peer in ("http://am-0:9093", "http://am-1:9093", "http://am-2:9093"):
            assert (await running.post_alerts(notification(error, latency, external_url=peer))).status == 200
        await settle(running)
        assert len(touched(emulator)) == 2
        [record] = await running.services.store.rollbacks()
        assert sorted(c["alertname"] for c in record.cites) == ["CanaryHighErrorRate", "CanaryHighLatencyP95"]
        outcomes = [e["data"]["outcome"] for e in running.captured if e["kind"] == "decision"]
        assert sorted(outcomes) == ["coalesced", "duplicate", "duplicate", "duplicate", "duplicate", "rollback"]


async def test_resolved_alerts_never_act(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        await running.post_alerts(
            notification(alert(status="resolved"), alert("CanaryHighLatencyP95", status="resolved"))
        )
        await settle(running)
    assert emulator.mutations == []


async def test_labels_forged_to_point_at_stable_are_refused(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    config = write_config(
        tmp_path,
        kube_url=url,
        targets=[
            {"name": "from-labels", "namespace": "{namespace}", "deployment": "{deployment}", "ingress": "{ingress}"}
        ],
    )
    async with running_responder(config) as running:
        forged = alert(deployment="checkout", ingress="checkout")  # the STABLE objects
        assert (await running.post_alerts(notification(forged))).status == 200
        await settle(running)
        [record] = await running.services.store.rollbacks()
        assert record.status == "refused"
        assert record.steps["check"]["reason"] == "not_canary"
        assert (await running.services.store.verify()).ok
    assert touched(emulator) == []


async def test_namespace_outside_allowlist_is_refused_without_any_call(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        await running.post_alerts(notification(alert(namespace="kube-system")))
        await settle(running)
        [decision] = [e["data"] for e in running.captured if e["kind"] == "decision"]
        assert decision["outcome"] == "refused" and "allowlist" in decision["reason"]
    assert emulator.mutations == []


async def test_dry_run_records_the_plan_and_changes_nothing(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url, dry_run=True)) as running:
        await running.post_alerts(notification(alert()))
        await settle(running)
        [record] = await running.services.store.rollbacks()
        assert record.status == "dry_run" and record.dry_run
        assert record.steps["scale_zero"]["result"] == "dry_run"
    assert touched(emulator) == []


async def test_permanent_failure_stops_with_manual_action_required(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    emulator.add_fault(method="PATCH", path_contains="/scale", status=403, times=100)
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        await running.post_alerts(notification(alert()))
        await settle(running)
        [record] = await running.services.store.rollbacks()
        assert record.status == "failed"
        assert record.steps[TRAFFIC_OFF]["result"] == "done"  # traffic is off even though the scale failed
        assert record.steps["scale_zero"]["reason"] == "forbidden"
        assert "manual action required" in record.steps["scale_zero"]["message"]


async def test_transient_failures_are_retried(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    emulator.add_fault(method="PATCH", path_contains="/ingresses/", status=503, times=2)
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        await running.post_alerts(notification(alert()))
        await settle(running)
        [record] = await running.services.store.rollbacks()
        assert record.status == "done" and record.steps[TRAFFIC_OFF]["attempts"] == 3


async def test_two_targets_roll_back_independently(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        await running.post_alerts(notification(alert(app="checkout"), alert(app="payments")))
        await settle(running)
        assert {r.key: r.status for r in await running.services.store.rollbacks()} == {
            "shop/checkout-canary": "done",
            "shop/payments-canary": "done",
        }
    assert obj(emulator, "deployment", "payments-canary")["spec"]["replicas"] == 0


async def test_persist_policy_waits_for_its_deadline(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    policies = [
        {"name": "persist", "match": {"action": "rollback-if-persists"}, "mode": "persist", "persist_for": "1s"}
    ]
    async with running_responder(write_config(tmp_path, kube_url=url, policies=policies)) as running:
        now = datetime.now(UTC)
        await running.post_alerts(
            notification(
                alert(app="checkout", action="rollback-if-persists", starts_at=now),
                alert(app="payments", action="rollback-if-persists", starts_at=now),
            )
        )
        await settle(running)
        assert touched(emulator) == []
        await running.post_alerts(
            notification(alert(app="payments", action="rollback-if-persists", starts_at=now, status="resolved"))
        )
        await settle(running)
        deadline = now.timestamp() + 1.0
        while datetime.now(UTC).timestamp() < deadline + 0.3:
            await running.services.engine.drain()
            await asyncio.sleep(0.05)
        await settle(running)
        outcomes = sorted(e["data"]["outcome"] for e in running.captured if e["kind"] == "decision")
        assert outcomes == ["cancelled", "pending", "pending", "resolved", "rollback"]
    assert {name for _, name, _ in touched(emulator)} == {"checkout-canary"}

"""The stable-health guard (issue 13): canary traffic is never cut onto a stable Deployment with no ready replica
(that would turn a partial outage into a full one). Such a rollback is HELD (nothing changed, paged, retried while
its alerts fire) and acts once stable recovers, or when a human says so; after every rollback, stable's health is
recorded with the incident."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from support import ADMIN_TOKEN, Running, alert, notification, running_responder, wait_for, write_config

from responder.testing.emulator import Emulator

FAST_RETRIES = {"failed_rollbacks": {"retry_interval": "200ms", "max_retry_interval": "400ms"}}


def set_stable_ready(emulator: Emulator, ready: int) -> None:
    stable = emulator.get_object("apps/v1/deployments", "shop", "checkout")
    stable["status"] = {"replicas": 4, "readyReplicas": ready, "availableReplicas": ready}
    emulator.put_object("apps/v1/deployments", "shop", "checkout", stable)


def canary_replicas(emulator: Emulator) -> int:
    return int(emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")["spec"]["replicas"])


def changes(emulator: Emulator) -> list[Any]:
    return [m for m in emulator.mutations if m.kind in ("Ingress", "Deployment") and m.ok]


async def statuses(running: Running) -> list[str]:
    return [r.status for r in await running.services.store.rollbacks()]


async def test_no_ready_stable_holds_the_rollback_changes_nothing_and_acts_once_stable_recovers(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    set_stable_ready(emulator, 0)
    async with running_responder(write_config(tmp_path, kube_url=url, **FAST_RETRIES)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await running.services.engine.drain()
        assert await statuses(running) == ["held"]
        assert changes(emulator) == [] and canary_replicas(emulator) == 2  # nothing was touched
        [record] = await running.services.store.rollbacks()
        check = record.steps["check"]
        assert check["reason"] == "stable_unavailable" and "no ready replica (0/4)" in check["message"]
        assert check["before"]["stable"] == {"name": "checkout", "ready": 0, "desired": 4}
        await asyncio.sleep(1.0)  # retried while the alert fires, still held
        assert changes(emulator) == []
        set_stable_ready(emulator, 4)  # stable recovers: the next retry acts
        await wait_for(lambda: canary_replicas(emulator) == 0, "the rollback once stable is back", timeout=10)
        await running.services.engine.drain()
        assert await statuses(running) == ["done"]
        event = (await running.services.store.rollbacks())[0].steps["event"]
        assert event["after"]["stable"] == {"name": "checkout", "ready": 4, "desired": 4}
        assert "stable checkout verified healthy: 4/4 ready" in event["after"]["message"]


async def test_a_human_can_act_despite_the_stable_outage(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    set_stable_ready(emulator, 0)
    config = write_config(tmp_path, kube_url=url, failed_rollbacks={"retry_interval": "1h", "max_retry_interval": "1h"})
    async with running_responder(config) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await running.services.engine.drain()
        assert await statuses(running) == ["held"]
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        path = f"{running.url}/api/v1/targets/shop/checkout-canary/rollback"
        async with running.session.post(path, json={"despite_stable": False}, headers=headers) as refused:
            assert refused.status == 422  # the caller must say what it overrides
        async with running.session.post(path, json={"despite_stable": True, "actor": "dave"}, headers=headers) as done:
            body = await done.json()
            assert done.status == 200 and body["status"] == "done", body
        assert canary_replicas(emulator) == 0
        event = (await running.services.store.rollbacks())[0].steps["event"]
        assert "stable checkout NOT healthy: 0/4 ready" in event["after"]["message"]
        overrides = await running.services.store.audit_entries(kind="rollback.override")
        assert [e.actor for e in overrides] == ["admin:dave"]
        async with running.session.post(path, json={"despite_stable": True}, headers=headers) as nothing:
            assert nothing.status == 404  # nothing held any more


async def test_a_target_without_a_stable_template_is_not_guarded(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    set_stable_ready(emulator, 0)
    target = {"name": "t", "namespace": "{namespace}", "deployment": "{app}-canary", "stable": None}
    async with running_responder(write_config(tmp_path, kube_url=url, targets=[target])) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await running.services.engine.drain()
        assert await statuses(running) == ["done"]
        assert "stable" not in (await running.services.store.rollbacks())[0].steps["check"]["before"]

"""Multi-cluster: two emulators as two clusters behind one responder. The alert's `cluster` label selects the
cluster; each alert touches only its own; an unknown cluster is refused and reported; the same namespace and app
names in both clusters are two independent targets (lanes, rollbacks, cooldowns, restores)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import ADMIN_TOKEN, Running, alert, notification, running_responder, write_config

from responder.core.model import TargetRef, TrafficRef, iso
from responder.store import RollbackRecord
from responder.store.sqlite import SqliteStore
from responder.testing.emulator import Emulator, run_emulator, sample_canary_objects

DEPLOYMENTS = "apps/v1/deployments"


def touched(emu: Emulator) -> list[tuple[str, str | None]]:
    return [(m.kind, m.name) for m in emu.mutations if m.ok and m.kind != "Event"]


def replicas(emu: Emulator, name: str = "checkout-canary") -> int:
    value: int = emu.get_object(DEPLOYMENTS, "shop", name)["spec"]["replicas"]
    return value


@pytest.fixture
async def two() -> AsyncIterator[tuple[tuple[Emulator, str], tuple[Emulator, str]]]:
    objects = sample_canary_objects("shop", "checkout") + sample_canary_objects("shop", "payments")
    async with run_emulator(objects) as east, run_emulator(objects) as west:
        yield east, west


def config(tmp_path: Path, east_url: str, west_url: str, **overrides: Any) -> Path:
    clusters = {
        "east": {"kubernetes": {"mode": "url", "url": east_url, "request_timeout": "2s"}},
        "west": {"kubernetes": {"mode": "url", "url": west_url}, "allowed_namespaces": ["shop"]},
    }
    return write_config(tmp_path, kube_url=east_url, clusters=clusters, **overrides)


async def settle(running: Running) -> None:
    await running.services.engine.drain()


def decisions(running: Running) -> list[dict[str, Any]]:
    return [e["data"] for e in running.captured if e["kind"] == "decision"]


async def test_an_alert_touches_only_its_own_cluster(tmp_path: Path, two: Any) -> None:
    (east, east_url), (west, west_url) = two
    async with running_responder(config(tmp_path, east_url, west_url)) as running:
        assert (await running.post_alerts(notification(alert(cluster="west")))).status == 200
        await settle(running)
        [record] = await running.services.store.rollbacks()
        assert record.status == "done" and record.target.cluster == "west"
        assert record.key == "west/shop/checkout-canary" and record.incident.startswith("west:shop:checkout-canary:")
    assert touched(east) == []
    assert touched(west) == [("Ingress", "checkout-canary"), ("Deployment", "checkout-canary")]
    assert replicas(west) == 0 and replicas(east) == 2


async def test_an_unknown_or_missing_cluster_is_refused_and_reported(tmp_path: Path, two: Any) -> None:
    (east, east_url), (west, west_url) = two
    async with running_responder(config(tmp_path, east_url, west_url)) as running:
        await running.post_alerts(notification(alert(cluster="north"), alert(app="payments")))
        await settle(running)
        refused = sorted(decisions(running), key=lambda d: d["event_id"])
        assert [d["outcome"] for d in refused] == ["refused", "refused"]
        assert "unknown cluster" in refused[0]["reason"] and "'north'" in refused[0]["reason"]
        assert "is none" in refused[1]["reason"]
        notices = await running.services.store.read(
            lambda r: [row.kind for row in r.outbox_rows(f"refused:{refused[0]['event_id']}")]
        )
        assert notices == ["refused"]  # the people are told, like any refused alert
        assert await running.services.store.rollbacks() == []
    assert east.mutations == [] and west.mutations == []


async def test_same_names_in_both_clusters_are_independent_targets(tmp_path: Path, two: Any) -> None:
    (east, east_url), (west, west_url) = two
    async with running_responder(config(tmp_path, east_url, west_url)) as running:
        # One notification, one batch, one decision time: the two rollbacks must still be two incidents.
        await running.post_alerts(notification(alert(cluster="east"), alert(cluster="west")))
        await settle(running)
        records = {r.key: r for r in await running.services.store.rollbacks()}
        assert set(records) == {"east/shop/checkout-canary", "west/shop/checkout-canary"}
        assert all(r.status == "done" for r in records.values())
        assert len({r.incident for r in records.values()}) == 2
        assert replicas(east) == 0 and replicas(west) == 0

        # The cooldown is per cluster too: a later alert in east is suppressed, its twin in west is not
        # (west's canary was restored meanwhile and may be rolled back again).
        response = await running.session.post(
            f"{running.url}/api/v1/targets/shop/checkout-canary/restore",
            json={"cluster": "west"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        body = await response.json()
        assert response.status == 200, body
        assert body["target"] == "west/shop/checkout-canary" and body["status"] == "restored"
        assert replicas(west) == 2 and replicas(east) == 0

        again = "CanaryHighLatencyP95"
        await running.post_alerts(notification(alert(again, cluster="east"), alert(again, cluster="west")))
        await settle(running)
        latest = {d["outcome"] for d in decisions(running)[-2:]}
        assert latest == {"coalesced", "rollback"}  # east joins its rollback of moments ago; west acts again
        assert replicas(west) == 0


async def test_restore_needs_a_known_cluster(tmp_path: Path, two: Any) -> None:
    (_, east_url), (_, west_url) = two
    async with running_responder(config(tmp_path, east_url, west_url)) as running:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        url = f"{running.url}/api/v1/targets/shop/checkout-canary/restore"
        for body in ({}, {"cluster": "north"}):
            response = await running.session.post(url, json=body, headers=headers)
            assert response.status == 400 and (await response.json())["error"] == "unknown_cluster"


async def test_targets_and_allowlists_are_per_cluster(tmp_path: Path, two: Any) -> None:
    (east, east_url), (west, west_url) = two
    targets = [
        {"name": "west-only", "clusters": ["west"], "namespace": "{namespace}", "deployment": "{app}-canary"},
    ]
    clusters = {
        "east": {"kubernetes": {"mode": "url", "url": east_url}},
        "west": {"kubernetes": {"mode": "url", "url": west_url}, "allowed_namespaces": ["shop"]},
    }
    path = write_config(tmp_path, kube_url=east_url, clusters=clusters, targets=targets)
    async with running_responder(path) as running:
        await running.post_alerts(
            notification(
                alert(cluster="east"),
                alert(cluster="west", app="payments"),
                alert(cluster="west", namespace="pay"),  # allowed globally, not in west
            )
        )
        await settle(running)
        first, second, third = sorted(decisions(running), key=lambda d: d["event_id"])
        assert first["outcome"] == "refused"
        assert "no target rule matches the alert labels in cluster 'east'" in first["reason"]
        assert second["outcome"] == "rollback"
        assert third["outcome"] == "refused"
        assert "namespace 'pay' is not in the allowlist of cluster 'west'" in third["reason"]
    assert east.mutations == [] and {name for _, name in touched(west)} == {"payments-canary"}


async def test_a_cluster_label_of_another_name(tmp_path: Path, two: Any) -> None:
    (east, east_url), (west, west_url) = two
    path = config(tmp_path, east_url, west_url, cluster_label="k8s_cluster")
    async with running_responder(path) as running:
        await running.post_alerts(notification(alert(k8s_cluster="east")))
        await settle(running)
        [record] = await running.services.store.rollbacks()
        assert record.target.cluster == "east"
    assert replicas(east) == 0 and west.mutations == []


async def test_a_rollback_resumed_after_a_restart_goes_to_its_own_cluster(tmp_path: Path, two: Any) -> None:
    (east, east_url), (west, west_url) = two
    path = config(tmp_path, east_url, west_url)
    store = SqliteStore(tmp_path / "responder.db")
    await store.open()
    pending = RollbackRecord(
        incident="west:shop:checkout-canary:20261127T120000.000000Z",
        target=TargetRef("shop", "checkout-canary", (TrafficRef("nginx", "checkout-canary"),), cluster="west"),
        created_at=iso(datetime.now(UTC)),  # recent: an old one would be abandoned (engine.resume_within)
        received_at=0.0,
        status="pending",
        dry_run=False,
        steps={},
        cites=[],
    )
    await store.write(lambda tx: tx.insert_rollback(pending))
    await store.close()
    async with running_responder(path) as running:  # the intent was durable, the process died before acting
        await settle(running)
        [record] = await running.services.store.rollbacks()
        assert (record.status, record.target.cluster) == ("done", "west")
    assert east.mutations == [] and replicas(west) == 0


async def test_restore_from_the_cli_names_the_cluster(tmp_path: Path, two: Any) -> None:
    """Issue 18: with clusters configured, `restore` from the CLI always failed ("UNKNOWN_CLUSTER ... got ''")."""
    (east, east_url), (west, west_url) = two
    async with running_responder(config(tmp_path, east_url, west_url)) as running:
        await running.post_alerts(notification(alert(cluster="west")))
        await settle(running)
        assert replicas(west) == 0
        token = tmp_path / "admin-token"
        token.write_text(ADMIN_TOKEN)
        base = [sys.executable, "-m", "responder", "restore", "shop", "checkout-canary", "--token-file", str(token)]
        env = {**os.environ, "CANARY_RESPONDER_URL": running.url}
        process = await asyncio.create_subprocess_exec(
            *base, "--cluster", "west", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        out, err = await process.communicate()
        assert process.returncode == 0 and "RESTORED" in out.decode(), (out, err)
    assert replicas(west) == 2 and east.mutations == []

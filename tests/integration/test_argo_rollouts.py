"""Argo Rollouts (issue 15): a ``delegate: argo-rollouts`` target is rolled back by aborting its Rollout, the
change ``kubectl argo rollouts abort`` makes (a merge patch of ``status.abort`` through the status subresource,
the Rollout itself where there is none), after the same checks; restore is ``retry``. The responder never touches
the Rollout's ReplicaSets, Deployments or Ingresses: the Rollouts controller owns them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_cluster import FakeCluster
from support import (
    ADMIN_TOKEN,
    Running,
    alert,
    bare_engine,
    finish_and_stop,
    notification,
    running_responder,
    stop_at_call,
    write_config,
)

from responder.engine import Engine
from responder.store.sqlite import SqliteStore
from responder.testing.emulator import Emulator

ROLLOUTS = "argoproj.io/v1alpha1/rollouts"
ARGO_TARGET = {"name": "argo", "namespace": "{namespace}", "deployment": "{app}", "delegate": "argo-rollouts"}


def rollout(*, pod_hash: str = "6f7d8c9b5", stable: str = "5d4c3b2a1", revision: str = "3") -> dict[str, Any]:
    """A canary Rollout at step 2 of 4 with 20 % of the traffic, as the Rollouts controller leaves its status."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": "checkout",
            "namespace": "shop",
            "annotations": {"rollout.argoproj.io/revision": revision},
        },
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {"labels": {"app": "checkout"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/checkout:2.4.0"}]},
            },
            "strategy": {
                "canary": {
                    "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "10m"}}]
                }
            },
        },
        "status": {
            "currentPodHash": pod_hash,
            "stableRS": stable,
            "currentStepIndex": 1,
            "phase": "Paused",
            "canary": {"weights": {"canary": {"podTemplateHash": pod_hash, "weight": 20}}},
        },
    }


def rollout_changes(emulator: Emulator) -> list[tuple[str, str, Any]]:
    return [(m.method, m.path, m.body) for m in emulator.mutations if m.kind == "Rollout"]


def other_changes(emulator: Emulator) -> list[Any]:
    return [m for m in emulator.mutations if m.kind not in ("Rollout", "Event")]


async def restore(running: Running, *, dry_run: bool = False) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    path = f"{running.url}/api/v1/targets/shop/checkout/restore"
    async with running.session.post(path, json={"dry_run": dry_run}, headers=headers) as answer:
        return answer.status, await answer.json()


@pytest.fixture
async def running(tmp_path: Path, cluster: tuple[Emulator, str]) -> Any:
    cluster[0].put_object(ROLLOUTS, "shop", "checkout", rollout())
    async with running_responder(write_config(tmp_path, kube_url=cluster[1], targets=[ARGO_TARGET])) as running:
        yield running


async def test_an_alert_aborts_the_rollout_through_its_status_and_restore_retries_it(
    running: Running, cluster: tuple[Emulator, str]
) -> None:
    emulator = cluster[0]
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    [record] = await running.services.store.rollbacks()
    assert record.status == "done", record.steps
    path = "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/checkout/status"
    [(method, patched_path, body)] = rollout_changes(emulator)
    assert (method, patched_path, body["status"]) == ("PATCH", path, {"abort": True})
    assert body["metadata"]["resourceVersion"]  # the precondition: a Rollout changed since is not aborted blindly
    assert emulator.get_object(ROLLOUTS, "shop", "checkout")["status"]["abort"] is True
    assert other_changes(emulator) == []  # no ReplicaSet, Deployment or Ingress touched
    aborted = record.steps["abort"]["before"]
    assert {k: aborted[k] for k in ("revision", "canary_replicaset", "images", "step", "weight")} == {
        "revision": "3",
        "canary_replicaset": "checkout-6f7d8c9b5",
        "images": ["registry.example/checkout:2.4.0"],
        "step": 1,
        "weight": 20,
    }
    assert record.steps["abort"]["after"]["aborted"] is True
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with running.session.get(f"{running.url}/api/v1/incidents/{record.incident}.md", headers=headers) as got:
        report = await got.text()
    assert (
        "Argo Rollout checkout aborted at revision 3 (ReplicaSet checkout-6f7d8c9b5, image "
        "registry.example/checkout:2.4.0, step 2/4, canary weight 20%)" in report
    ), report

    status, body = await restore(running)
    assert (status, body["status"]) == (200, "restored"), body
    retried = rollout_changes(emulator)[1]
    assert (retried[0], retried[1], retried[2]["status"]) == ("PATCH", path, {"abort": False})
    assert emulator.get_object(ROLLOUTS, "shop", "checkout")["status"]["abort"] is False
    assert (await restore(running))[1]["status"] != "restored"  # nothing left to undo: never retried twice


async def test_a_rollout_that_is_not_mid_update_is_refused_and_left_alone(
    running: Running, cluster: tuple[Emulator, str]
) -> None:
    emulator = cluster[0]
    emulator.put_object(ROLLOUTS, "shop", "checkout", rollout(pod_hash="5d4c3b2a1"))  # fully promoted
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    [record] = await running.services.store.rollbacks()
    assert record.status == "refused"
    assert record.steps["abort"]["reason"] == "not_canary" and "not mid-update" in record.steps["abort"]["message"]
    assert rollout_changes(emulator) == []


async def test_without_a_status_subresource_the_abort_patches_the_rollout_itself(
    running: Running, cluster: tuple[Emulator, str]
) -> None:
    emulator = cluster[0]
    emulator.add_fault(method="PATCH", path_contains="/rollouts/checkout/status", status=404)
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    [record] = await running.services.store.rollbacks()
    assert record.status == "done", record.steps
    paths = [path for _, path, _ in rollout_changes(emulator)]
    assert paths == [
        "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/checkout/status",
        "/apis/argoproj.io/v1alpha1/namespaces/shop/rollouts/checkout",
    ]
    assert rollout_changes(emulator)[1][2]["status"] == {"abort": True}


async def test_restore_refuses_once_a_new_revision_replaced_the_aborted_one(
    running: Running, cluster: tuple[Emulator, str]
) -> None:
    emulator = cluster[0]
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    fixed = rollout(pod_hash="7a8b9c0d1", revision="4")  # someone deployed a fix since
    emulator.put_object(ROLLOUTS, "shop", "checkout", fixed)
    status, body = await restore(running)
    assert body["status"] == "refused" and body["reason"] == "changed_since_rollback", body
    assert "revision 4" in body["message"]
    assert len(rollout_changes(emulator)) == 1  # only the abort


async def test_dry_run_changes_nothing(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    emulator.put_object(ROLLOUTS, "shop", "checkout", rollout())
    async with running_responder(write_config(tmp_path, kube_url=url, targets=[ARGO_TARGET], dry_run=True)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await running.services.engine.drain()
        [record] = await running.services.store.rollbacks()
        assert record.status == "dry_run", record.steps
        assert record.steps["abort"]["after"]["aborted"] is True  # what it would have done
        assert rollout_changes(emulator) == []


# -- a crash between the abort's write-ahead intent and its result (issue 17's "no stale resumes") --


def argo_engine(tmp_path: Path, store: SqliteStore, fake: FakeCluster) -> Engine:
    return bare_engine(write_config(tmp_path, targets=[ARGO_TARGET]), store, fake)


async def crash_before_the_abort(tmp_path: Path, store: SqliteStore) -> FakeCluster:
    fake = FakeCluster()
    fake.add_object("rollouts", "shop", "checkout", rollout())
    await stop_at_call(argo_engine(tmp_path, store, fake), fake, "patch_object")  # the patch is in flight
    [record] = await store.rollbacks()
    assert record.status == "pending" and record.steps["abort"]["result"] == "intent"
    return fake


async def resume(tmp_path: Path, store: SqliteStore, fake: FakeCluster) -> str:
    return await finish_and_stop(argo_engine(tmp_path, store, fake), store)


async def test_an_abort_cut_short_by_a_crash_is_resumed_while_the_rollout_is_unchanged(
    tmp_path: Path, store: SqliteStore
) -> None:
    fake = await crash_before_the_abort(tmp_path, store)
    assert await resume(tmp_path, store, fake) == "done"
    [patched] = fake.landed("patch_object")
    assert patched.args["patch"] == {"status": {"abort": True}}


async def test_an_abort_cut_short_is_abandoned_once_a_new_revision_replaced_the_rollout(
    tmp_path: Path, store: SqliteStore
) -> None:
    fake = await crash_before_the_abort(tmp_path, store)
    fake.add_object("rollouts", "shop", "checkout", rollout(pod_hash="7a8b9c0d1", revision="4"))
    assert await resume(tmp_path, store, fake) == "abandoned"
    assert fake.landed("patch_object") == []
    [result] = await store.audit_entries(kind="rollback.result")
    assert "revision 4 now, not 3" in result.data["reason"]


async def test_outside_the_allowlist_nothing_is_read_or_changed(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    body = rollout()
    body["metadata"]["namespace"] = "kube-system"
    emulator.put_object(ROLLOUTS, "kube-system", "checkout", body)
    async with running_responder(write_config(tmp_path, kube_url=url, targets=[ARGO_TARGET])) as running:
        assert (await running.post_alerts(notification(alert(namespace="kube-system")))).status == 200
        await running.services.engine.drain()
        assert await running.services.store.rollbacks() == []  # refused at the decision: no rollback at all
        [refused] = await running.services.store.audit_entries(kind="decision")
        assert "not in the allowlist" in str(refused.data)
        assert emulator.mutations == []


async def test_an_abort_found_in_place_is_a_noop_and_not_ours_to_retry(
    running: Running, cluster: tuple[Emulator, str]
) -> None:
    emulator = cluster[0]
    aborted = rollout()
    aborted["status"]["abort"] = True  # someone ran kubectl argo rollouts abort first
    emulator.put_object(ROLLOUTS, "shop", "checkout", aborted)
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()
    [record] = await running.services.store.rollbacks()
    assert (record.status, record.steps["abort"]["result"]) == ("done", "noop")
    assert rollout_changes(emulator) == []
    status, body = await restore(running)
    assert body["status"] != "restored" and rollout_changes(emulator) == []  # the human's abort stays

"""The operator API over real HTTP: roles, pause, replay, restore and the audit log, with the emulator as the
cluster and assertions on its objects and mutation history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import (
    ADMIN_TOKEN,
    READ_TOKEN,
    WEBHOOK_TOKEN,
    Running,
    alert,
    bearer,
    notification,
    running_responder,
    write_config,
)

from responder.testing.emulator import Emulator

CANARY = "nginx.ingress.kubernetes.io/canary"
ADMIN = bearer(ADMIN_TOKEN)


async def call(
    running: Running, method: str, path: str, *, headers: dict[str, str] | None = None, json: Any = None
) -> tuple[int, Any]:
    async with running.session.request(
        method, f"{running.url}{path}", json=json, headers=ADMIN if headers is None else headers
    ) as response:
        return response.status, await response.json()


def canary(emulator: Emulator, app: str = "checkout") -> tuple[int, str | None]:
    deployment = emulator.get_object("apps/v1/deployments", "shop", f"{app}-canary")
    ingress = emulator.get_object("networking.k8s.io/v1/ingresses", "shop", f"{app}-canary")
    return deployment["spec"]["replicas"], ingress["metadata"].get("annotations", {}).get(CANARY)


def changes(emulator: Emulator) -> list[tuple[str, str | None, str | None]]:
    return [(m.kind, m.name, m.subresource) for m in emulator.mutations if m.ok and m.kind != "Event"]


async def roll_back(running: Running) -> None:
    assert (await running.post_alerts(notification(alert()))).status == 200
    await running.services.engine.drain()


ENDPOINTS = [
    ("GET", "/api/v1/status"),
    ("POST", "/api/v1/pause"),
    ("POST", "/api/v1/resume"),
    ("POST", "/api/v1/replay"),
    ("POST", "/api/v1/targets/shop/checkout-canary/restore"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/audit/1"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_roles(tmp_path: Path, cluster: tuple[Emulator, str], method: str, path: str) -> None:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        status, body = await call(running, method, path, headers={})
        assert (status, body["error"]) == (401, "unauthorized")
        status, body = await call(running, method, path, headers=bearer(WEBHOOK_TOKEN))
        assert (status, body["error"]) == (403, "forbidden")
        status, body = await call(running, method, path, headers=bearer(READ_TOKEN))
        assert status == (403 if method == "POST" else 200), body
    assert cluster[0].mutations == []


async def test_pause_holds_every_decision_and_survives_a_restart(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    config = write_config(tmp_path, kube_url=url)
    async with running_responder(config) as running:
        status, state = await call(running, "POST", "/api/v1/pause", json={"actor": "alice", "reason": "deploy freeze"})
        assert status == 200 and state["paused"] is True
        await roll_back(running)
        [decision] = [e["data"] for e in running.captured if e["kind"] == "decision"]
        assert decision["outcome"] == "held" and "paused" in decision["reason"]
        assert running.services.metrics.registry.get_sample_value("canary_responder_paused") == 1
    assert changes(emulator) == []
    async with running_responder(config) as running:  # same database: still paused
        status, body = await call(running, "GET", "/api/v1/status", headers=bearer(READ_TOKEN))
        assert body["paused"]["paused"] is True and body["paused"]["actor"] == "alice"
        await running.post_alerts(notification(alert(app="payments")))
        await running.services.engine.drain()
        assert changes(emulator) == []
        await call(running, "POST", "/api/v1/resume", json={"actor": "alice"})
        await running.post_alerts(notification(alert(app="payments", alertname="CanaryHighLatencyP95")))
        await running.services.engine.drain()
    assert canary(emulator, "payments") == (0, "false")
    assert canary(emulator, "checkout") == (2, "true")  # held while paused: never executed later either


async def test_replay_dry_run_by_id_changes_nothing_and_is_audited(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url, dry_run=False)) as running:
        await running.post_alerts(notification(alert(status="resolved")))
        await running.services.engine.drain()
        payload = notification(alert(app="payments"))
        status, body = await call(running, "POST", "/api/v1/replay", json={"payload": payload, "actor": "bob"})
        assert status == 200 and body["dry_run"] is True
        assert [d["outcome"] for d in body["decisions"]] == ["rollback"]
        assert body["plan"] == [
            {
                "target": "shop/payments-canary",
                "incident": body["decisions"][0]["incident"],
                "steps": ["check", "traffic_off:nginx/payments-canary", "evidence", "scale_zero", "event"],
            }
        ]
        status, body = await call(running, "POST", "/api/v1/replay", json={"notification_id": 1})
        assert status == 200 and [d["outcome"] for d in body["decisions"]] == ["duplicate"]
        status, body = await call(running, "POST", "/api/v1/replay", json={"notification_id": 99})
        assert (status, body["error"]) == (404, "not_found")
        status, body = await call(running, "POST", "/api/v1/replay", json={"notification_id": 1, "payload": payload})
        assert status == 422
        replays = await running.services.store.audit_entries(kind="replay")
        assert [e.actor for e in replays] == ["admin:bob", "admin:admin"]
    assert emulator.mutations == []


async def test_replay_executes_and_force_bypasses_dedupe_and_cooldown(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        await roll_back(running)
        status, body = await call(running, "POST", "/api/v1/replay", json={"notification_id": 1, "dry_run": False})
        assert [d["outcome"] for d in body["decisions"]] == ["duplicate"]
        status, body = await call(
            running, "POST", "/api/v1/replay", json={"notification_id": 1, "dry_run": False, "force": True}
        )
        assert status == 200 and [d["outcome"] for d in body["decisions"]] == ["rollback"]
        await running.services.engine.drain()
        records = await running.services.store.rollbacks()
        assert [r.status for r in records] == ["done", "done"]
        assert records[1].steps["scale_zero"]["result"] == "noop"  # already safe: idempotent
        receipts = await running.services.store.audit_entries(kind="receipt")
        assert receipts[-1].actor == "replay:admin"
    assert len(changes(emulator)) == 2  # one traffic patch, one scale patch, for both rollbacks together


async def test_restore_puts_back_scale_then_traffic(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        await roll_back(running)
        assert canary(emulator) == (0, "false")
        before = len(emulator.mutations)
        status, body = await call(
            running, "POST", "/api/v1/targets/shop/checkout-canary/restore", json={"dry_run": True}
        )
        assert status == 200 and body["status"] == "dry_run" and len(emulator.mutations) == before
        status, body = await call(
            running, "POST", "/api/v1/targets/shop/checkout-canary/restore", json={"actor": "carol"}
        )
        assert status == 200, body
        assert body["status"] == "restored"
        assert canary(emulator) == (2, "true")
        assert changes(emulator)[2:] == [
            ("Deployment", "checkout-canary", "scale"),
            ("Ingress", "checkout-canary", None),
        ]
        status, body = await call(running, "POST", "/api/v1/targets/shop/checkout-canary/restore")
        assert status == 404 and body["reason"] == "nothing_to_restore"
        # restored: the canary may be rolled back again at once, cooldown or not
        await running.post_alerts(notification(alert(alertname="CanaryHighLatencyP95")))
        await running.services.engine.drain()
        assert canary(emulator) == (0, "false")
        results = await running.services.store.audit_entries(kind="restore.result")
        assert results[-1].actor == "admin:carol" and results[-1].data["status"] == "restored"


async def test_restore_is_refused_when_someone_deployed_a_new_canary(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        await roll_back(running)
        deployment = emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "checkout:1.6.0"
        emulator.put_object("apps/v1/deployments", "shop", "checkout-canary", deployment)
        before = len(emulator.mutations)
        status, body = await call(running, "POST", "/api/v1/targets/shop/checkout-canary/restore")
        assert status == 409 and body["status"] == "refused"
        assert body["reason"] == "changed_since_rollback" and "images" in body["message"]
        assert len(emulator.mutations) == before


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/targets/Shop_1/checkout-canary/restore", 400),
        ("/api/v1/targets/shop/..%2Fetc/restore", 400),
        ("/api/v1/targets/kube-system/coredns/restore", 403),
    ],
)
async def test_restore_path_parameters_are_checked(
    tmp_path: Path, cluster: tuple[Emulator, str], path: str, status: int
) -> None:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        got, body = await call(running, "POST", path)
        assert got == status and body["error"] in ("invalid_name", "namespace_not_allowed", "not_found")
    assert cluster[0].mutations == []


async def test_audit_api_filters_paginates_and_verifies(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        await roll_back(running)
        reader = bearer(READ_TOKEN)
        status, page = await call(running, "GET", "/api/v1/audit?limit=3", headers=reader)
        assert status == 200 and [e["seq"] for e in page["entries"]] == [1, 2, 3] and page["next_after"] == 3
        status, page = await call(
            running, "GET", f"/api/v1/audit?after={page['next_after']}&limit=1000", headers=reader
        )
        assert page["entries"][0]["seq"] == 4 and page["next_after"] is None
        status, page = await call(
            running, "GET", "/api/v1/audit?kind=action&target=shop/checkout-canary", headers=reader
        )
        assert [e["data"]["step"] for e in page["entries"]] == [
            "check",
            "traffic_off:nginx/checkout-canary",
            "evidence",  # on by default; the emulator serves no canary pod here: skipped
            "scale_zero",
            "event",
        ]
        status, page = await call(
            running, "GET", "/api/v1/audit?since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z", headers=reader
        )
        assert page["entries"] == []
        status, body = await call(running, "GET", "/api/v1/audit?limit=0", headers=reader)
        assert status == 400 and body["errors"][0]["path"] == "limit"
        status, entry = await call(running, "GET", "/api/v1/audit/2", headers=reader)
        assert entry["seq"] == 2 and entry["kind"] == "decision"
        status, body = await call(running, "GET", "/api/v1/audit/999999", headers=reader)
        assert status == 404
        status, body = await call(running, "GET", "/api/v1/audit/verify", headers=reader)
        assert status == 200 and body["ok"] is True and body["length"] == running.services.store.chain_length


# -- bounds on the operator API's bodies --


@pytest.mark.parametrize("notification_id", [0, -1, 2**63, 2**64 - 1])
async def test_replay_notification_id_outside_sqlite_integer_is_422(
    tmp_path: Path, cluster: tuple[Emulator, str], notification_id: int
) -> None:
    """2**63 once reached SQLite and came back as a plain-text 500."""
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        url = f"{running.url}/api/v1/replay"
        async with running.session.post(url, json={"notification_id": notification_id}, headers=ADMIN) as response:
            assert (response.status, response.content_type) == (422, "application/json"), await response.text()
            body = await response.json()
        assert body["error"] == "schema" and [e["path"] for e in body["errors"]] == ["notification_id"]
        status, body = await call(running, "POST", "/api/v1/replay", json={"notification_id": 2**63 - 1})
        assert (status, body["error"]) == (404, "not_found")


@pytest.mark.parametrize("cluster_name", ["abc\n", "Abc", "a" * 64, "-abc", "abc-", "a.b", "a_b", " abc"])
async def test_restore_cluster_must_be_empty_or_a_dns_label(
    tmp_path: Path, cluster: tuple[Emulator, str], cluster_name: str
) -> None:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        path = "/api/v1/targets/shop/checkout-canary/restore"
        status, body = await call(running, "POST", path, json={"cluster": cluster_name})
        assert (status, body["error"]) == (422, "schema"), body
        assert [e["path"] for e in body["errors"]] == ["cluster"]
        status, body = await call(running, "POST", path, json={"cluster": "a" * 63})  # valid, but not configured
        assert (status, body["error"]) == (400, "unknown_cluster")
        status, body = await call(running, "POST", path, json={"cluster": ""})
        assert status == 404 and body["reason"] == "nothing_to_restore"
    assert cluster[0].mutations == []

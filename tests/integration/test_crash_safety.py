"""SIGKILL the real server process after a rollback's intent is durable and before its result: after a restart
the rollback completes exactly once and the audit chain verifies."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from support import (
    ADMIN_TOKEN,
    alert,
    audit_verify,
    bearer,
    free_port,
    notification,
    start_server,
    wait_for,
    wait_healthy,
    write_config,
)

from responder.testing.emulator import Emulator

pytestmark = pytest.mark.slow


def rollback_rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [(row[0], row[1]) for row in conn.execute("SELECT incident, status FROM rollbacks")]


async def post_then_kill(config: Path, url: str, log: Path, until: Callable[[], bool], what: str) -> None:
    """Start the server, post one critical alert, wait until ``until()``, then SIGKILL it."""
    first = start_server(config, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, url, first, log)
            async with session.post(f"{url}/api/v1/alerts", json=notification(alert()), headers=bearer()) as resp:
                assert resp.status == 200
        await wait_for(until, what)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


async def test_sigkill_between_intent_and_result_completes_exactly_once(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, kube_url = cluster
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, kube_url=kube_url, listen={"host": "127.0.0.1", "port": port})
    db, log = tmp_path / "responder.db", tmp_path / "server.log"
    # The scale-down hangs: the intent and the traffic step are recorded, the result is not.
    emulator.add_fault(method="PATCH", path_contains="/scale", delay=60.0, times=1)

    def traffic_off_and_scale_held() -> bool:
        traffic = any(m.ok and "/ingresses/" in m.path for m in emulator.mutations)
        return traffic and any(m.path.endswith("/scale") and m.status == 0 for m in emulator.mutations)

    await post_then_kill(config, url, log, traffic_off_and_scale_held, "traffic off, the scale PATCH held")
    assert rollback_rows(db) and rollback_rows(db)[0][1] == "pending"
    emulator.clear_faults()

    second = start_server(config, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, url, second, log)
        await wait_for(lambda: rollback_rows(db)[0][1] != "pending", "the resumed rollback")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)

    assert [status for _, status in rollback_rows(db)] == ["done"]
    ok_mutations = [m for m in emulator.mutations if m.ok and m.kind != "Event"]
    assert [(m.kind, m.name, m.subresource) for m in ok_mutations] == [
        ("Ingress", "checkout-canary", None),
        ("Deployment", "checkout-canary", "scale"),
    ]
    canary = emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")
    assert canary["spec"]["replicas"] == 0
    verify = audit_verify(db)
    assert verify.returncode == 0, verify.stderr
    assert "audit chain OK" in verify.stdout
    assert "resuming rollback" in log.read_text()


@pytest.mark.parametrize(
    ("path", "what"),
    [("/ingresses/", "traffic off landed"), ("/scale", "scale-down landed")],
)
async def test_sigkill_after_a_change_landed_unrecorded_still_restores_exactly(
    tmp_path: Path, cluster: tuple[Emulator, str], path: str, what: str
) -> None:
    """The change reached the API server but the responder died before recording it: the resumed step finds the
    object already in the safe state. Its before-value must come from the write-ahead record, not from that
    post-rollback read, or restore answers "restored" while leaving traffic off / the canary at 0 replicas."""
    emulator, kube_url = cluster
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, kube_url=kube_url, listen={"host": "127.0.0.1", "port": port})
    db, log = tmp_path / "responder.db", tmp_path / "server.log"
    canary = "checkout-canary"
    before_replicas = emulator.get_object("apps/v1/deployments", "shop", canary)["spec"]["replicas"]
    before_canary = emulator.get_object("networking.k8s.io/v1/ingresses", "shop", canary)["metadata"]["annotations"][
        "nginx.ingress.kubernetes.io/canary"
    ]
    # The PATCH is applied, then its answer is held: the responder never learns that it landed.
    emulator.add_fault(method="PATCH", path_contains=path, after=True, delay=60.0, times=1)

    await post_then_kill(config, url, log, lambda: any(m.landed and path in m.path for m in emulator.mutations), what)
    emulator.clear_faults()

    second = start_server(config, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, url, second, log)
            await wait_for(lambda: rollback_rows(db)[0][1] == "done", "the resumed rollback")
            async with session.post(
                f"{url}/api/v1/targets/shop/{canary}/restore", json={}, headers=bearer(ADMIN_TOKEN)
            ) as resp:
                body = await resp.json()
                assert (resp.status, body["status"]) == (200, "restored"), body
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=10)

    assert emulator.get_object("apps/v1/deployments", "shop", canary)["spec"]["replicas"] == before_replicas
    annotations = emulator.get_object("networking.k8s.io/v1/ingresses", "shop", canary)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == before_canary
    verify = audit_verify(db)
    assert verify.returncode == 0, verify.stderr

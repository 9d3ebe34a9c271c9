"""SIGKILL the real server process after a rollback's intent is durable and before its result: after a restart
the rollback completes exactly once and the audit chain verifies."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from support import (
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

from responder.emulator import Emulator

pytestmark = pytest.mark.slow


def rollback_rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [(row[0], row[1]) for row in conn.execute("SELECT incident, status FROM rollbacks")]


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

    first = start_server(config, log)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_healthy(session, url, first, log)
            async with session.post(f"{url}/api/v1/alerts", json=notification(alert()), headers=bearer()) as resp:
                assert resp.status == 200
        await wait_for(lambda: any(m.ok and "/ingresses/" in m.path for m in emulator.mutations), "traffic off")
        await asyncio.sleep(0.2)  # the scale PATCH is now in flight, held by the emulator
        assert rollback_rows(db) and rollback_rows(db)[0][1] == "pending"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
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

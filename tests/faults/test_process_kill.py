"""SIGKILL the real server process at random points, 50 times over, then check that nothing was lost or done twice.

One emulator (50 canary apps) serves every run. Each run starts ``python -m responder serve`` on the same
database, posts a scripted scenario from three Alertmanager peers (a new critical alert for the run's target,
repeats of the previous run's alert, a second alert for an already rolled-back target, a notify-only alert and a
resolution), sometimes with a slow /scale answer to widen the window, and SIGKILLs the process after a random
delay: before, during or after the acknowledgement, the decision, the intent, any step or the result. Like
Alertmanager, the next run re-sends every notification that did not get a 200.

After a final clean run: every 200-acknowledged notification is stored and each of its events decided exactly
once, each target was rolled back exactly once (one rollback record, one successful Ingress PATCH and one
successful /scale PATCH in the emulator), and ``canary-responder audit verify`` passes.

Run against both backends: the SQLite file, and the shared PostgreSQL (where a SIGKILL also leaves the server to
notice the dead session and release its transaction and the audit chain's lock).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from backends import Backend
from support import (
    alert,
    bearer,
    free_port,
    notification,
    start_server,
    wait_healthy,
    write_config,
)

from responder.testing.emulator import Emulator, run_emulator, sample_canary_objects

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("KILL_RUNS", "50"))
TARGETS = [f"app{i:02d}" for i in range(50)]
PEERS = ("http://alertmanager-0:9093", "http://alertmanager-1:9093", "http://alertmanager-2:9093")


@pytest.fixture
async def big_cluster() -> AsyncIterator[tuple[Emulator, str]]:
    objects = [obj for app in TARGETS for obj in sample_canary_objects("shop", app)]
    async with run_emulator(objects) as (emulator, url):
        yield emulator, url


def scenario(run: int) -> list[dict[str, Any]]:
    """The notifications of one run (each group is then posted by all three peers)."""
    target = TARGETS[run % len(TARGETS)]
    groups = [notification(alert(app=target))]
    if run > 0:
        previous = TARGETS[(run - 1) % len(TARGETS)]
        groups.append(
            notification(
                alert(app=previous),  # a repeat of the previous run's alert: a duplicate
                alert("CanaryHighLatency", app=previous),  # a second alert for a rolled-back target
                alert("CanaryLowTraffic", app=target, action="notify"),
                alert("CanaryLowTraffic", app=previous, action="notify", status="resolved"),
            )
        )
    return [{**group, "externalURL": peer} for group in groups for peer in PEERS]


async def post(session: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    try:
        async with session.post(f"{url}/api/v1/alerts", json=payload, headers=bearer()) as response:
            return await response.json() if response.status == 200 else None
    except (TimeoutError, aiohttp.ClientError):
        return None


def verify_cli(backend: Backend, config: Path) -> subprocess.CompletedProcess[str]:
    source = ["--config", str(config)] if backend.shared else ["--db", str(backend.db)]
    return subprocess.run(
        [sys.executable, "-m", "responder", "audit", "verify", *source], capture_output=True, text=True, check=False
    )


def audit_data(backend: Backend, kind: str) -> list[dict[str, Any]]:
    return [orjson.loads(row[0]) for row in backend.query("SELECT data FROM audit WHERE kind = ?", kind)]


async def test_sigkill_at_random_points_loses_nothing_and_does_nothing_twice(
    tmp_path: Path, big_cluster: tuple[Emulator, str], backend: Backend
) -> None:
    emulator, kube_url = big_cluster
    rng = random.Random(int(os.environ.get("KILL_SEED", "20261127")))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path,
        kube_url=kube_url,
        listen={"host": "127.0.0.1", "port": port},
        rollback_cap={"max": 1000, "window": "10m"},
        log_level="WARNING",
        storage=backend.storage(),
    )
    log = tmp_path / "server.log"
    read_db = backend.query
    acknowledged: dict[int, int] = {}  # notification id -> events in its 200 answer
    unacknowledged: list[dict[str, Any]] = []  # to be re-sent, as Alertmanager would
    interrupted = Counter[str]()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def send_all(payloads: list[dict[str, Any]]) -> None:
            answers = await asyncio.gather(*(post(session, url, p) for p in payloads))
            for payload, answer in zip(payloads, answers, strict=True):
                if answer is None:
                    unacknowledged.append(payload)
                else:
                    acknowledged[answer["notification_id"]] = answer["events"]

        for run in range(RUNS):
            if rng.random() < 0.5:  # a slow scale-down widens the window between traffic off and scaled
                emulator.add_fault(method="PATCH", path_contains="/scale", delay=rng.uniform(0.02, 0.15))
            server = start_server(config, log)
            try:
                await wait_healthy(session, url, server, log)
                payloads = [*unacknowledged, *scenario(run)]
                unacknowledged.clear()
                sender = asyncio.create_task(send_all(payloads))
                await asyncio.sleep(rng.uniform(0.0, 0.25))
            finally:
                server.send_signal(signal.SIGKILL)
                server.wait()
            await sender
            emulator.clear_faults()
            undecided = read_db("SELECT COUNT(*) FROM events WHERE decided_at IS NULL")[0][0]
            pending = read_db("SELECT COUNT(*) FROM rollbacks WHERE status='pending'")[0][0]
            interrupted["runs with undecided events"] += bool(undecided)
            interrupted["runs with a rollback under way"] += bool(pending)
            interrupted["runs with unacknowledged posts"] += bool(unacknowledged)

        # The final, clean run: re-send what was never acknowledged, let everything finish, stop gracefully.
        server = start_server(config, log)
        try:
            await wait_healthy(session, url, server, log)
            payloads = list(unacknowledged)
            unacknowledged.clear()
            await send_all(payloads)
            assert not unacknowledged
            for _ in range(300):
                undecided = read_db("SELECT COUNT(*) FROM events WHERE decided_at IS NULL")[0][0]
                pending = read_db("SELECT COUNT(*) FROM rollbacks WHERE status='pending'")[0][0]
                if not undecided and not pending:
                    break
                await asyncio.sleep(0.05)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
    print(f"\n{RUNS} SIGKILLs: {dict(interrupted)}; {len(acknowledged)} notifications acknowledged")

    # Every acknowledged notification is stored with all its events, each decided exactly once.
    events = read_db("SELECT id, notification_id, decided_at FROM events")
    per_notification = Counter(n for _, n, _ in events)
    assert {n: per_notification[n] for n in acknowledged} == acknowledged
    assert all(decided_at is not None for _, _, decided_at in events)
    decisions = Counter(data["event_id"] for data in audit_data(backend, "decision") if data.get("event_id"))
    assert sorted(decisions) == sorted(e for e, _, _ in events) and set(decisions.values()) == {1}

    # One rollback per target, completed; each mutation landed once.
    rollbacks = read_db("SELECT target, status FROM rollbacks")
    assert sorted(rollbacks) == sorted((f"shop/{t}-canary", "done") for t in TARGETS[: min(RUNS, len(TARGETS))])
    for kind, subresource in (("Ingress", None), ("Deployment", "scale")):
        landed = Counter(m.name for m in emulator.mutations if m.ok and m.kind == kind and m.subresource == subresource)
        assert set(landed.values()) == {1}, (kind, landed)
        assert len(landed) == len(rollbacks)
    for target in TARGETS[:RUNS]:
        assert emulator.get_object("apps/v1/deployments", "shop", f"{target}-canary")["spec"]["replicas"] == 0
    outcomes = Counter(data.get("outcome") for data in audit_data(backend, "decision"))
    assert outcomes["rollback"] == len(rollbacks) and outcomes["duplicate"] > 0

    verify = verify_cli(backend, config)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit chain OK" in verify.stdout
    # The kills did land inside work in progress.
    assert interrupted["runs with undecided events"] + interrupted["runs with a rollback under way"] > 0

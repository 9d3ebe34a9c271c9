"""Never quietly stop acting: the whole responder (HTTP, store, engine) against the in-process cluster fake.

Each test reproduces one way the responder used to stop acting while still answering 200: a restart that forgot a
restore, a failed rollback counted as done, refusals that used up the global cap, a mutation sent before its
intent was durable, an event the core cannot decide, a decide loop that died. The fake cluster is the port's
in-process fake (tests/fake_cluster.py); the emulator-backed tests cover the Kubernetes adapter itself.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fake_cluster import FakeCluster, canaries
from support import (
    ADMIN_TOKEN,
    Running,
    alert,
    bare_engine,
    bearer,
    notification,
    read_db,
    running_responder,
    wait_for,
    write_config,
)

from responder.core.decide import CoreSettings, Decision, DecisionCore
from responder.core.model import AlertEvent, FailureReason
from responder.core.webhook import WebhookNotification, to_event
from responder.engine import Engine
from responder.store import StoreUnavailable
from responder.store.sqlite import SqliteStore


def recent() -> datetime:
    """A minute ago, when the test runs (not when the module was imported: a persist deadline depends on it)."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def config(tmp_path: Path, **overrides: Any) -> Path:
    settings: dict[str, Any] = {"failed_rollbacks": {"retry_interval": "200ms", "max_retry_interval": "400ms"}}
    settings.update(overrides)
    return write_config(tmp_path, **settings)


def firing(app: str = "checkout", *, name: str = "CanaryHighErrorRate", **labels: str) -> dict[str, Any]:
    return alert(name, app=app, starts_at=recent(), **labels)


def resolving(app: str = "checkout", *, name: str = "CanaryHighErrorRate") -> dict[str, Any]:
    return alert(name, app=app, starts_at=recent(), status="resolved")


async def post(running: Running, *alerts: dict[str, Any]) -> None:
    response = await running.post_alerts(notification(*alerts))
    assert response.status == 200, await response.text()


async def restore(running: Running, app: str = "checkout") -> dict[str, Any]:
    async with running.session.post(
        f"{running.url}/api/v1/targets/shop/{app}-canary/restore", json={}, headers=bearer(ADMIN_TOKEN)
    ) as response:
        body: dict[str, Any] = await response.json()
        return {"http": response.status, **body}


def outcomes(db: Path) -> list[str]:
    return [str(r[0]) for r in read_db(db, "SELECT json_extract(data, '$.outcome') FROM audit WHERE kind='decision'")]


def statuses(db: Path) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in read_db(db, "SELECT incident, status FROM rollbacks ORDER BY rowid")]


@pytest.fixture
async def fake() -> AsyncIterator[FakeCluster]:
    yield canaries("checkout", "payments", "search")


async def test_a_restore_survives_a_restart(tmp_path: Path, fake: FakeCluster) -> None:
    """Restore, restart, new alert: the new alert rolls the live canary back (it used to be SUPPRESSED)."""
    cfg = config(tmp_path)
    async with running_responder(cfg, cluster=fake) as running:
        await post(running, firing())
        await running.services.engine.drain()
        assert fake.state_of("shop", "checkout")["replicas"] == 0
        restored = await restore(running)
        assert (restored["http"], restored["status"]) == (200, "restored"), restored
        assert fake.state_of("shop", "checkout") | {"stable_replicas": 0} == {
            "replicas": 3,
            "canary": "true",
            "rules": None,
            "stable_replicas": 0,
        }
    async with running_responder(cfg, cluster=fake) as running:
        await post(running, firing(name="CanaryHighLatencyP95"))
        await running.services.engine.drain()
    assert outcomes(tmp_path / "responder.db")[-1] == "rollback"
    assert fake.state_of("shop", "checkout")["replicas"] == 0


async def test_a_restart_rebuilds_the_same_decision_state(tmp_path: Path, fake: FakeCluster) -> None:
    cfg = config(tmp_path, failed_rollbacks={"retry_interval": "10m", "max_retry_interval": "10m"})
    fake.fail_forever("set_replicas", FailureReason.FORBIDDEN)  # checkout's rollback fails: "live and failing"
    async with running_responder(cfg, cluster=fake) as running:
        await post(running, firing(), firing("payments", action="rollback-if-persists"))
        await running.services.engine.drain()
        fake.heal()
        await post(running, firing("search"))
        await running.services.engine.drain()
        async with running.session.post(
            f"{running.url}/api/v1/pause", json={"reason": "freeze"}, headers=bearer(ADMIN_TOKEN)
        ) as response:
            assert response.status == 200
        await restore(running, "search")
        later = datetime.now(UTC) + timedelta(seconds=30)  # compare both states as of one instant after both
        before = state_at(running.services.engine.core, later)
        assert before["failing"] and before["pending"] and before["paused"]
    async with running_responder(cfg, cluster=fake) as running:
        assert state_at(running.services.engine.core, later) == before


def state_at(core: DecisionCore, moment: datetime) -> dict[str, Any]:
    """The core's state as of ``moment`` (what has expired by then forgotten), without touching the core."""
    copied = copy.deepcopy(core)
    copied.expire(moment)
    return copied.state()


async def test_a_failed_rollback_is_retried_while_its_alert_fires(tmp_path: Path, fake: FakeCluster) -> None:
    fake.fail_forever("set_replicas", FailureReason.SERVER_ERROR)
    db = tmp_path / "responder.db"
    async with running_responder(config(tmp_path), cluster=fake) as running:
        await post(running, firing())
        await wait_for(lambda: any(s == "failed" for _, s in statuses(db)), "the first run to fail")
        await wait_for(lambda: "retry" in outcomes(db), "a retry on the timer")
        assert fake.state_of("shop", "checkout")["canary"] == "false"  # traffic is off; the scale-down keeps failing
        fake.heal()
        await wait_for(lambda: statuses(db)[-1][1] == "done", "a retry that succeeds")
        assert fake.state_of("shop", "checkout")["replicas"] == 0
    assert len(statuses(db)) == 1  # one incident throughout
    kinds = [str(r[0]) for r in read_db(db, "SELECT kind FROM audit")]
    assert "rollback.retry" in kinds
    retried = read_db(db, "SELECT json_extract(spec, '$.retrying') FROM rollbacks")[0][0]
    assert not retried
    # restore puts back the values from before the first run, not the half-rolled-back state a retry saw
    async with running_responder(config(tmp_path), cluster=fake) as running:
        restored = await restore(running)
        assert (restored["http"], restored["status"]) == (200, "restored"), restored
    assert fake.state_of("shop", "checkout")["canary"] == "true"
    assert fake.state_of("shop", "checkout")["replicas"] == 3


async def test_a_new_alert_for_a_failed_canary_acts_at_once(tmp_path: Path, fake: FakeCluster) -> None:
    fake.fail_forever("patch_object", FailureReason.FORBIDDEN)
    db = tmp_path / "responder.db"
    cfg = config(tmp_path, failed_rollbacks={"retry_interval": "10m", "max_retry_interval": "10m"})
    async with running_responder(cfg, cluster=fake) as running:
        await post(running, firing())
        await running.services.engine.drain()
        assert statuses(db)[0][1] == "failed"
        fake.heal()
        await post(running, firing(name="CanaryHighLatencyP95"))
        await running.services.engine.drain()
    assert outcomes(db)[-1] == "retry"
    assert statuses(db)[0][1] == "done" and fake.state_of("shop", "checkout")["replicas"] == 0


async def test_retries_stop_when_the_alerts_resolve(tmp_path: Path, fake: FakeCluster) -> None:
    fake.fail_forever("set_replicas", FailureReason.FORBIDDEN)
    db = tmp_path / "responder.db"
    cfg = config(tmp_path, failed_rollbacks={"retry_interval": "10m", "max_retry_interval": "10m"})
    async with running_responder(cfg, cluster=fake) as running:
        await post(running, firing())
        await running.services.engine.drain()
        await post(running, resolving())
        await running.services.engine.drain()
        assert running.services.engine.core.next_deadline() is None
    assert outcomes(db)[-2:] == ["resolved", "cancelled"]
    notices = [str(r[0]) for r in read_db(db, "SELECT kind FROM outbox ORDER BY id")]
    assert "retry_stopped" in notices


async def test_refusals_that_changed_nothing_do_not_use_up_the_cap(tmp_path: Path, fake: FakeCluster) -> None:
    db = tmp_path / "responder.db"
    async with running_responder(config(tmp_path, rollback_cap={"max": 3, "window": "10m"}), cluster=fake) as running:
        await post(running, firing("ghost-a"), firing("ghost-b"), firing("ghost-c"))  # no such canaries
        await running.services.engine.drain()
        assert [s for _, s in statuses(db)] == ["refused"] * 3
        await post(running, firing())
        await running.services.engine.drain()
    assert outcomes(db)[-1] == "rollback"
    assert fake.state_of("shop", "checkout")["replicas"] == 0


async def test_no_mutation_before_its_intent_is_durable(tmp_path: Path, fake: FakeCluster) -> None:
    """At the moment each mutating call reaches the cluster, another connection already sees the rollback's
    intent and that step's write-ahead record committed in the database."""
    db = tmp_path / "responder.db"
    seen: list[tuple[str, list[str], list[str]]] = []

    async def inspect(method: str, call: tuple[Any, ...]) -> None:
        if method.startswith("set_") or method == "patch_object":
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                kinds = [str(r[0]) for r in conn.execute("SELECT kind FROM audit")]
                sql = "SELECT json_extract(data, '$.step') FROM audit WHERE kind='action.intent'"
                intents = [str(r[0]) for r in conn.execute(sql)]
            seen.append((method, kinds, intents))

    fake.before_call = inspect
    async with running_responder(config(tmp_path), cluster=fake) as running:
        await post(running, firing())
        await running.services.engine.drain()
    assert [m for m, _, _ in seen] == ["patch_object", "set_replicas"]
    steps = {"patch_object": "traffic_off:nginx/checkout-canary", "set_replicas": "scale_zero"}
    for method, kinds, intents in seen:
        assert "rollback.intent" in kinds, method
        assert intents[-1] == steps[method], (method, intents)


async def test_forced_replay_never_passes_the_pause_or_the_cap(tmp_path: Path, fake: FakeCluster) -> None:
    async with running_responder(config(tmp_path, rollback_cap={"max": 1, "window": "10m"}), cluster=fake) as running:
        await post(running, firing())
        await running.services.engine.drain()

        async def replay(payload: dict[str, Any]) -> list[str]:
            body = {"payload": payload, "dry_run": False, "force": True}
            async with running.session.post(
                f"{running.url}/api/v1/replay", json=body, headers=bearer(ADMIN_TOKEN)
            ) as response:
                assert response.status == 200, await response.text()
                return [d["outcome"] for d in (await response.json())["decisions"]]

        assert await replay(notification(firing("payments"))) == ["held"]  # the cap: 1 per 10 minutes
        async with running.session.post(f"{running.url}/api/v1/pause", json={}, headers=bearer(ADMIN_TOKEN)):
            pass
        assert await replay(notification(firing())) == ["held"]
        await running.services.engine.drain()
    assert fake.state_of("shop", "payments")["replicas"] == 3


class _PoisonCore(DecisionCore):
    """A core with a bug for alerts named Poison (the engine must quarantine, not stop)."""

    def __init__(self, settings: CoreSettings) -> None:
        super().__init__(settings)

    def on_event(self, event: AlertEvent, now: datetime) -> list[Decision]:
        if event.alertname == "Poison":
            raise ValueError("a bug in the core")
        return super().on_event(event, now)


def poison_core(running: Running) -> None:
    engine: Engine = running.services.engine
    engine.core = _PoisonCore(engine.core.settings)


async def test_an_event_the_core_cannot_decide_is_quarantined_and_the_queue_moves_on(
    tmp_path: Path, fake: FakeCluster
) -> None:
    db = tmp_path / "responder.db"
    async with running_responder(config(tmp_path), cluster=fake) as running:
        poison_core(running)
        await post(running, firing(name="Poison"))
        await post(running, firing())
        await running.services.engine.drain()
    assert outcomes(db) == ["error", "rollback"]
    assert fake.state_of("shop", "checkout")["replicas"] == 0
    errors = read_db(db, "SELECT kind, json_extract(data, '$.reason') FROM outbox WHERE kind='error'")
    assert errors and "a bug in the core" in str(errors[0][1])


class _CrashingCore(DecisionCore):
    """A core whose timer crashes ``times`` times: the decide loop itself dies and must be brought back."""

    crashes = 0
    times = 1

    def on_tick(self, now: datetime) -> list[Decision]:
        if _CrashingCore.crashes < _CrashingCore.times:
            _CrashingCore.crashes += 1
            raise RuntimeError("the decide loop died")
        return super().on_tick(now)


async def crash_decide_loop(running: Running, times: int) -> None:
    _CrashingCore.crashes, _CrashingCore.times = 0, times
    engine: Engine = running.services.engine
    engine.core = _CrashingCore(engine.core.settings)
    engine.poke()


async def test_a_crashed_decide_loop_is_logged_counted_and_recovered(
    tmp_path: Path, fake: FakeCluster, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_responder(config(tmp_path), cluster=fake) as running:
        await crash_decide_loop(running, times=1)
        crashes = running.services.metrics.registry.get_sample_value
        await wait_for(lambda: crashes("canary_responder_task_crashes_total", {"task": "engine-decide"}) == 1, "crash")
        await post(running, firing())
        await wait_for(lambda: fake.state_of("shop", "checkout")["replicas"] == 0, "the rollback after recovery")
        async with running.session.get(f"{running.url}/healthz") as response:
            assert response.status == 200
    assert any("engine-decide crashed" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


async def test_a_decide_loop_that_keeps_crashing_turns_healthz_red(tmp_path: Path, fake: FakeCluster) -> None:
    async with running_responder(config(tmp_path), cluster=fake) as running:
        running.services.engine.health._max = 3  # the default is 5 within 5 minutes; keep the test short
        await crash_decide_loop(running, times=1000)

        async def healthz() -> tuple[int, dict[str, Any]]:
            async with running.session.get(f"{running.url}/healthz") as response:
                return response.status, await response.json()

        deadline = asyncio.get_running_loop().time() + 15
        status, body = await healthz()
        while status == 200 and asyncio.get_running_loop().time() < deadline:
            running.services.engine.poke()  # each wake-up crashes the loop again
            await asyncio.sleep(0.05)
            status, body = await healthz()
        assert status == 503 and "engine-decide" in body["problems"][0]


async def test_an_unknown_cluster_is_refused_by_the_executor_itself(tmp_path: Path) -> None:
    """The core never maps an alert to an unconfigured cluster; the executor refuses one anyway (second line)."""
    from responder.core.model import StepResult, TargetRef, TrafficRef
    from responder.engine.executor import RetryPolicy, SafetyRules, execute_rollback

    fake = canaries("checkout")
    recorded: list[Any] = []

    async def on_step(outcome: Any) -> None:
        recorded.append(outcome)

    target = TargetRef("shop", "checkout-canary", (TrafficRef("nginx", "checkout-canary"),), cluster="elsewhere")
    for clusters in (None, {"prod": frozenset({"shop"})}):
        recorded.clear()
        safety = SafetyRules(allowed_namespaces=frozenset({"shop"}), clusters=clusters)
        outcomes_ = await execute_rollback(fake, target, safety=safety, retry=RetryPolicy(), on_step=on_step)
        assert [(o.result, o.reason) for o in outcomes_] == [(StepResult.REFUSED, FailureReason.UNKNOWN_CLUSTER)]
    assert fake.calls == []


class _HeldStore(SqliteStore):
    """The real store, except that its first urgent write (a rollback's intent) waits for ``release``: the
    window in which a commit is slow or being retried after a failure."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = asyncio.Event()
        self._held = False

    async def write(self, fn: Any, *, urgent: bool = False, term: int | None = None) -> Any:
        if urgent and not self._held:
            self._held = True
            await self.release.wait()
        return await super().write(fn, urgent=urgent, term=term)


def engine_for(tmp_path: Path, store: SqliteStore, fake: FakeCluster) -> Engine:
    """An engine on its own (no HTTP), over a store and the fake cluster the test controls."""
    return bare_engine(config(tmp_path), store, fake)


def event_of(payload: dict[str, Any]) -> AlertEvent:
    return to_event(WebhookNotification.model_validate(notification(payload)).alerts[0])


async def test_no_step_mutates_while_the_intent_commit_is_delayed(tmp_path: Path, fake: FakeCluster) -> None:
    store = _HeldStore(tmp_path / "responder.db")
    await store.open()
    checked = asyncio.Event()

    async def watch(method: str, call: tuple[Any, ...]) -> None:
        if method == "get_scale" or method == "get_object":
            checked.set()

    fake.before_call = watch
    engine = engine_for(tmp_path, store, fake)
    await engine.start()
    try:
        await engine.accept(b"{}", [event_of(firing())], {}, received_at=0.0)
        await asyncio.wait_for(checked.wait(), 5)  # the lane's CHECK has read the live objects
        await asyncio.sleep(0.2)  # a mutation would reach the fake within this time if it were not held
        assert fake.mutations == []
        store.release.set()
        await engine.drain()
        assert [m.method for m in fake.landed() if m.method != "emit_event"] == ["patch_object", "set_replicas"]
    finally:
        await engine.stop()
        await store.close()


async def test_a_restore_whose_pods_never_got_ready_can_be_run_again(tmp_path: Path) -> None:
    """It used to leave the target stuck: the second restore was refused because the replicas had changed."""
    fake = canaries("checkout")
    async with running_responder(config(tmp_path, restore={"ready_timeout": "1s"}), cluster=fake) as running:
        await post(running, firing())
        await running.services.engine.drain()
        fake.set_ready("shop", "checkout-canary", False)
        first = await restore(running)
        assert (first["http"], first["status"], first["reason"]) == (502, "failed", "not_ready"), first
        assert fake.state_of("shop", "checkout") | {"stable_replicas": 0} == {
            "replicas": 3,
            "canary": "false",  # traffic stays off while the pods are not ready
            "rules": None,
            "stable_replicas": 0,
        }
        fake.set_ready("shop", "checkout-canary", True)
        second = await restore(running)
        assert (second["http"], second["status"]) == (200, "restored"), second
    assert fake.state_of("shop", "checkout")["canary"] == "true"


class _SlowLoadStore(SqliteStore):
    """The real store, except that reading the undecided events on start waits for ``release``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = asyncio.Event()
        self.reading = asyncio.Event()

    async def undecided_events(self) -> list[tuple[AlertEvent, float]]:
        self.reading.set()
        await self.release.wait()
        return await super().undecided_events()


async def test_a_notification_accepted_while_the_engine_loads_is_decided_once(
    tmp_path: Path, fake: FakeCluster
) -> None:
    """It used to be queued twice (by accept, and again as "undecided" by the load): decided twice, and the
    engine never drained."""
    store = _SlowLoadStore(tmp_path / "responder.db")
    await store.open()
    engine = engine_for(tmp_path, store, fake)
    starting = asyncio.create_task(engine.start())
    try:
        await asyncio.wait_for(store.reading.wait(), 5)
        await engine.accept(b"{}", [event_of(firing())], {}, received_at=0.0)
        store.release.set()
        await starting
        await engine.drain()
        decisions = await store.audit_entries(kind="decision")
        assert [e.data["outcome"] for e in decisions] == ["rollback"]
    finally:
        await engine.stop()
        await store.close()


class _StuckStore(SqliteStore):
    """The real store whose writes never complete while ``stuck`` is set (a database locked by another process)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.stuck = False
        self.free = asyncio.Event()

    async def write(self, fn: Any, *, urgent: bool = False, term: int | None = None) -> Any:
        if self.stuck:
            await self.free.wait()
        return await super().write(fn, urgent=urgent, term=term)


async def test_pause_on_an_unwritable_database_answers_instead_of_hanging(tmp_path: Path, fake: FakeCluster) -> None:
    store = _StuckStore(tmp_path / "responder.db")
    await store.open()
    engine = engine_for(tmp_path, store, fake)
    engine.options = dataclasses.replace(engine.options, admin_write_timeout_s=0.3)
    await engine.start()
    try:
        store.stuck = True
        with pytest.raises(StoreUnavailable, match="in effect but not yet recorded"):
            await asyncio.wait_for(engine.operations.set_paused(paused=True, actor="ops", reason="freeze"), 5)
        assert engine.core.paused  # in effect at once
        store.stuck = False
        store.free.set()
        for _ in range(100):
            if await store.pause_state():
                break
            await asyncio.sleep(0.02)
        assert (await store.pause_state() or {}).get("paused") is True  # recorded once the database is back
    finally:
        await engine.stop()
        await store.close()

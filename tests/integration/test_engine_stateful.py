"""A hypothesis state machine over the real engine and store, with the in-process cluster fake and a fake clock.

Rules post alerts (firing and resolved, duplicates from HA peers, out of order, at the edges of the accepted time
range, for canaries that exist, one that is not a canary, one that does not exist, a namespace outside the
allowlist), restore, pause and resume, replay (plain and forced), move the clock, inject Kubernetes faults (also
ones whose change lands before the error), restart cleanly, and crash between any two cluster calls.

Invariants, checked after every rule against the fake's log and a small reference model of the alerts:
- nothing outside the allowlist, nothing without the canary marker and no stable Deployment is ever changed;
- canary traffic is off before a canary is scaled to zero;
- a clean restart gives back exactly the decision state it stopped with, so no later decision changes;
- an acting alert for a live canary (seen after its last restore) ends in a rollback, or in a notification that
  says why not (held, paused, failed, error): never in silence; every accepted event is decided;
- a restore that says "restored" puts back exactly the state before the rollback;
- the audit chain verifies.

CI runs a fixed budget. A longer run: ``STATEFUL_EXAMPLES=500 STATEFUL_STEPS=60 .venv/bin/python -m pytest
tests/integration/test_engine_stateful.py -p no:cacheprovider``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
from fake_cluster import FakeCluster
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pydantic import ValidationError
from support import alert, notification, write_config

from responder.app import engine_options
from responder.config import load_settings
from responder.core.decide import DecisionCore, shifted
from responder.core.model import AlertStatus, FailureReason
from responder.core.webhook import WebhookNotification, to_event
from responder.engine import Engine
from responder.engine.executor import RetryPolicy
from responder.metrics import Metrics
from responder.notify import build_outbox
from responder.store.sqlite import SqliteStore

T = TypeVar("T")
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PERSIST_FOR = timedelta(minutes=2)
LIVE = ("a", "b")  # canaries with the marker, each with an Ingress
APPS = (*LIVE, "c", "ghost")  # c-canary lacks the marker; ghost-canary does not exist
BASELINE = {"replicas": 3, "canary": "true"}
WRITES = ("patch_object", "set_replicas")
CANARY = "nginx.ingress.kubernetes.io/canary"
STARTS = {
    "10m ago": -600.0,
    "1m ago": -60.0,
    "now": 0.0,
    "in 30s": 30.0,
    "epoch": None,  # the edges of the accepted range
    "last": None,
}
EDGES = {"epoch": datetime(1970, 1, 1, tzinfo=UTC), "last": datetime(2262, 4, 11, 23, 47, 16, tzinfo=UTC)}


@dataclasses.dataclass
class _Seen:
    starts_at: datetime
    persist: bool
    tick: int  # the model's step counter when the identity was first seen


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="stateful-"))
        self.now = T0
        self.fake = FakeCluster()
        for app in LIVE:
            self.fake.add_stable("shop", app)
            self.fake.add_canary("shop", app, replicas=3)
        self.fake.add_stable("shop", "c")
        self.fake.add_canary("shop", "c", replicas=3, marker=("version", "stable"))
        config = write_config(
            self.dir,
            safety={"allowed_namespaces": ["shop"]},
            rollback_cap={"max": 2, "window": "10m"},
            failed_rollbacks={"retry_interval": "30s", "max_retry_interval": "2m"},
            dedupe_ttl="1h",
        )
        self.settings, self.secrets = load_settings(config, {})
        self.tick = 0
        self.seen: dict[str, dict[tuple[str, str, datetime], _Seen]] = {app: {} for app in APPS}
        self.resolved: dict[str, datetime] = {}  # fingerprint -> latest resolved startsAt
        self.restored_at: dict[str, tuple[int, int]] = {app: (-1, 0) for app in LIVE}  # (model tick, outbox id)
        self.paused = False
        self.crashed = False
        self.engine, self.store, self.outbox = self.run(self._open())

    # -- plumbing --

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    async def _open(self) -> tuple[Engine, SqliteStore, Any]:
        store = SqliteStore(self.dir / "responder.db")
        await store.open()
        metrics = Metrics()
        outbox = build_outbox(self.settings, self.secrets, store=store, metrics=metrics)
        await outbox.start()
        options = dataclasses.replace(
            engine_options(self.settings), retry=RetryPolicy(attempts=2, base_delay_s=0.001, max_delay_s=0.002)
        )
        engine = Engine(
            core=DecisionCore(self.settings.core()),
            store=store,
            cluster=self.fake,
            metrics=metrics,
            options=options,
            clock=lambda: self.now,
            notice_hook=outbox.hook,
        )
        await engine.start()
        return engine, store, outbox

    async def _close(self) -> None:
        await self.engine.stop()
        await self.outbox.stop()
        await self.store.close()

    def teardown(self) -> None:
        try:
            if not self.crashed:
                self.check_audit_chain()
            self.run(self._close())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def settle(self) -> None:
        self.run(self.engine.drain(within=20))

    async def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return await self.store.read(lambda r: [tuple(row) for row in r.conn.execute(sql, args)])

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return self.run(self._rows(sql, *args))

    # -- rules --

    @rule(
        app=st.sampled_from([*APPS, "a@other"]),
        policy=st.sampled_from(["rollback", "rollback-if-persists", "notify"]),
        name=st.sampled_from(["ErrorRate", "Latency"]),
        start=st.sampled_from(sorted(STARTS)),
        resolved=st.booleans(),
        peers=st.integers(1, 2),
    )
    def post(self, app: str, policy: str, name: str, start: str, resolved: bool, peers: int) -> None:
        app, _, namespace = app.partition("@")
        starts_at = EDGES.get(start) or self.now + timedelta(seconds=STARTS[start] or 0.0)
        payload = alert(
            name,
            app=app,
            namespace=namespace or "shop",
            action=policy,
            starts_at=starts_at,
            status="resolved" if resolved else "firing",
        )
        self.deliver(notification(payload), peers=peers)

    def deliver(self, payload: dict[str, Any], *, peers: int = 1, force: bool = False) -> None:
        try:
            parsed = WebhookNotification.model_validate(payload)
        except ValidationError:
            return  # refused at the edge (422): tested by the payload model's own tests
        events = [dataclasses.replace(to_event(a), forced=force) for a in parsed.alerts]
        raw = orjson.dumps(payload)
        for _ in range(peers):
            self.run(self.engine.accept(raw, events, {"peer": _}, received_at=0.0))
            self.remember(events, force=force)
        self.settle()

    def remember(self, events: list[Any], *, force: bool) -> None:
        self.tick += 1
        for event in events:
            app, namespace = event.labels.get("app", ""), event.labels.get("namespace", "")
            if event.status is AlertStatus.RESOLVED:
                previous = self.resolved.get(event.fingerprint)
                self.resolved[event.fingerprint] = max(previous or event.starts_at, event.starts_at)
                continue
            if namespace != "shop" or app not in APPS or event.labels.get("action") == "notify":
                continue
            identity = (event.fingerprint, event.status.value, event.starts_at)
            if identity not in self.seen[app] or force:
                persist = event.labels.get("action") == "rollback-if-persists"
                self.seen[app][identity] = _Seen(event.starts_at, persist, self.tick)

    @rule(app=st.sampled_from(LIVE))
    def restore(self, app: str) -> None:
        result = self.run(self.engine.operations.restore("shop", f"{app}-canary", actor="admin:test", dry_run=False))
        self.settle()
        if result.status == "restored":
            assert self.fake.state_of("shop", app)["replicas"] == BASELINE["replicas"], result
            assert self.fake.state_of("shop", app)["canary"] == BASELINE["canary"], result
            last = self.rows("SELECT coalesce(max(id), 0) FROM outbox")[0][0]
            self.tick += 1
            self.restored_at[app] = (self.tick, int(last))

    @rule(pause=st.booleans())
    def pause_or_resume(self, pause: bool) -> None:
        self.run(self.engine.operations.set_paused(paused=pause, actor="test", reason="state machine"))
        self.paused = pause
        self.tick += 1
        self.settle()

    @rule(app=st.sampled_from(LIVE), force=st.booleans())
    def replay(self, app: str, force: bool) -> None:
        payload = alert("ErrorRate", app=app, starts_at=self.now - timedelta(minutes=10))
        self.deliver(notification(payload), force=force)

    @rule(seconds=st.sampled_from([1, 29, 31, 60, 125, 600, 1000]))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.engine.poke()
        self.settle()

    @rule(
        method=st.sampled_from([*WRITES, "get_deployment", "get_object", "get_scale"]),
        reason=st.sampled_from([FailureReason.SERVER_ERROR, FailureReason.FORBIDDEN, FailureReason.TIMEOUT]),
        times=st.integers(1, 3),
        land=st.booleans(),
    )
    def fault(self, method: str, reason: FailureReason, times: int, land: bool) -> None:
        # Only an uncertain answer (timeout, 5xx) may hide a change that landed; a 403 never does.
        uncertain = reason in (FailureReason.SERVER_ERROR, FailureReason.TIMEOUT)
        self.fake.fail(method, reason, times, land=land and uncertain and method in WRITES)

    @rule()
    def heal(self) -> None:
        self.fake.heal()

    @rule()
    def restart(self) -> None:
        self.engine.core.expire(self.now)  # as the rebuilt core does: compare states at the same instant
        before = self.engine.core.state()
        self.run(self._close())
        self.engine, self.store, self.outbox = self.run(self._open())
        self.settle()
        assert self.engine.core.state() == before

    @rule(after_calls=st.integers(0, 7), app=st.sampled_from(LIVE))
    def crash(self, after_calls: int, app: str) -> None:
        """Freeze at the n-th cluster call from now (a pending change may have landed, its record not), kill
        the engine with whatever was not committed, and start again on the same database."""
        frozen, calls = asyncio.Event(), [0]

        async def hook(method: str, call: tuple[Any, ...]) -> None:
            calls[0] += 1
            if calls[0] > after_calls:
                frozen.set()
                await asyncio.Event().wait()  # never returns: cancelled by the kill

        self.fake.fail("set_replicas", FailureReason.TIMEOUT, 1, land=True)  # a change that lands unrecorded
        self.fake.before_call = hook
        payload = alert("ErrorRate", app=app, starts_at=self.now - timedelta(minutes=1))
        parsed = WebhookNotification.model_validate(notification(payload))
        events = [to_event(a) for a in parsed.alerts]
        self.run(self.engine.accept(orjson.dumps(notification(payload)), events, {}, received_at=0.0))
        self.remember(events, force=False)

        async def until_frozen_or_idle() -> None:
            frozen_wait = asyncio.ensure_future(frozen.wait())
            drained = asyncio.ensure_future(self.engine.drain(within=20))
            await asyncio.wait({frozen_wait, drained}, return_when=asyncio.FIRST_COMPLETED)
            for task in (frozen_wait, drained):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await task

        self.run(until_frozen_or_idle())
        self.run(self._close())  # the kill: everything not committed is lost
        self.fake.before_call = None
        self.fake.heal("set_replicas")
        self.engine, self.store, self.outbox = self.run(self._open())
        self.settle()

    # -- invariants --

    @invariant()
    def nothing_forbidden_was_touched(self) -> None:
        for mutation in self.fake.mutations:
            if not mutation.landed or mutation.method == "emit_event":
                continue
            assert mutation.namespace == "shop", mutation
            assert mutation.name.endswith("-canary"), mutation  # never a stable Deployment
            if mutation.method == "patch_object":  # only the canary Ingress's canary annotation, nothing else
                assert mutation.args["plural"] == "ingresses", mutation
                assert set(mutation.args["patch"]) == {"metadata"}, mutation
                assert set(mutation.args["patch"]["metadata"]) == {"annotations"}, mutation
                assert set(mutation.args["patch"]["metadata"]["annotations"]) == {CANARY}, mutation
            deployment = mutation.snapshot["deployments"][("shop", mutation.name)]
            assert deployment["labels"].get("version") == "canary", mutation

    @invariant()
    def traffic_is_off_before_scale_down(self) -> None:
        for mutation in self.fake.landed("set_replicas"):
            if mutation.args.get("replicas") == 0:
                app = mutation.name.removesuffix("-canary")
                assert mutation.state_of("shop", app)["canary"] == "false", mutation

    @invariant()
    def every_accepted_event_is_decided(self) -> None:
        undecided = self.rows("SELECT id FROM events WHERE decided_at IS NULL")
        assert undecided == []
        missing = self.rows(
            "SELECT id FROM events WHERE id NOT IN"
            " (SELECT json_extract(data, '$.event_id') FROM audit WHERE kind = 'decision')"
        )
        assert missing == []
        pending = self.rows("SELECT incident FROM rollbacks WHERE status = 'pending'")
        assert pending == []

    @invariant()
    def never_silent(self) -> None:
        for app in LIVE:
            state = self.fake.state_of("shop", app)
            if state["canary"] == "false":
                continue  # no user reaches the canary (rolled back, or a restore that stopped before traffic)
            acting = self.open_acting(app)
            if not acting:
                continue
            since = self.restored_at[app][1]
            explained = self.rows(
                "SELECT kind, data FROM outbox WHERE id > ? AND target = ? AND (kind IN ('held', 'paused_hold',"
                " 'error') OR (kind = 'rollback' AND json_extract(data, '$.status') IN ('failed', 'refused')))",
                since,
                f"shop/{app}-canary",
            )
            assert explained, (app, state, acting)

    def open_acting(self, app: str) -> list[Any]:
        found = []
        for (fp, _, starts_at), seen in self.seen[app].items():
            if seen.tick <= self.restored_at[app][0]:
                continue
            if starts_at <= self.resolved.get(fp, datetime.min.replace(tzinfo=UTC)):
                continue
            if seen.persist and shifted(min(starts_at, self.now), PERSIST_FOR) > self.now:
                continue
            found.append((fp, starts_at))
        return found

    def check_audit_chain(self) -> None:
        report = self.run(self.store.verify())
        assert report.ok, report.problems


EngineMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("STATEFUL_EXAMPLES", "25")),
    stateful_step_count=int(os.environ.get("STATEFUL_STEPS", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineMachine = EngineMachine.TestCase

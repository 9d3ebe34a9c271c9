"""A rollback left half done (a crash, a failover) is resumed only while it is still what was decided (issue 17,
"no stale resumes"): nothing changed -> finished; the canary put back by hand, a restore or a newer rollback
recorded since, or too old -> ABANDONED (recorded, notified, nothing sent)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fake_cluster import CANARY_ANNOTATION, FakeCluster, canaries
from support import alert, bare_engine, finish_and_stop, notification, stop_at_call, write_config

from responder.core.webhook import WebhookNotification, to_event
from responder.engine import Engine
from responder.store.sqlite import SqliteStore


def new_engine(tmp_path: Path, store: SqliteStore, fake: FakeCluster, **options: Any) -> Engine:
    return bare_engine(write_config(tmp_path), store, fake, **options)


async def crash_before_scale(tmp_path: Path, store: SqliteStore, fake: FakeCluster) -> None:
    """Run a rollback up to its scale-down's read, then stop the engine there (the process dies)."""
    await stop_at_call(new_engine(tmp_path, store, fake), fake, "get_scale")
    [record] = await store.rollbacks()
    assert record.status == "pending" and record.steps["traffic_off:nginx/checkout-canary"]["result"] == "done"


async def resumed(tmp_path: Path, store: SqliteStore, fake: FakeCluster, **options: Any) -> str:
    return await finish_and_stop(new_engine(tmp_path, store, fake, **options), store)


async def test_a_rollback_nothing_touched_since_is_resumed_and_finished(tmp_path: Path, store: SqliteStore) -> None:
    fake = canaries("checkout")
    await crash_before_scale(tmp_path, store, fake)
    assert await resumed(tmp_path, store, fake) == "done"
    assert fake.state_of("shop", "checkout")["replicas"] == 0


async def test_the_canary_put_back_by_hand_is_not_pulled_out_again(tmp_path: Path, store: SqliteStore) -> None:
    fake = canaries("checkout")
    await crash_before_scale(tmp_path, store, fake)
    fake.edit_ingress("shop", "checkout-canary", annotations={CANARY_ANNOTATION: "true"})  # a human re-enables it
    landed = len(fake.landed())
    assert await resumed(tmp_path, store, fake) == "abandoned"
    assert len(fake.landed()) == landed  # nothing sent
    assert fake.state_of("shop", "checkout")["replicas"] == 3
    [result] = await store.audit_entries(kind="rollback.result")
    assert result.data["status"] == "abandoned" and "turned back on" in result.data["reason"]
    [record] = await store.rollbacks()
    assert record.steps["resume"]["result"] == "abandoned"  # shown with the steps in messages and reports


async def test_a_rollback_older_than_resume_within_is_abandoned(tmp_path: Path, store: SqliteStore) -> None:
    fake = canaries("checkout")
    await crash_before_scale(tmp_path, store, fake)
    landed = len(fake.landed())
    assert await resumed(tmp_path, store, fake, resume_within=timedelta(0)) == "abandoned"
    assert len(fake.landed()) == landed
    [result] = await store.audit_entries(kind="rollback.result")
    assert "engine.resume_within" in result.data["reason"]


async def test_an_abandoned_rollback_leaves_the_target_live_for_the_next_alert(
    tmp_path: Path, store: SqliteStore
) -> None:
    fake = canaries("checkout")
    await crash_before_scale(tmp_path, store, fake)
    fake.edit_ingress("shop", "checkout-canary", annotations={CANARY_ANNOTATION: "true"})
    engine = new_engine(tmp_path, store, fake)
    await engine.start()
    try:
        await engine.drain()
        again = to_event(WebhookNotification.model_validate(notification(alert(severity="page"))).alerts[0])
        await engine.accept(b"{}", [again], {}, received_at=0.0)
        await engine.drain()
    finally:
        await engine.stop()
    assert sorted(r.status for r in await store.rollbacks()) == ["abandoned", "done"]
    assert fake.state_of("shop", "checkout")["replicas"] == 0

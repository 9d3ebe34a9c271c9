"""The two locks on acting, each tested alone (issue 17), with an engine over the fake cluster:

- certainty: a step due after this replica's leadership stopped being certain sends nothing, records no result,
  and leaves the rollback pending for the next leader;
- fencing: once another replica took a newer term in the database, the write-ahead record of the next change is
  refused, so the change is never sent, even while this replica still believes it leads.

The process-level attacks (SIGSTOP past the lease, SIGKILL, SIGTERM) are in tests/ha/."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fake_cluster import FakeCluster, canaries
from support import alert, notification, write_config

from responder.app import engine_options
from responder.config import load_settings
from responder.core.decide import DecisionCore
from responder.core.webhook import WebhookNotification, to_event
from responder.engine import Engine
from responder.engine.leadership import Authority
from responder.metrics import Metrics
from responder.store.sqlite import SqliteStore


async def engine_with(tmp_path: Path, store: SqliteStore, fake: FakeCluster, authority: Authority) -> Engine:
    settings, _ = load_settings(write_config(tmp_path), {})
    engine = Engine(
        core=DecisionCore(settings.core()),
        store=store,
        cluster=fake,
        metrics=Metrics(),
        options=engine_options(settings),
        authority=authority,
    )
    authority.term = await store.take_leadership("replica-a_1")
    await engine.start()
    return engine


async def rollback_paused_before_scale(engine: Engine, fake: FakeCluster) -> tuple[asyncio.Event, asyncio.Event]:
    """Start a rollback and hold it right before its scale-down reads the Deployment's scale."""
    reached, release = asyncio.Event(), asyncio.Event()

    async def hold(method: str, call: tuple[Any, ...]) -> None:
        if method == "get_scale" and not release.is_set():
            reached.set()
            await release.wait()

    fake.before_call = hold
    payload = notification(alert())
    event = to_event(WebhookNotification.model_validate(payload).alerts[0])
    await engine.accept(b"{}", [event], {}, received_at=0.0)
    await asyncio.wait_for(reached.wait(), 5)
    return reached, release


async def test_a_change_due_once_leadership_is_no_longer_certain_is_not_sent(
    tmp_path: Path, store: SqliteStore
) -> None:
    fake = canaries("checkout")
    certain = True
    authority = Authority(certain=lambda: certain)
    lost: list[str] = []
    authority.on_lost = lost.append
    engine = await engine_with(tmp_path, store, fake, authority)
    try:
        _, release = await rollback_paused_before_scale(engine, fake)
        assert [m.method for m in fake.landed()] == ["patch_object"]  # traffic off landed before the pause
        certain = False  # e.g. the process was frozen past its lease
        release.set()
        await asyncio.sleep(0.3)
        assert [m.method for m in fake.landed()] == ["patch_object"]  # no scale-down, no Event
        [record] = await store.rollbacks()
        assert record.status == "pending"  # no result recorded: the next leader re-validates and resumes it
        assert "scale_zero" not in record.steps or record.steps["scale_zero"].get("result") == "intent"
        assert lost and "not certain" in lost[0]
        assert not [e for e in await store.audit_entries(kind="rollback.result")]
    finally:
        await engine.stop()


async def test_a_deposed_leaders_write_ahead_record_is_fenced_so_its_change_is_never_sent(
    tmp_path: Path, store: SqliteStore
) -> None:
    fake = canaries("checkout")
    authority = Authority(certain=lambda: True)  # it still believes it leads
    lost: list[str] = []
    authority.on_lost = lost.append
    engine = await engine_with(tmp_path, store, fake, authority)
    try:
        _, release = await rollback_paused_before_scale(engine, fake)
        newer = await store.take_leadership("replica-b_2")  # another replica took over in the database
        assert newer == authority.term + 1
        release.set()
        await asyncio.sleep(0.3)
        assert [m.method for m in fake.landed()] == ["patch_object"]  # the scale-down was never sent
        [record] = await store.rollbacks()
        assert record.status == "pending"
        assert lost and "fenced" in lost[0]
    finally:
        await engine.stop()

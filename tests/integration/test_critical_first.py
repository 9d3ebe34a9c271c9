"""A storm's backlog does not stand between a critical alert and its rollback: the engine decides an alert that can
roll back at once ahead of the other teams' alerts, notices and duplicates queued before it (bench_storm.py shows
the effect at the maximum rate: seconds of backlog, the critical alert decided first)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fake_cluster import canaries
from support import alert, bare_engine, notification, write_config

from responder.core.webhook import WebhookNotification, to_event
from responder.engine import Saturated
from responder.store import Tx
from responder.store.sqlite import SqliteStore

T = TypeVar("T")


async def test_the_critical_alert_is_decided_first_behind_a_backlog(tmp_path: Path, store: SqliteStore) -> None:
    notices = [alert("CanaryHighMemory", app=f"noisy{i}", action="notify") for i in range(300)]
    critical = alert("CanaryHighErrorRate", app="checkout")
    for body in [*[notification(a) for a in notices], notification(critical)]:
        parsed = WebhookNotification.model_validate(body)
        await store.ingest(b"{}", [to_event(a) for a in parsed.alerts], {}, received_at=1.0)
    engine = bare_engine(write_config(tmp_path), store, canaries("checkout"))
    await engine.start()  # takes up the 301 undecided events, in the order they were stored
    try:
        await engine.drain()
    finally:
        await engine.stop()
    inputs = [i for i in await store.core_inputs(datetime(2000, 1, 1, tzinfo=UTC)) if i.kind == "batch"]
    first = inputs[0].data["events"]
    assert first[0] == 301 and first[1:] == list(range(1, 256))  # the critical one, then the backlog in order
    [record] = await store.rollbacks()
    assert record.status == "done" and record.key == "shop/checkout-canary"
    assert sum(len(i.data["events"]) for i in inputs) == 301


class HeldStore(SqliteStore):
    """Records of decisions wait until ``released`` (a slow disk, a database far away); the inbox still commits,
    so the engine's backlog grows as in a storm it cannot keep up with."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.released = asyncio.Event()

    async def write(self, fn: Callable[[Tx], T], *, urgent: bool = False, term: int | None = None) -> T:
        await self.released.wait()
        return await super().write(fn, urgent=urgent, term=term)


async def test_past_the_backlog_limit_only_an_alert_that_can_roll_back_gets_in(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "held.db")
    await store.open()
    engine = bare_engine(write_config(tmp_path), store, canaries("checkout"), max_backlog=5)
    await engine.start()
    try:

        async def accept(body: dict[str, Any]) -> None:
            events = [to_event(a) for a in WebhookNotification.model_validate(body).alerts]
            await engine.accept(b"{}", events, {}, received_at=1.0)

        notices = iter(notification(alert("CanaryHighMemory", app=f"noisy{i}", action="notify")) for i in range(100))
        with pytest.raises(Saturated):
            for _ in range(100):
                await accept(next(notices))
                await asyncio.sleep(0.01)  # let the decide loop take what it can
        assert engine.backlog == 5
        await accept(notification(alert("CanaryHighErrorRate", app="checkout")))  # admitted past the limit
        with pytest.raises(Saturated):
            await accept(next(notices))  # the rest still waits for Alertmanager's retry
        with pytest.raises(Saturated):
            await accept(notification(alert("CanaryHighErrorRate", app="other")))  # the extra room is a tenth
        store.released.set()
        await engine.drain()
        [record] = await store.rollbacks()
        assert record.status == "done" and record.key == "shop/checkout-canary"
    finally:
        await engine.stop()
        await store.close()

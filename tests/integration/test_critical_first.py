"""A storm's backlog does not stand between a critical alert and its rollback: the engine decides an alert that can
roll back at once ahead of the other teams' alerts, notices and duplicates queued before it (bench_storm.py shows
the effect at the maximum rate: seconds of backlog, the critical alert decided first)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fake_cluster import canaries
from support import alert, bare_engine, notification, write_config

from responder.core.webhook import WebhookNotification, to_event
from responder.store.sqlite import SqliteStore


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

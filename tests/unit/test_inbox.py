"""The engine's queue: an alert that can start a rollback at once is decided before what was queued ahead of it,
except behind what its own fingerprint already has queued; ticks and the bookkeeping of open work are unchanged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from responder.core.model import AlertEvent, AlertStatus
from responder.engine.inbox import Inbox


def event(event_id: int, fingerprint: str, *, urgent: bool = False, status: str = "firing") -> AlertEvent:
    return AlertEvent(
        fingerprint=fingerprint,
        status=AlertStatus(status),
        starts_at=datetime(2026, 11, 30, tzinfo=UTC),
        ends_at=None,
        labels={"action": "rollback" if urgent else "notify"},
        annotations={},
        generator_url="",
        event_id=event_id,
    )


def inbox() -> Inbox:
    def urgent(e: AlertEvent) -> bool:
        return e.status is AlertStatus.FIRING and e.labels["action"] == "rollback"

    return Inbox(store=None, poll_s=1.0, urgent=urgent)  # type: ignore[arg-type]  # never reads the store here


def ids(batch: list[tuple[AlertEvent, Any]]) -> list[int]:
    return [e.event_id for e, _ in batch]


async def test_an_urgent_event_is_taken_before_everything_queued_ahead_of_it() -> None:
    queue = inbox()
    for i in range(1, 301):
        queue.add(event(i, f"other-{i}"), 0.0)
    queue.add(event(301, "critical", urgent=True), 0.0)
    first = await queue.take(0)
    assert ids(first)[:2] == [301, 1] and len(first) == 256
    assert ids(await queue.take(0)) == list(range(256, 301))
    assert queue.backlog == 0 and queue.open == 301  # open until recorded


async def test_an_alerts_own_order_is_kept_behind_what_its_fingerprint_has_queued() -> None:
    queue = inbox()
    queue.add(event(1, "fp", status="resolved"), 0.0)
    queue.add(event(2, "other"), 0.0)
    queue.add(event(3, "fp", urgent=True), 0.0)  # fires again after its resolution: not ahead of it
    queue.add(event(4, "new", urgent=True), 0.0)
    assert ids(await queue.take(0)) == [4, 1, 2, 3]
    queue.add(event(5, "fp", urgent=True), 0.0)  # nothing of fp queued any more: first again
    queue.add(event(6, "fp", status="resolved"), 0.0)
    queue.add(event(7, "x"), 0.0)
    assert ids(await queue.take(0)) == [5, 6, 7]


async def test_ticks_wake_the_loop_and_count_as_taken_and_a_known_event_is_queued_once() -> None:
    queue = inbox()
    queue.poke()
    queue.add(event(1, "a", urgent=True), 0.0)
    queue.add(event(1, "a", urgent=True), 0.0)
    assert queue.backlog == 2
    batch = await queue.take(0)
    assert ids(batch) == [1] and queue.open == 1
    queue.recorded(batch)
    assert queue.open == 0 and await queue.take(0) == []


class SharedStore:
    """The one read the inbox's watch makes, counted (what other replicas stored: one event per notification)."""

    shared = True

    def __init__(self) -> None:
        self.reads: list[int | None] = []

    async def undecided_events(self, *, notification_id: int | None = None) -> list[tuple[AlertEvent, float]]:
        self.reads.append(notification_id)
        return [(event(1000 + (notification_id or 0), "theirs"), 0.0)]

    async def undecided_ids(self) -> list[int]:
        return []


async def test_the_signal_of_a_notification_this_replica_stored_is_not_read_back() -> None:
    store = SharedStore()
    queue = Inbox(store=store, poll_s=60.0)  # type: ignore[arg-type]
    mine = event(1, "mine").with_ids(event_id=1, notification_id=7)
    queue.accepted([mine], 0.0)
    watching = asyncio.create_task(queue.watch())
    try:
        queue.signal(7)  # its own commit, signalled back by the store
        queue.signal(8)  # another replica's
        while not store.reads:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        assert store.reads == [8]
        assert sorted(e.event_id for e, _ in await queue.take(0)) == [1, 1008]
        queue.signal(7)  # signalled again later (a second listener): read this time, and queued once only
        while len(store.reads) < 2:
            await asyncio.sleep(0.001)
        assert store.reads == [8, 7]
    finally:
        watching.cancel()

"""The summary of rejected requests without valid credentials: bounded counts, a log line per reason and
interval, and a flusher that survives a failing write (the audit port swapped for a plain async function)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from responder.http.rejections import RejectionSummary


def test_counts_by_reason_and_route_with_a_few_sample_addresses() -> None:
    summary = RejectionSummary(interval_s=60)
    for i in range(20):
        summary.add(reason="unauthorized", route="/api/v1/alerts", remote=f"10.0.0.{i % 7}", at=1000.0 + i)
    summary.add(reason="unauthorized", route="/api/v1/audit/{seq}", remote="10.0.0.1", at=1100.0)
    taken = summary.take()
    assert taken is not None
    assert taken["count"] == 21 and taken["reasons"] == {"unauthorized": 21}
    assert taken["paths"] == {"/api/v1/alerts": 20, "/api/v1/audit/{seq}": 1}
    assert taken["remotes"] == [f"10.0.0.{i}" for i in range(5)]
    assert (taken["first"], taken["last"]) == ("1970-01-01T00:16:40Z", "1970-01-01T00:18:20Z")
    assert summary.take() is None  # a new interval starts empty


def test_distinct_routes_are_bounded() -> None:
    summary = RejectionSummary(interval_s=60)
    for i in range(500):
        summary.add(reason="unauthorized", route=f"/r/{i}", remote="", at=0.0)
    taken = summary.take()
    assert taken is not None and taken["count"] == 500 and len(taken["paths"]) <= 65
    assert sum(taken["paths"].values()) == 500


def test_only_the_first_of_each_reason_in_an_interval_is_to_be_logged() -> None:
    summary = RejectionSummary(interval_s=60)
    assert summary.add(reason="unauthorized", route="/a", remote="", at=0.0) is True
    assert summary.add(reason="unauthorized", route="/b", remote="", at=1.0) is False
    assert summary.add(reason="other", route="/a", remote="", at=2.0) is True
    summary.take()
    assert summary.add(reason="unauthorized", route="/a", remote="", at=3.0) is True


async def test_the_flusher_writes_each_interval_survives_a_failing_write_and_flushes_on_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    summary = RejectionSummary(interval_s=0.1)
    written: list[dict[str, Any]] = []
    calls = 0

    async def write(data: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is locked")
        written.append(data)

    task = asyncio.create_task(summary.run(write))
    summary.add(reason="unauthorized", route="/a", remote="", at=0.0)
    await asyncio.sleep(0.25)  # the first write fails: logged at ERROR, the flusher goes on
    assert not task.done()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None and "could not audit" in errors[0].getMessage()
    summary.add(reason="unauthorized", route="/a", remote="", at=1.0)
    await asyncio.sleep(0.25)
    assert [s["count"] for s in written] == [1]
    summary.add(reason="unauthorized", route="/b", remote="", at=2.0)
    summary.stop()
    await asyncio.wait_for(task, 1)  # the last one is written on the way out, even mid-interval
    assert [s["paths"] for s in written] == [{"/a": 1}, {"/b": 1}]


async def test_the_flusher_writes_nothing_when_nothing_was_rejected() -> None:
    summary = RejectionSummary(interval_s=0.05)
    written: list[dict[str, Any]] = []

    async def write(data: dict[str, Any]) -> None:
        written.append(data)

    task = asyncio.create_task(summary.run(write))
    await asyncio.sleep(0.2)
    summary.stop()
    await asyncio.wait_for(task, 1)
    assert written == []

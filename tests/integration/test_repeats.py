"""Byte-for-byte repeats of a stored notification (Alertmanager's repeat_interval and retries) over real HTTP: answered
200 once a receipt.repeats entry is committed, never stored or decided twice, and never a way around a decision the
core has not made yet (responder/engine/repeats.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from backends import Backend
from support import Running, alert, bearer, notification, read_only, running_responder, write_config

from responder.testing.emulator import Emulator

AM = {**bearer(), "User-Agent": "Alertmanager/0.27.0", "Content-Type": "application/json"}


async def post(running: Running, body: bytes) -> tuple[int, dict[str, Any]]:
    async with running.session.post(f"{running.url}/api/v1/alerts", data=body, headers=AM) as response:
        return response.status, await response.json()


def entries(running: Running, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in running.captured if e["kind"] == kind]


def sample(running: Running, name: str, labels: dict[str, str] | None = None) -> float:
    return running.services.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def scaled(emulator: Emulator) -> list[str | None]:
    return [m.name for m in emulator.mutations if m.ok and m.subresource == "scale"]


async def test_a_repeat_is_recorded_in_the_audit_and_neither_stored_nor_decided_again(
    tmp_path: Path, cluster: tuple[Emulator, str], backend: Backend
) -> None:
    emulator, url = cluster
    body = orjson.dumps(notification(alert("CanaryHighErrorRate"), alert("CanaryHighLatency")))
    async with running_responder(write_config(tmp_path, kube_url=url, storage=backend.storage())) as running:
        status, first = await post(running, body)
        assert (status, first["events"]) == (200, 2)
        await running.services.engine.drain()

        status, again = await post(running, body)
        assert status == 200
        assert again == {"status": "accepted", "notification_id": first["notification_id"], "events": 0, "repeat": True}
        await running.services.engine.drain()

        assert backend.query("SELECT count(*) FROM notifications") == [(1,)]
        assert backend.query("SELECT count(*) FROM events") == [(2,)]
        assert len(entries(running, "decision")) == 2  # the first notification's alerts only
        [repeats] = entries(running, "receipt.repeats")
        [(sha,)] = backend.query("SELECT sha256 FROM notifications")
        assert repeats["repeats"] == 1 and repeats["decision"] == "duplicate"
        [cited] = repeats["notifications"]
        assert (cited["notification_id"], cited["sha256"], cited["alerts"]) == (first["notification_id"], sha, 2)
        [received] = cited["received"]
        assert received["remote"] == "127.0.0.1" and received["user_agent"] == "Alertmanager/0.27.0"
        assert len(scaled(emulator)) == 1  # one rollback, from the first notification

        assert sample(running, "canary_responder_webhook_repeats_total") == 1
        assert sample(running, "canary_responder_webhooks_total", {"result": "accepted"}) == 2
        assert sample(running, "canary_responder_alert_events_total", {"decision": "duplicate"}) == 2
        store = running.services.store
        report = await store.verify()
        assert report.ok and report.length == len(running.captured)

        with backend.connect() as conn:  # the stored body's hash is no longer the one the repeat was received with
            conn.execute("UPDATE notifications SET sha256=?", ("0" * 64,))
        problems = (await store.verify()).problems
        assert any("repeated notification 1 no longer has the hash it was repeated with" in p for p in problems)


async def test_a_body_that_differs_by_one_byte_takes_the_whole_path(tmp_path: Path) -> None:
    body = orjson.dumps(notification(alert("CanaryHighErrorRate", action="notify")))
    async with running_responder(write_config(tmp_path)) as running:
        assert (await post(running, body))[0] == 200
        await running.services.engine.drain()
        status, answer = await post(running, body + b" ")  # the same JSON, other bytes
        assert (status, answer["events"], "repeat" in answer) == (200, 1, False)
        await running.services.engine.drain()
        assert [d["outcome"] for d in entries(running, "decision")] == ["notify", "duplicate"]
        assert not entries(running, "receipt.repeats")


async def test_after_the_window_a_repeat_takes_the_whole_path_which_refreshes_the_alerts(tmp_path: Path) -> None:
    body = orjson.dumps(notification(alert("CanaryHighErrorRate", action="notify")))
    async with running_responder(write_config(tmp_path, engine={"repeat_window": "300ms"})) as running:
        assert (await post(running, body))[0] == 200
        await running.services.engine.drain()
        assert "repeat" in (await post(running, body))[1]
        await asyncio.sleep(0.4)
        status, answer = await post(running, body)  # seen too long ago: decided again, DUPLICATE, and refreshed
        assert (status, answer["events"], "repeat" in answer) == (200, 1, False)
        await running.services.engine.drain()
        assert "repeat" in (await post(running, body))[1]
        assert [d["outcome"] for d in entries(running, "decision")] == ["notify", "duplicate"]
        assert [e["repeats"] for e in entries(running, "receipt.repeats")] == [1, 1]


async def test_a_window_of_zero_sends_every_repeat_the_whole_way(tmp_path: Path) -> None:
    body = orjson.dumps(notification(alert("CanaryHighErrorRate", action="notify")))
    async with running_responder(write_config(tmp_path, engine={"repeat_window": "0s"})) as running:
        for _ in range(3):
            assert (await post(running, body))[1]["events"] == 1
            await running.services.engine.drain()
        assert [d["outcome"] for d in entries(running, "decision")] == ["notify", "duplicate", "duplicate"]
        assert not entries(running, "receipt.repeats")


async def test_concurrent_repeats_are_each_listed_once_and_commit_together(tmp_path: Path) -> None:
    body = orjson.dumps(notification(alert("CanaryHighErrorRate", action="notify")))
    async with running_responder(write_config(tmp_path)) as running:
        assert (await post(running, body))[0] == 200
        await running.services.engine.drain()
        answers = await asyncio.gather(*(post(running, body) for _ in range(150)))
        assert all(status == 200 and answer.get("repeat") for status, answer in answers)
        listed = [r for e in entries(running, "receipt.repeats") for n in e["notifications"] for r in n["received"]]
        assert len(listed) == 150
        assert all(e["repeats"] <= 100 for e in entries(running, "receipt.repeats"))
        assert (await running.services.store.verify()).ok


async def test_a_database_that_cannot_record_a_repeat_answers_503_and_records_nothing(tmp_path: Path) -> None:
    body = orjson.dumps(notification(alert("CanaryHighErrorRate", action="notify")))
    async with running_responder(write_config(tmp_path)) as running:
        assert (await post(running, body))[0] == 200
        await running.services.engine.drain()
        store = running.services.store
        async with read_only(store):
            status, answer = await post(running, body)
        assert (status, answer["error"]) == (503, "store_unavailable")  # Alertmanager sends it again
        assert not entries(running, "receipt.repeats")
        assert "repeat" in (await post(running, body))[1]  # and then it is recorded
        assert (await store.verify()).ok


async def test_after_a_restart_the_first_repeat_takes_the_whole_path_and_is_still_a_duplicate(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    config = write_config(tmp_path, kube_url=url)
    body = orjson.dumps(notification(alert("CanaryHighErrorRate")))
    async with running_responder(config) as running:
        assert (await post(running, body))[0] == 200
        await running.services.engine.drain()
    async with running_responder(config) as running:  # the same database: the core is rebuilt from it
        status, answer = await post(running, body)
        assert (status, answer["events"], "repeat" in answer) == (200, 1, False)
        await running.services.engine.drain()
        assert [d["outcome"] for d in entries(running, "decision")] == ["duplicate"]
        assert "repeat" in (await post(running, body))[1]
    assert len(scaled(emulator)) == 1

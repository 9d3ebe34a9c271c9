"""The real Alertmanager re-sends an unchanged group byte for byte, so the responder records those re-sends as
repeats (one ``receipt.repeats`` audit entry per commit), not as new notifications to store and decide again
(responder/engine/repeats.py). The alert is pushed to Alertmanager's API with fixed labels and annotations (the
shipped rules put ``{{ $value }}`` in their descriptions, and a changed value makes a different body), and the
shipped route is used with a 1 s ``repeat_interval``."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from support import WEBHOOK_TOKEN, Running, running_responder, write_config

from .harness import Binaries, ChainTiming, alertmanager_process, free_port, wait_ready


def entries(running: Running, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in running.captured if e["kind"] == kind]


def repeated(running: Running) -> int:
    return sum(e["repeats"] for e in entries(running, "receipt.repeats"))


async def test_alertmanager_resends_of_an_unchanged_group_are_audited_as_repeats(
    e2e_binaries: Binaries, tmp_path: Path
) -> None:
    async with running_responder(write_config(tmp_path), port=free_port()) as running:
        token = tmp_path / "alertmanager-token"
        token.write_text(WEBHOOK_TOKEN)
        port = free_port()
        alertmanager = alertmanager_process(
            e2e_binaries,
            tmp_path,
            port=port,
            webhook_url=f"{running.url}/api/v1/alerts",
            token_file=token,
            timing=ChainTiming(
                alertmanager_group_wait="0s", alertmanager_group_interval="1s", alertmanager_repeat_interval="1s"
            ),  # the shipped route re-sends after 1h
        )
        await alertmanager.start()
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(running.session, f"{url}/-/ready", alertmanager, timeout=30)
            now = datetime.now(UTC)
            alert = {
                "labels": {"alertname": "CanaryLowTraffic", "namespace": "shop", "app": "checkout", "action": "notify"},
                "annotations": {"summary": "the canary gets too little traffic to judge"},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=10)).isoformat(),
                "generatorURL": "http://prometheus:9090/graph",
            }
            async with running.session.post(f"{url}/api/v2/alerts", json=[alert]) as answer:
                assert answer.status == 200, await answer.text()
            deadline = time.monotonic() + 30
            while repeated(running) < 3:
                assert time.monotonic() < deadline, f"no repeats within 30 s:\n{alertmanager.log_tail()}"
                await asyncio.sleep(0.1)
        finally:
            await alertmanager.stop()
        [receipt] = entries(running, "receipt")  # stored once; every re-send was a repeat of it
        assert receipt["user_agent"].startswith("Alertmanager/")
        assert [d["outcome"] for d in entries(running, "decision")] == ["notify"]
        for entry in entries(running, "receipt.repeats"):
            [cited] = entry["notifications"]
            assert (cited["notification_id"], cited["sha256"]) == (receipt["notification_id"], receipt["sha256"])
            assert all(r["user_agent"].startswith("Alertmanager/") for r in cited["received"])
        assert (await running.services.store.verify()).ok

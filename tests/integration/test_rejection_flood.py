"""Unauthenticated floods do not grow the disk: requests without valid credentials are counted one by one but
audited as one ``rejected.summary`` entry per interval (and on shutdown), and logged once per interval and reason;
rejected requests from known credentials keep one audit entry each."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
from support import READ_TOKEN, WEBHOOK_TOKEN, alert, bearer, notification, read_db, running_responder, write_config

from responder.testing.emulator import Emulator

FLOOD = 200


def audit_rows(db: Path, kind: str) -> list[dict[str, object]]:
    return [orjson.loads(data) for (data,) in read_db(db, "SELECT data FROM audit WHERE kind = ? ORDER BY seq", kind)]


async def test_an_unauthenticated_flood_is_one_summary_not_one_row_per_request(
    tmp_path: Path, cluster: tuple[Emulator, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="responder")
    config = write_config(tmp_path, kube_url=cluster[1])
    async with running_responder(config) as running:
        before = running.services.store.chain_length
        for i in range(FLOOD):
            headers = {} if i % 2 else bearer(f"guess-{i}")
            path = "/api/v1/alerts" if i % 4 else "/api/v1/pause"
            async with running.session.post(f"{running.url}{path}", json=notification(alert()), headers=headers) as r:
                assert r.status == 401
        registry = running.services.metrics.registry
        counted = registry.get_sample_value("canary_responder_rejected_requests_total", {"reason": "unauthorized"})
        assert counted == FLOOD
        assert running.services.store.chain_length - before <= 1  # not one entry per request
    db = tmp_path / "responder.db"
    assert audit_rows(db, "rejected") == []
    summaries = audit_rows(db, "rejected.summary")
    assert 1 <= len(summaries) <= 2  # one per interval, the last one written on shutdown
    assert sum(s["count"] for s in summaries) == FLOOD  # type: ignore[misc]
    reasons: dict[str, int] = {}
    paths: dict[str, int] = {}
    for summary in summaries:
        for key, value in summary["reasons"].items():  # type: ignore[attr-defined]
            reasons[key] = reasons.get(key, 0) + value
        for key, value in summary["paths"].items():  # type: ignore[attr-defined]
            paths[key] = paths.get(key, 0) + value
        assert summary["remotes"] == ["127.0.0.1"] and summary["first"] <= summary["last"]  # type: ignore[operator]
    assert reasons == {"unauthorized": FLOOD}
    assert paths == {"/api/v1/alerts": FLOOD * 3 // 4, "/api/v1/pause": FLOOD // 4}
    lines = [r.getMessage() for r in caplog.records if r.name == "responder.http" and "rejected" in r.getMessage()]
    per_request = [line for line in lines if line.startswith("rejected POST")]
    assert len(per_request) == 1, lines  # the first one of the interval, then the summary
    assert any(f"{FLOOD} requests without valid credentials" in line for line in lines), lines


async def test_rejections_of_known_credentials_keep_one_audit_entry_each(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        for _ in range(3):
            async with running.session.post(
                f"{running.url}/api/v1/alerts", data=b"{}", headers={**bearer(WEBHOOK_TOKEN), "Content-Type": "text/x"}
            ) as response:
                assert response.status == 415
            async with running.session.post(f"{running.url}/api/v1/pause", headers=bearer(READ_TOKEN)) as response:
                assert response.status == 403
        entries = await running.services.store.audit_entries(kind="rejected")
        assert [e.data["reason"] for e in entries] == ["unsupported_media_type", "forbidden"] * 3
    assert audit_rows(tmp_path / "responder.db", "rejected.summary") == []

"""The store thread's own cost per notification, without HTTP, the event loop or the decision: CPU time of the
writer's transactions (SqlTx.ingest: the notification row, its event rows, the receipt and alert audit entries,
group-committed), measured with ``time.thread_time`` around each batch so that other processes on the shared cores
count for little. Prints figures; not a pass/fail test.

This is the part of the ingest path that the webhook's 200 waits for, and that a rollback intent's transaction
waits behind during a storm (RELIABILITY.md, "Storms and bounded memory").

Run: .venv/bin/python bench/bench_store.py [--batches 300] [--batch 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from responder.core.model import AlertEvent
from responder.core.webhook import WebhookNotification, to_event
from responder.store.sql.tx import SqlTx
from responder.store.sqlite import SqliteStore


def notification(i: int) -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": "CanaryHighErrorRate", "namespace": "shop", "app": f"app{i}", "severity": "page"},
        "annotations": {"summary": "error rate above 5% for 1m " + "x" * 100},
        "startsAt": "2026-11-29T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": f"{i:016x}",
    }
    document = {
        "version": "4",
        "groupKey": f'{{}}:{{app="app{i}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "canary-responder",
        "groupLabels": {"app": f"app{i}"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }
    return orjson.dumps(document)


def ingest(raw: bytes, events: list[AlertEvent]) -> Any:
    meta = {"group_key": "g", "receiver": "canary-responder", "status": "firing"}

    def write(tx: SqlTx) -> list[AlertEvent]:
        return tx.ingest(raw, events, meta, received_at=time.time(), truncated=0, source="alertmanager")

    return write


def one_round(batches: int, size: int) -> list[float]:
    """CPU seconds per notification of each group-committed batch (the store's thread is this thread here)."""
    store = SqliteStore(Path(tempfile.mkdtemp(prefix="bench-store-")) / "responder.db", audit_key=b"k" * 32)
    writer = store._writer
    writer.connection()
    parsed = []
    for i in range(batches * size):
        raw = notification(i)
        alerts = WebhookNotification.model_validate(orjson.loads(raw)).alerts
        parsed.append((raw, [to_event(a) for a in alerts]))
    per_notification = []
    for b in range(batches):
        batch = [(ingest(raw, events), None, None) for raw, events in parsed[b * size : (b + 1) * size]]
        started = time.thread_time()
        writer._transaction(batch, isolate=False)  # type: ignore[arg-type]  # futures unused by a transaction
        per_notification.append((time.thread_time() - started) / size)
    writer._disconnect()
    return per_notification


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32, help="notifications per group commit")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"canary-responder store benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)")
    print(f"   command: {' '.join([sys.executable, *sys.argv])}")
    print(
        f"   SQLite (WAL, synchronous=FULL), HMAC-keyed audit chain; {args.batches} group commits of {args.batch}"
        " one-alert notifications per round; CPU time of the writer's transactions only"
    )
    medians = []
    for n in range(1, args.rounds + 1):
        values = sorted(one_round(args.batches, args.batch))
        medians.append(statistics.median(values))
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"   round {n}: store CPU per notification  p50 {1e6 * medians[-1]:6.1f} us   p90 {1e6 * p90:6.1f} us")
    print(f"   median over rounds: {1e6 * statistics.median(medians):.1f} us per notification")


if __name__ == "__main__":
    main()

"""Storm benchmark: the responder under an alert storm, and the bound on its dedupe memory. Prints figures.

Part 1 (the real server process, ``python -m responder serve``): for 30 s, a separate load-generator process
(bench/storm_load.py) posts >= 1,000 notifications/s like three Alertmanager HA peers would (every group once
per peer): other teams' alerts, notify-only alerts, alerts for unconfigured targets, resolutions and repeat
notifications, while critical canary alerts arrive for 50 configured targets (the Kubernetes API emulator,
in this process, holds 50 apps). Every 503 is retried by the load generator until accepted. Reported:

- critical webhook (first peer's first attempt) -> canary traffic off (the emulator's Ingress PATCH answer), and
  -> scaled to zero: p50 / p99 / max;
- accepted (200s) vs stored vs decided vs audited, read from the database at the end: they must match;
- the server's RSS, sampled from /proc every second;
- 503s returned (each retried) and the rate actually achieved.

Part 2 (in-process, the pure ``DecisionCore``): 1,000,000 distinct alert fingerprints over simulated time with
a short dedupe_ttl and a dedupe_max bound; the dedupe state size, traced Python memory and RSS every 100k.

Run: .venv/bin/python bench/bench_storm.py            (both parts; --part storm | dedupe for one)
     add --backend postgres for the storm on the shared PostgreSQL store (a throwaway server, fsync on)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from common import free_port, percentile, rss_mb, start_postgres, wait_healthy, write_config

from responder.testing.emulator import run_emulator, sample_canary_objects

HERE = Path(__file__).resolve().parent
TOKEN = "storm-token-0123456789"


@dataclasses.dataclass
class Database:
    """The server's database, read from outside: the SQLite file, or the PostgreSQL database ``dsn``."""

    path: Path
    dsn: str | None = None

    @property
    def json(self) -> Any:
        from responder.store.postgres import PostgresDialect
        from responder.store.sqlite import SqliteDialect

        return (SqliteDialect if self.dsn is None else PostgresDialect).json

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.dsn is None:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as conn:
                return [tuple(r) for r in conn.execute(sql)]
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(sql)]  # type: ignore[call-overload]


def critical_marks(db: Database) -> dict[str, tuple[float, float]]:
    """Per app: when its rollback intent and its traffic step's write-ahead record were appended to the audit chain
    (the entries' ``ts``, taken in the writer's transaction just before its commit), as Unix times."""
    marks: dict[str, dict[str, float]] = {}
    rows = db.rows(
        f"SELECT kind, target, ts, {db.json.field_of('data', 'step')} FROM audit"
        " WHERE kind IN ('rollback.intent', 'action.intent') ORDER BY seq"
    )
    for kind, target, ts, step in rows:
        app = str(target).split("/")[-1].removesuffix("-canary")
        traffic_step = str(step).startswith("traffic_off")
        name = "intent" if kind == "rollback.intent" else "write_ahead" if traffic_step else ""
        if name:
            at = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
            marks.setdefault(app, {}).setdefault(name, at)
    return {app: (m["intent"], m["write_ahead"]) for app, m in marks.items() if len(m) == 2}


def db_counts(db: Database) -> dict[str, Any]:
    json = db.json
    event_id, outcome = json.field_of("data", "event_id"), json.field_of("data", "outcome")
    alerts = json.elements_of(json.field_of("audit.data", "events"), "e")
    one = lambda sql: db.rows(sql)[0][0]  # noqa: E731
    return {
        "notifications": one("SELECT COUNT(*) FROM notifications"),
        "notification_ids": {r[0] for r in db.rows("SELECT id FROM notifications")},
        "events": one("SELECT COUNT(*) FROM events"),
        "decided": one("SELECT COUNT(*) FROM events WHERE decided_at IS NOT NULL"),
        "undecided": one("SELECT COUNT(*) FROM events WHERE decided_at IS NULL"),
        "receipt_events": one(
            f"SELECT COUNT(DISTINCT {json.field_of('e.value', 'event_id')})"
            f" FROM audit, {alerts} WHERE audit.kind IN ('receipt', 'receipt.events')"
        ),
        "decided_events_audited": one(
            f"SELECT COUNT(DISTINCT {event_id}) FROM audit WHERE kind='decision' AND CAST({event_id} AS BIGINT) > 0"
        ),
        "decision_entries_with_event": one(
            f"SELECT COUNT(*) FROM audit WHERE kind='decision' AND CAST({event_id} AS BIGINT) > 0"
        ),
        "audit_by_kind": dict(db.rows("SELECT kind, COUNT(*) FROM audit GROUP BY kind")),
        "outcomes": dict(db.rows(f"SELECT {outcome}, COUNT(*) FROM audit WHERE kind='decision' GROUP BY 1")),
        "rollbacks": dict(db.rows("SELECT status, COUNT(*) FROM rollbacks GROUP BY status")),
        "rollback_targets": one("SELECT COUNT(DISTINCT target) FROM rollbacks"),
    }


async def storm(args: argparse.Namespace, dsn: str | None) -> None:
    apps = [f"app{i:02d}" for i in range(args.apps)]
    objects = [obj for app in apps for obj in sample_canary_objects("shop", app)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    db = Database(workdir / "responder.db", dsn)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    result_file = workdir / "load.json"
    load_cmd = [
        sys.executable,
        str(HERE / "storm_load.py"),
        "--url",
        url,
        "--token",
        TOKEN,
        "--out",
        str(result_file),
        "--seconds",
        str(args.seconds),
        "--rate",
        str(args.rate),
        "--connections",
        str(args.connections),
        "--apps",
        str(args.apps),
    ]
    rss: list[tuple[float, float]] = []
    async with run_emulator(objects) as (emulator, kube_url), aiohttp.ClientSession() as session:
        config = write_config(workdir, kube_url, port, token=TOKEN, rollback_cap=1000, dsn=db.dsn)
        server_cmd = [sys.executable, "-m", "responder", "serve", "-c", str(config)]
        with (workdir / "server.log").open("wb") as log:
            # Audit JSON lines go to stdout in production (for the log store); here to /dev/null.
            server = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=log)
            try:
                await wait_healthy(session, url, server)
                await asyncio.sleep(0.5)
                rss_idle = rss_mb(server.pid)
                load_before = os.getloadavg()[0]
                load = subprocess.Popen(load_cmd)
                started = time.monotonic()
                while load.poll() is None:
                    rss.append((time.monotonic() - started, rss_mb(server.pid)))
                    await asyncio.sleep(1.0)
                load_after = os.getloadavg()[0]
                if load.returncode != 0:
                    raise RuntimeError(f"the load generator failed ({load.returncode})")
                drain_started = time.monotonic()
                while True:  # until every accepted event is decided and every rollback finished
                    counts = db_counts(db)
                    if counts["undecided"] == 0 and not counts["rollbacks"].get("pending"):
                        break
                    if time.monotonic() - drain_started > 120:
                        break
                    rss.append((time.monotonic() - started, rss_mb(server.pid)))
                    await asyncio.sleep(0.5)
                drained_after = time.monotonic() - drain_started
                async with session.get(f"{url}/metrics") as response:
                    metrics_text = await response.text()
                rss_end = rss_mb(server.pid)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=20)
        mutations = list(emulator.mutations)

    load_result = json.loads(result_file.read_text())
    counts = db_counts(db)
    first = load_result["critical_first_attempt"]
    traffic = {m.name.removesuffix("-canary"): m.at for m in mutations if m.ok and m.kind == "Ingress"}
    scaled = {m.name.removesuffix("-canary"): m.at for m in mutations if m.ok and m.subresource == "scale"}
    scale_patches = [m for m in mutations if m.ok and m.subresource == "scale"]
    traffic_ms = [(traffic[a] - t) * 1000 for a, t in first.items() if a in traffic]
    scaled_ms = [(scaled[a] - t) * 1000 for a, t in first.items() if a in scaled]

    elapsed = load_result["elapsed_s"]
    per_second = load_result["per_second"]
    accepted_ids = set(load_result["accepted_ids"])
    print(f"canary-responder storm benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)")
    print(
        f"   machine load average (1 min) before the run {load_before:.2f}, after {load_after:.2f}"
        " (the machine is shared: other work competes for the 2 cores)"
    )
    print(f"   command: {' '.join([sys.executable, *sys.argv])}")
    print(f"   server:  {' '.join(server_cmd)}   (stdout -> /dev/null, log_level WARNING)")
    print(f"   store:   {'PostgreSQL (a throwaway server, fsync on)' if db.dsn else 'SQLite'}")
    print(
        f"   load:    bench/storm_load.py --rate {args.rate} --connections {args.connections} "
        f"--seconds {args.seconds} (separate process, 3 HA peers, every 503 retried)"
    )
    print("\n1. load achieved")
    print(
        f"   {load_result['accepted']} notifications accepted in {elapsed:.1f} s = "
        f"{load_result['accepted'] / elapsed:.0f}/s (target {args.rate:.0f}/s);"
        f" {load_result['accepted_events']} alert events"
    )
    steady = per_second[1:-1] or per_second
    print(
        f"   accepted per second: median {statistics.median(steady):.0f}, min {min(steady)}, max {max(steady)}"
        f"   HTTP answer p50 {load_result['http_p50_ms']:.1f} ms, p99 {load_result['http_p99_ms']:.1f} ms"
    )
    print(f"   groups by kind (each posted by 3 peers): {load_result['groups_by_kind']}")
    print(
        f"   503s returned: {load_result['unavailable_503']} (all retried; {load_result['retried_then_accepted']}"
        f" requests accepted after a retry); transport errors: {load_result['transport_errors']};"
        f" other statuses: {load_result['other_statuses'] or 'none'}"
    )

    print(f"\n2. critical webhook -> step done, {len(first)} targets during the storm (target p99 <= 100 ms)")
    for label, values in (("traffic off (Ingress patched)", traffic_ms), ("scaled to zero (/scale)", scaled_ms)):
        if values:
            print(
                f"   {label:<31} p50 {statistics.median(values):7.1f} ms   p99 {percentile(values, 0.99):7.1f} ms"
                f"   max {max(values):7.1f} ms   (n={len(values)})"
            )
    accepted_at = load_result["critical_accepted_at"]
    split = [
        ((accepted_at[a] - t) * 1000, (traffic[a] - accepted_at[a]) * 1000)
        for a, t in first.items()
        if a in traffic and a in accepted_at
    ]
    if split:
        ack, rest = [s[0] for s in split], [s[1] for s in split]
        for label, values in (("of which webhook -> 200 (durable)", ack), ("and 200 -> traffic off", rest)):
            print(
                f"     {label:<33} p50 {statistics.median(values):7.1f} ms"
                f"   p99 {percentile(values, 0.99):7.1f} ms   max {max(values):7.1f} ms"
            )
    marks = critical_marks(db)
    stages = [
        (
            (marks[a][0] - accepted_at[a]) * 1000,
            (marks[a][1] - marks[a][0]) * 1000,
            (traffic[a] - marks[a][1]) * 1000,
        )
        for a in first
        if a in traffic and a in accepted_at and a in marks
    ]
    if stages:
        print("     200 -> traffic off, by stage (from the audit entries' times):")
        labels = (
            "200 -> intent's tx runs",  # the decide loop, then the wait for the store's thread
            "-> write-ahead's tx runs",  # the intent's commit, the lane's check, the wait for the store again
            "-> Ingress patched",  # the write-ahead's commit, the PATCH
        )
        for i, label in enumerate(labels):
            values = [stage[i] for stage in stages]
            print(
                f"       {label:<31} p50 {statistics.median(values):7.1f} ms"
                f"   p99 {percentile(values, 0.99):7.1f} ms   max {max(values):7.1f} ms"
            )
    print(
        f"   rollbacks: {counts['rollbacks']} over {counts['rollback_targets']} targets;"
        f" successful /scale patches: {len(scale_patches)}"
    )

    print("\n3. nothing lost (database read after the run)")
    missing = accepted_ids - counts["notification_ids"]
    kinds = counts["audit_by_kind"]
    rows = [
        ("notifications accepted (200, load generator)", load_result["accepted"]),
        ("notifications stored (notifications table)", counts["notifications"]),
        ("receipts audited (audit kind=receipt)", kinds.get("receipt", 0)),
        ("alert events accepted (sum of 200 bodies)", load_result["accepted_events"]),
        ("alert events stored (events table)", counts["events"]),
        ("alert events audited (in the receipts)", counts["receipt_events"]),
        ("events decided (events.decided_at set)", counts["decided"]),
        ("events with a decision entry (audit kind=decision)", counts["decided_events_audited"]),
        ("decision entries citing an event", counts["decision_entries_with_event"]),
    ]
    for label, value in rows:
        print(f"   {label:<52} {value:>9}")
    equal = (
        load_result["accepted"] == counts["notifications"] == kinds.get("receipt", 0)
        and load_result["accepted_events"]
        == counts["events"]
        == counts["receipt_events"]
        == counts["decided"]
        == counts["decided_events_audited"]
        == counts["decision_entries_with_event"]
    )
    print(
        f"   accepted ids missing from the database: {len(missing)};  counts equal: {'YES' if equal else 'NO'}"
        f"  (drained {drained_after:.1f} s after the load stopped)"
    )
    print(f"   decisions by outcome: {counts['outcomes']}")
    print(f"   audit entries by kind: {kinds}")

    print("\n4. server RSS over time (sampled every second; target <= 150 MB)")
    print(f"   idle before the storm: {rss_idle:.1f} MB   after drain: {rss_end:.1f} MB")
    line = "   " + "  ".join(f"{t:4.0f}s {m:5.1f}" for t, m in rss[:: max(1, len(rss) // 12)])
    print(line)
    print(f"   max {max(m for _, m in rss):.1f} MB over {len(rss)} samples")
    backlog = [ln for ln in metrics_text.splitlines() if ln.startswith("canary_responder_webhooks_total")]
    print(f"   server metrics: {'; '.join(backlog)}")
    print(f"   workdir: {workdir}")


def dedupe_memory(args: argparse.Namespace) -> None:
    from responder.config import parse_settings
    from responder.core.decide import DecisionCore
    from responder.core.model import AlertEvent, AlertStatus

    total, step = args.events, args.events // 10
    document = {
        "auth": {"webhook": {"bearer_tokens": [{"env": "T"}]}, "admin_token": {"env": "A"}},
        "safety": {"allowed_namespaces": ["shop"]},
        "targets": [{"name": "shop"}],
    }
    settings = dataclasses.replace(
        parse_settings(document).core(), dedupe_ttl=timedelta(seconds=args.ttl), dedupe_max=args.dedupe_max
    )
    core = DecisionCore(settings)
    start = datetime(2026, 11, 27, tzinfo=UTC)
    tick = timedelta(seconds=1 / args.per_second)
    print(
        f"\n5. dedupe memory: {total:,} distinct fingerprints into DecisionCore, {args.per_second}/s of simulated"
        f" time, dedupe_ttl {args.ttl:.0f} s, dedupe_max {args.dedupe_max:,}; every 5th event a resolution"
    )
    print(f"   command: {' '.join([sys.executable, *sys.argv])}")
    print(f"   {'events':>9} {'sim. time':>9} {'seen':>8} {'resolved':>8} {'traced MB':>9} {'RSS MB':>7}")
    tracemalloc.start()
    labels = {"alertname": "Storm", "namespace": "shop", "app": "checkout", "action": "notify"}
    began = time.perf_counter()
    curve = []
    for i in range(1, total + 1):
        now = start + tick * i
        resolved = i % 5 == 0
        event = AlertEvent(
            fingerprint=f"{i:016x}",
            status=AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
            starts_at=now,
            ends_at=now if resolved else None,
            labels=labels,
            event_id=i,
        )
        core.on_event(event, now)
        if i % step == 0:
            gc.collect()
            current, _ = tracemalloc.get_traced_memory()
            sizes = core.sizes()
            curve.append(current)
            print(
                f"   {i:>9,} {(now - start).total_seconds():>8.0f}s {sizes['seen']:>8,} {sizes['resolved']:>8,}"
                f" {current / 2**20:>9.1f} {rss_mb(os.getpid()):>7.1f}"
            )
    elapsed = time.perf_counter() - began
    tracemalloc.stop()
    later = curve[len(curve) // 2 :]
    print(
        f"   traced memory over the second half: min {min(later) / 2**20:.1f} MB, max {max(later) / 2**20:.1f} MB"
        f" (flat: bounded by ttl x rate = {args.ttl * args.per_second:,.0f} identities, cap {args.dedupe_max:,});"
        f" {total / elapsed:,.0f} events/s with tracemalloc on"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "storm", "dedupe"], default="all")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1200.0, help="target notifications per second")
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--events", type=int, default=1_000_000, help="dedupe part: distinct fingerprints")
    parser.add_argument("--per-second", type=int, default=1000, help="dedupe part: simulated events per second")
    parser.add_argument("--ttl", type=float, default=60.0, help="dedupe part: dedupe_ttl in seconds")
    parser.add_argument("--dedupe-max", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite", help="storm part: the store")
    args = parser.parse_args()
    if args.part in ("all", "storm"):
        server = start_postgres() if args.backend == "postgres" else None
        try:
            asyncio.run(storm(args, server.dsn(server.create_database()) if server else None))
        finally:
            if server is not None:
                server.destroy()
    if args.part in ("all", "dedupe"):
        dedupe_memory(args)


if __name__ == "__main__":
    main()

"""The SQLite schema and its versioned migrations (``PRAGMA user_version``), applied in one transaction at start.

1: columns added after the first release (CREATE TABLE IF NOT EXISTS does not add them);
2: the decision core's input log (``core_log``), back-filled from the decided events and the pause history;
3: plug-ins: outbox rows per destination and threads per (incident, destination); the GitOps webhook table in the
   schema; rollbacks keep their target (with its traffic objects) as data, and their traffic steps under
   ``traffic_off:kind/name`` instead of one column and one step name per kind;
4: the leadership term and the replica registry, for the SQL the backends share (one replica never competes);
5: no index on ``events.decided_at``: nothing reads events by decision time, and keeping it cost every decision
   an index write (the partial ``events_undecided`` index is what start-up reads).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from responder.core.model import iso, parse_iso
from responder.store.chain import canonical

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY, received_at REAL NOT NULL, source TEXT NOT NULL, raw BLOB NOT NULL,
    sha256 TEXT NOT NULL, truncated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, notification_id INTEGER NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
    starts_at TEXT NOT NULL, ends_at TEXT, labels TEXT NOT NULL, annotations TEXT NOT NULL,
    generator_url TEXT NOT NULL, received_at REAL NOT NULL, decided_at TEXT, forced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_undecided ON events (id) WHERE decided_at IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL, target TEXT, actor TEXT NOT NULL,
    data TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, seq);
CREATE TABLE IF NOT EXISTS rollbacks (
    incident TEXT PRIMARY KEY, target TEXT NOT NULL, namespace TEXT NOT NULL, deployment TEXT NOT NULL,
    ingress TEXT, created_at TEXT NOT NULL, received_at REAL NOT NULL, status TEXT NOT NULL,
    dry_run INTEGER NOT NULL, steps TEXT NOT NULL DEFAULT '{}', cites TEXT NOT NULL DEFAULT '[]',
    spec TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, incident TEXT NOT NULL, kind TEXT NOT NULL, role TEXT NOT NULL, target TEXT,
    data TEXT NOT NULL, created_at REAL NOT NULL, state TEXT NOT NULL, next_attempt_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, claimed_at REAL, delivered_at REAL, last_error TEXT,
    destination TEXT NOT NULL DEFAULT 'slack'
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_incident ON outbox (incident, id);
CREATE TABLE IF NOT EXISTS outbox_alerts (fingerprint TEXT PRIMARY KEY, incident TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS incident_notes (
    incident TEXT PRIMARY KEY, channel TEXT, ts TEXT, metrics TEXT
);
CREATE TABLE IF NOT EXISTS threads (
    incident TEXT NOT NULL, destination TEXT NOT NULL, channel TEXT, ref TEXT, metrics TEXT,
    PRIMARY KEY (incident, destination)
);
CREATE TABLE IF NOT EXISTS core_log (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
    recorded INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS core_log_at ON core_log (at);
CREATE TABLE IF NOT EXISTS gitops_webhooks (
    id INTEGER PRIMARY KEY, incident TEXT NOT NULL UNIQUE, msg_id TEXT NOT NULL, body BLOB NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL, delivered_at REAL, last_error TEXT
);
CREATE INDEX IF NOT EXISTS gitops_webhooks_due ON gitops_webhooks (next_attempt_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS leadership (
    id INTEGER PRIMARY KEY CHECK (id = 1), term INTEGER NOT NULL, holder TEXT, since REAL
);
CREATE TABLE IF NOT EXISTS replicas (
    instance TEXT PRIMARY KEY, identity TEXT NOT NULL, url TEXT, started_at REAL NOT NULL, seen_at REAL NOT NULL,
    leader_term INTEGER
);
"""
SCHEMA_VERSION = 5


def create(conn: sqlite3.Connection) -> None:
    """Create what is missing, then migrate an older database up to SCHEMA_VERSION."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version < 3:  # columns the new CREATE statements name, before the script uses them in an index
        _add_column(conn, "outbox", "destination", "TEXT NOT NULL DEFAULT 'slack'")
    conn.executescript(SCHEMA)
    migrate(conn, version)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    if version >= SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if version < 1:
            _add_column(conn, "events", "forced", "INTEGER NOT NULL DEFAULT 0")
            _add_column(conn, "rollbacks", "spec", "TEXT NOT NULL DEFAULT '{}'")
        if version < 2:
            _backfill_core_log(conn)
        if version < 3:
            _threads_per_destination(conn)
            _rollbacks_as_data(conn)
        if version < 4:
            conn.execute("INSERT INTO leadership (id, term) VALUES (1, 0) ON CONFLICT DO NOTHING")
        if version < 5:
            conn.execute("DROP INDEX IF EXISTS events_decided_at")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _add_column(conn: sqlite3.Connection, table: str, column: str, definition: str) -> None:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if exists and column not in columns:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _backfill_core_log(conn: sqlite3.Connection) -> None:
    """Older versions rebuilt their state from the events' decided_at and the pause/resume audit entries: write
    those, in the same order, as core inputs (one batch per decided_at, a pause input per flip)."""
    if conn.execute("SELECT 1 FROM core_log LIMIT 1").fetchone():
        return
    inputs: list[tuple[str, int, str, dict[str, Any]]] = []
    batches: dict[str, list[int]] = {}
    for event_id, decided_at in conn.execute(
        "SELECT id, decided_at FROM events WHERE decided_at IS NOT NULL ORDER BY decided_at, id"
    ):
        batches.setdefault(str(decided_at), []).append(int(event_id))
    inputs += [(at, 1, "batch", {"events": ids}) for at, ids in batches.items()]
    for (data,) in conn.execute("SELECT data FROM audit WHERE kind IN ('pause', 'resume') ORDER BY seq"):
        try:
            state = orjson.loads(data)
            why = f"by {state['actor']}: {state['reason']}" if state.get("paused") else None
            inputs.append((iso(parse_iso(str(state["at"]))), 0, "pause", {"why": why}))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a damaged entry (audit verify reports it); the pause state itself comes from kv at start
    inputs.sort(key=lambda item: (item[0], item[1]))  # a pause at the same instant applied before the batch
    conn.executemany(
        "INSERT INTO core_log (at, kind, data) VALUES (?,?,?)",
        [(at, kind, canonical(data).decode()) for at, _, kind, data in inputs],
    )


def _threads_per_destination(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO threads (incident, destination, channel, ref, metrics)"
        " SELECT incident, 'slack', channel, ts, metrics FROM incident_notes"
    )


def _rollbacks_as_data(conn: sqlite3.Connection) -> None:
    """One Ingress column and HTTPRoute spec fields become the target's traffic references; the steps named after
    them become ``traffic_off:kind/name`` (with the check's routing facts under ``traffic``)."""
    rows = conn.execute("SELECT incident, namespace, deployment, ingress, steps, spec FROM rollbacks").fetchall()
    for incident, namespace, deployment, ingress, steps_json, spec_json in rows:
        spec = orjson.loads(spec_json or "{}")
        if "target" in spec:
            continue
        old = {"namespace": namespace, "deployment": deployment, "ingress": ingress, **spec}
        spec["target"] = _target_of(old)
        steps = _renamed_steps(orjson.loads(steps_json or "{}"), ingress, spec.get("httproute"))
        conn.execute(
            "UPDATE rollbacks SET steps=?, spec=? WHERE incident=?",
            (canonical(steps).decode(), canonical(spec).decode(), incident),
        )


def _target_of(old: dict[str, Any]) -> dict[str, Any]:
    traffic = []
    if old.get("ingress"):
        traffic.append({"kind": "nginx", "name": old["ingress"]})
    if old.get("httproute"):
        route = {"kind": "httproute", "name": old["httproute"]}
        if old.get("canary_backend"):
            route["options"] = {"canary_backend": old["canary_backend"]}
        traffic.append(route)
    found = {"namespace": old["namespace"], "deployment": old["deployment"], "traffic": traffic}
    return {**found, "cluster": old["cluster"]} if old.get("cluster") else found


def _renamed_steps(steps: dict[str, Any], ingress: str | None, route: str | None) -> dict[str, Any]:
    renamed: dict[str, Any] = {}
    for name, record in steps.items():
        if name == "traffic_off" and ingress:
            name = f"traffic_off:nginx/{ingress}"
        elif name == "route_off" and route:
            name = f"traffic_off:httproute/{route}"
        renamed[name] = {**record, "step": name} if isinstance(record, dict) else record
    check = renamed.get("check")
    before = check.get("before") if isinstance(check, dict) else None
    if isinstance(before, dict):
        traffic = {}
        if ingress and "ingress_annotations" in before:
            traffic[f"nginx/{ingress}"] = {"annotations": before.pop("ingress_annotations")}
        if route and "httproute_weights" in before:
            traffic[f"httproute/{route}"] = {"weights": before.pop("httproute_weights")}
        if traffic:
            before["traffic"] = traffic
    return renamed

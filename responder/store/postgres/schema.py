"""The PostgreSQL schema and its versioned migrations, applied at start in one transaction.

Several replicas may start at once: each takes a transaction-level advisory lock before it looks at the schema,
so one migrates while the others wait, then find nothing left to do (``CREATE TABLE IF NOT EXISTS`` alone races
on the catalog). Version 1 is the SQLite schema of version 4 in PostgreSQL's types: BIGSERIAL/BIGINT ids, BYTEA for
raw bodies, DOUBLE PRECISION for times, TEXT for canonical JSON (the audit hashes are over that exact text), and a
``rowid`` column where the shared SQL orders by SQLite's implicit one.
"""

from __future__ import annotations

from responder.store.postgres.connect import PgConn

MIGRATION_LOCK = (0x63727370, 1)  # pg_advisory_xact_lock(int, int) keys: "crsp", migrations

_V1 = [
    """CREATE TABLE notifications (
        id BIGSERIAL PRIMARY KEY, received_at DOUBLE PRECISION NOT NULL, source TEXT NOT NULL, raw BYTEA NOT NULL,
        sha256 TEXT NOT NULL, truncated BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE events (
        id BIGSERIAL PRIMARY KEY, notification_id BIGINT NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
        starts_at TEXT NOT NULL, ends_at TEXT, labels TEXT NOT NULL, annotations TEXT NOT NULL,
        generator_url TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL, decided_at TEXT,
        forced INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX events_undecided ON events (id) WHERE decided_at IS NULL",
    "CREATE INDEX events_decided_at ON events (decided_at)",
    "CREATE INDEX events_notification ON events (notification_id) WHERE decided_at IS NULL",
    """CREATE TABLE audit (
        seq BIGINT PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL, target TEXT, actor TEXT NOT NULL,
        data TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL)""",
    "CREATE INDEX audit_target ON audit (target, seq)",
    "CREATE INDEX audit_hash ON audit (hash)",
    """CREATE TABLE rollbacks (
        rowid BIGSERIAL UNIQUE, incident TEXT PRIMARY KEY, target TEXT NOT NULL, namespace TEXT NOT NULL,
        deployment TEXT NOT NULL, ingress TEXT, created_at TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL, dry_run INTEGER NOT NULL, steps TEXT NOT NULL DEFAULT '{}',
        cites TEXT NOT NULL DEFAULT '[]', spec TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX rollbacks_target ON rollbacks (target, rowid)",
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value BYTEA NOT NULL)",
    """CREATE TABLE outbox (
        id BIGSERIAL PRIMARY KEY, incident TEXT NOT NULL, kind TEXT NOT NULL, role TEXT NOT NULL, target TEXT,
        data TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, state TEXT NOT NULL,
        next_attempt_at DOUBLE PRECISION NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, claimed_at DOUBLE PRECISION,
        delivered_at DOUBLE PRECISION, last_error TEXT, destination TEXT NOT NULL DEFAULT 'slack')""",
    "CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX outbox_incident ON outbox (incident, id)",
    "CREATE TABLE outbox_alerts (fingerprint TEXT PRIMARY KEY, incident TEXT NOT NULL)",
    """CREATE TABLE threads (
        incident TEXT NOT NULL, destination TEXT NOT NULL, channel TEXT, ref TEXT, metrics TEXT,
        PRIMARY KEY (incident, destination))""",
    """CREATE TABLE core_log (
        seq BIGINT PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
        recorded INTEGER NOT NULL DEFAULT 1)""",
    "CREATE INDEX core_log_at ON core_log (at)",
    """CREATE TABLE gitops_webhooks (
        id BIGSERIAL PRIMARY KEY, incident TEXT NOT NULL UNIQUE, msg_id TEXT NOT NULL, body BYTEA NOT NULL,
        state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, created_at DOUBLE PRECISION NOT NULL,
        next_attempt_at DOUBLE PRECISION NOT NULL, delivered_at DOUBLE PRECISION, last_error TEXT)""",
    "CREATE INDEX gitops_webhooks_due ON gitops_webhooks (next_attempt_at) WHERE state = 'pending'",
    """CREATE TABLE leadership (
        id INTEGER PRIMARY KEY CHECK (id = 1), term BIGINT NOT NULL, holder TEXT, since DOUBLE PRECISION)""",
    "INSERT INTO leadership (id, term) VALUES (1, 0)",
    """CREATE TABLE replicas (
        instance TEXT PRIMARY KEY, identity TEXT NOT NULL, url TEXT, started_at DOUBLE PRECISION NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL, leader_term BIGINT)""",
]

MIGRATIONS: list[tuple[int, list[str]]] = [(1, _V1)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(conn: PgConn) -> int:
    """Bring the database up to SCHEMA_VERSION (in one transaction, under the migration lock); return the version
    found before. A database newer than this code is refused (an older replica must not write it)."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?, ?)", MIGRATION_LOCK)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch from clock_timestamp()))"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        found = int(row[0]) if row else 0
        if found > SCHEMA_VERSION:
            raise RuntimeError(f"the database has schema version {found}, newer than this responder's {SCHEMA_VERSION}")
        for version, statements in MIGRATIONS:
            if version > found:
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise
    return found

"""Picking the backend from the settings: :func:`open_store` for the service, :func:`verify_audit` and
:func:`tail_audit` for the command line (read-only: they never migrate or write).

The store sits below the configuration in the layers, so it does not import the settings: it states what it reads
from them (:class:`StoreSettings`, :class:`StoreSecrets`), and the typed settings satisfy that. The PostgreSQL
backend (and with it psycopg) is imported only when the settings ask for it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from responder.store.port import AuditSink, Store
from responder.store.records import AuditEntry, VerifyReport
from responder.store.sql import read_audit, verify_chain
from responder.store.sqlite import SqliteDialect, SqliteStore, open_readonly

if TYPE_CHECKING:
    from responder.store.postgres import PostgresConfig


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class PostgresOptions(Protocol):
    @property
    def connect_timeout(self) -> timedelta: ...

    @property
    def statement_timeout(self) -> timedelta: ...


class StorageOptions(Protocol):
    @property
    def backend(self) -> Literal["sqlite", "postgres"]: ...

    @property
    def path(self) -> Path: ...

    @property
    def postgres(self) -> PostgresOptions | None: ...


class StoreSettings(Protocol):
    @property
    def storage(self) -> StorageOptions: ...


class StoreSecrets(Protocol):
    @property
    def audit_key(self) -> _Secret | None: ...

    @property
    def postgres_dsn(self) -> _Secret | None: ...


def open_store(settings: StoreSettings, secrets: StoreSecrets, *, sink: AuditSink | None) -> Store:
    """The store the settings ask for, not opened yet (the caller opens it and closes it)."""
    key = audit_key(secrets)
    if settings.storage.backend == "postgres":
        from responder.store.postgres import PostgresStore

        return PostgresStore(_postgres(settings, secrets), audit_key=key, sink=sink)
    return SqliteStore(settings.storage.path, audit_key=key, sink=sink)


def audit_key(secrets: StoreSecrets) -> bytes | None:
    return secrets.audit_key.get_secret_value().encode() if secrets.audit_key else None


def verify_audit(
    settings: StoreSettings, secrets: StoreSecrets, *, expect_length: int | None, expect_head: str | None
) -> VerifyReport:
    """Verify the chain of the configured database, read-only."""
    key = audit_key(secrets)
    if settings.storage.backend == "postgres":
        from responder.store.postgres import read_only

        with read_only(_postgres(settings, secrets)) as (conn, dialect):
            return verify_chain(conn, dialect, key, expect_length=expect_length, expect_head=expect_head)
    return verify_file(settings.storage.path, key, expect_length=expect_length, expect_head=expect_head)


def verify_file(path: Path, key: bytes | None, *, expect_length: int | None, expect_head: str | None) -> VerifyReport:
    with open_readonly(path) as conn:
        return verify_chain(conn, SqliteDialect(), key, expect_length=expect_length, expect_head=expect_head)


def tail_audit(settings: StoreSettings, secrets: StoreSecrets, *, limit: int) -> list[AuditEntry]:
    """The newest ``limit`` entries of the configured database, oldest first, read-only."""
    if settings.storage.backend == "postgres":
        from responder.store.postgres import read_only

        with read_only(_postgres(settings, secrets)) as (conn, _):
            return list(reversed(list(read_audit(conn, limit=limit, newest_first=True))))
    return tail_file(settings.storage.path, limit=limit)


def tail_file(path: Path, *, limit: int) -> list[AuditEntry]:
    with open_readonly(path) as conn:
        return list(reversed(list(read_audit(conn, limit=limit, newest_first=True))))


def _postgres(settings: StoreSettings, secrets: StoreSecrets) -> PostgresConfig:
    from responder.store.postgres import PostgresConfig

    options = settings.storage.postgres
    if options is None or secrets.postgres_dsn is None:
        raise ValueError("storage.backend is postgres but storage.postgres.dsn is not set")
    return PostgresConfig(
        dsn=secrets.postgres_dsn.get_secret_value(),
        connect_timeout_s=options.connect_timeout.total_seconds(),
        statement_timeout_s=options.statement_timeout.total_seconds(),
    )

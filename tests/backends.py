"""One handle per storage backend for the tests that run against both (``backend`` fixture, tests/conftest.py):
a store of that kind, the ``storage`` section of a configuration, and plain SQL outside the responder (to look, or
to tamper) with ``?`` placeholders in either database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from postgres import PostgresServer

from responder.store.postgres import PostgresConfig, PostgresStore
from responder.store.sql import SqlStore
from responder.store.sqlite import SqliteStore


@dataclass
class Backend:
    name: str  # "sqlite" or "postgres"
    tmp_path: Path
    dsn: str | None = None
    server: PostgresServer | None = None

    @property
    def db(self) -> Path:
        return self.tmp_path / "responder.db"

    @property
    def shared(self) -> bool:
        return self.name == "postgres"

    def store(self, *, audit_key: bytes | None = None, statement_timeout_s: float = 5.0, **kw: Any) -> SqlStore:
        if self.dsn is None:
            return SqliteStore(self.db, audit_key=audit_key, **kw)
        config = PostgresConfig(dsn=self.dsn, connect_timeout_s=2, statement_timeout_s=statement_timeout_s)
        return PostgresStore(config, audit_key=audit_key, **kw)

    def storage(self, **extra: Any) -> dict[str, Any]:
        """The configuration's ``storage`` section for this backend (the DSN in a secret file)."""
        section: dict[str, Any] = {"path": str(self.db), **extra}
        if self.dsn is not None:
            secret = self.tmp_path / "secrets" / "postgres-dsn"
            secret.parent.mkdir(exist_ok=True)
            secret.write_text(self.dsn + "\n")
            postgres = {"dsn": {"file": str(secret)}, "connect_timeout": "2s", "statement_timeout": "2s"}
            section |= {"backend": "postgres", "postgres": postgres | section.get("postgres", {})}
        return section

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A connection of the database's own driver, in one transaction committed at the end (``?`` SQL)."""
        if self.dsn is None:
            conn = sqlite3.connect(self.db)
            try:
                with conn:
                    yield conn
            finally:
                conn.close()
        else:
            with psycopg.connect(self.dsn) as raw:
                yield _Qmark(raw)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the database from outside the responder."""
        if self.dsn is None:
            conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
            try:
                return [tuple(row) for row in conn.execute(sql, args)]
            finally:
                conn.close()
        with psycopg.connect(self.dsn, autocommit=True) as raw:
            return [tuple(row) for row in _Qmark(raw).execute(sql, args)]

    def json(self, column: str, key: str) -> str:
        """SQL: the top-level ``key`` of the JSON text in ``column``."""
        return f"json_extract({column}, '$.{key}')" if self.dsn is None else f"({column}::jsonb ->> '{key}')"


class _Qmark:
    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, args: Any = ()) -> psycopg.Cursor[Any]:
        return self.raw.execute(sql.replace("%", "%%").replace("?", "%s"), tuple(args))  # type: ignore[arg-type]

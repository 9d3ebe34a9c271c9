"""The PostgreSQL backend of the store port (shared by the replicas: high availability). The only package that
imports psycopg."""

from responder.store.postgres.connect import PostgresConfig, redactor
from responder.store.postgres.dialect import INBOX_CHANNEL, PostgresConnector, PostgresDialect
from responder.store.postgres.store import PostgresStore, read_only

__all__ = [
    "INBOX_CHANNEL",
    "PostgresConfig",
    "PostgresConnector",
    "PostgresDialect",
    "PostgresStore",
    "read_only",
    "redactor",
]

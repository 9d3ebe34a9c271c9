"""Fixtures for every test directory: the PostgreSQL server (one per session, a database per test) and the
``backend`` fixture that runs a test against both stores.

Without PostgreSQL's binaries the PostgreSQL variants are skipped, unless REQUIRE_POSTGRES=1 (scripts/test.sh sets
it): then they fail, so CI cannot pass by skipping them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from backends import Backend
from postgres import PostgresServer, find_bindir

from responder.store.sql import SqlStore


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        message = "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1: {message}")
        pytest.skip(message)
    server = PostgresServer(bindir).init()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test."""
    postgres_server.ensure_running()  # an earlier test may have stopped it and failed before starting it again
    name = postgres_server.create_database()
    try:
        yield postgres_server.dsn(name)
    finally:
        postgres_server.ensure_running()
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return Backend("postgres", tmp_path, dsn=request.getfixturevalue("postgres_dsn"), server=server)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[SqlStore]:
    """An open store of the backend under test."""
    opened = backend.store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from responder.store.sqlite import SqliteStore
from responder.testing.emulator import Emulator, run_emulator, sample_canary_objects


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Emulator, str]]:
    """The Kubernetes API emulator on loopback with two apps' stable and canary objects in namespace shop."""
    objects = sample_canary_objects("shop", "checkout") + sample_canary_objects("shop", "payments")
    async with run_emulator(objects) as (emulator, url):
        yield emulator, url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open SQLite store in the test's directory, closed at the end."""
    opened = SqliteStore(tmp_path / "responder.db")
    await opened.open()
    yield opened
    await opened.close()

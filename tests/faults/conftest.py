"""Fixtures of the fault tests: the Kubernetes API emulator (several apps) and a fake Slack, both on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_fake import FakeSlack, fake_slack

from responder.testing.emulator import Emulator, run_emulator, sample_canary_objects

APPS = ("checkout", "payments", "search", "cart", "profile", "ledger")


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[Emulator, str]]:
    """The emulator with the stable and canary objects of every app in APPS, in namespace shop."""
    objects = [obj for app in APPS for obj in sample_canary_objects("shop", app)]
    async with run_emulator(objects) as (emulator, url):
        yield emulator, url


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as fake:
        yield fake

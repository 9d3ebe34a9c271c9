"""Fixtures for the end-to-end tests: binaries (or a clean skip), a demo app, a webhook receiver, the chain.

When a test fails while the chain runs, the tails of the Prometheus and Alertmanager logs are attached to the
failure report (see `pytest_runtest_makereport`).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from .harness import Binaries, Chain, DemoApp, TrafficProfile, WebhookReceiver, find_binaries, run_chain

_CHAIN_LOGS = pytest.StashKey[Callable[[], str]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    logs = item.stash.get(_CHAIN_LOGS, None)
    if logs is not None and report.failed:
        report.sections.append(("chain logs", logs()))
    return report


@pytest.fixture
def attach_logs_on_failure(request: pytest.FixtureRequest) -> Callable[[Callable[[], str]], None]:
    """For chains started outside the `chain` fixture (e.g. module-scoped): register what to show on failure."""

    def attach(logs: Callable[[], str]) -> None:
        request.node.stash[_CHAIN_LOGS] = logs

    return attach


@pytest.fixture(scope="session")
def e2e_binaries() -> Binaries:
    found = find_binaries()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture
def webhook_token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture
async def webhook_receiver(webhook_token: str) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(token=webhook_token)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
def demo_app() -> DemoApp:
    """Both versions healthy at 20 requests/s and 50 ms (the chain fixture starts and stops it)."""
    return DemoApp(canary=TrafficProfile(rps=20), stable=TrafficProfile(rps=20))


@pytest.fixture
async def chain(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    e2e_binaries: Binaries,
    demo_app: DemoApp,
    webhook_receiver: WebhookReceiver,
    webhook_token: str,
) -> AsyncIterator[Chain]:
    """demo app -> Prometheus (shipped rules, test timing) -> Alertmanager (shipped route) -> webhook_receiver.

    To put another receiver at the end (the responder), override `webhook_receiver`/`webhook_token` or call
    `run_chain()` directly with its URL and token.
    """

    def remember_logs(started: Chain) -> None:
        request.node.stash[_CHAIN_LOGS] = started.logs

    async with run_chain(
        workdir=tmp_path,
        webhook_url=webhook_receiver.url,
        token=webhook_token,
        demo=demo_app,
        binaries=e2e_binaries,
        on_start=remember_logs,
    ) as running:
        yield running

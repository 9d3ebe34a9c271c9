"""Helpers shared by the fault tests: configurations with Slack, database reads, a responder subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slack_fake import BOT_TOKEN, FakeSlack
from support import Running, write_config

from responder.testing.emulator import Emulator


def slack_config(tmp_path: Path, kube_url: str, fake: FakeSlack, *, timeout: str = "2s", **extra: Any) -> Path:
    """A configuration that posts to the fake Slack (bot-token mode) with a fast outbox backoff."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "slack-token").write_text(BOT_TOKEN)
    notifications = {
        "slack": {
            "bot_token": {"file": str(secrets / "slack-token")},
            "channel": "#canaries",
            "api_base_url": fake.url + "/api/",
            "timeout": timeout,
        },
        "outbox": {"base_delay": "50ms", "max_delay": "200ms"},
        "prometheus_url": fake.url,
    }
    return write_config(tmp_path, kube_url=kube_url, notifications=notifications, **extra)


async def settle(running: Running, within: float = 20.0) -> None:
    """Wait until every accepted event is decided and every rollback has finished."""
    await running.services.engine.drain(within)


async def query(running: Running, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return await running.services.store.read(lambda r: [tuple(row) for row in r.conn.execute(sql, args)])


async def audit_kinds(running: Running, kind: str) -> list[dict[str, Any]]:
    entries = await running.services.store.audit_entries(kind=kind, limit=100_000)
    return [e.data for e in entries]


def ok_mutations(emulator: Emulator, *, kind: str, subresource: str | None = None) -> list[str]:
    """Names of the objects changed by successful mutating requests of one kind (in order)."""
    return [
        m.name or ""
        for m in emulator.mutations
        if m.ok and m.kind == kind and (subresource is None or m.subresource == subresource)
    ]

"""Helpers shared by the fault tests: configurations with Slack, database reads, a responder subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from slack_fake import BOT_TOKEN, FakeSlack
from support import Running, write_config

from responder.emulator import Emulator


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
    return await running.services.store.read(lambda conn: [tuple(r) for r in conn.execute(sql, args)])


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


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- the server as a real process (SIGKILL tests) --


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "responder", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )


async def wait_healthy(session: aiohttp.ClientSession, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(400):
        if process.poll() is not None:
            raise AssertionError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            async with session.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.02)
    raise AssertionError(f"server did not start:\n{log.read_text()[-3000:]}")


def read_db(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


def audit_verify(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "responder", "audit", "verify", "--db", str(db)],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )

"""Builders shared by the integration tests: configuration files, Alertmanager payloads, a running responder."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.test_utils import TestServer
from fake_cluster import FakeCluster

from responder.app import build_app, engine_options
from responder.config import load_settings
from responder.core.decide import DecisionCore
from responder.core.webhook import WebhookNotification, to_event
from responder.engine import Engine
from responder.http.server import RUNTIME, Services
from responder.metrics import Metrics
from responder.ports import ClusterPort
from responder.store import Store

WEBHOOK_TOKEN = "wh-token-0123456789abcdef"
WEBHOOK_TOKEN_NEXT = "wh-token-next-fedcba9876543210"
ADMIN_TOKEN = "admin-token-5f4dcc3b5aa765d61d83"
BASIC_PASSWORD = "basic-pw-3c59dc048e8850243be8"
READ_TOKEN = "read-token-8277e0910d750195b448"
GATE_TOKEN = "gate-token-a87ff679a2f3e71d9181"
ALL_SECRETS = (WEBHOOK_TOKEN, WEBHOOK_TOKEN_NEXT, ADMIN_TOKEN, BASIC_PASSWORD, READ_TOKEN, GATE_TOKEN)


def write_config(tmp_path: Path, *, kube_url: str = "http://127.0.0.1:9", **overrides: Any) -> Path:
    """A complete configuration whose secrets live in files under tmp_path; overrides replace top-level keys."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    for name, value in {
        "webhook": WEBHOOK_TOKEN,
        "webhook-next": WEBHOOK_TOKEN_NEXT,
        "admin": ADMIN_TOKEN,
        "basic": BASIC_PASSWORD,
        "read": READ_TOKEN,
        "gate": GATE_TOKEN,
    }.items():
        (secrets / name).write_text(value + "\n")
    document: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "auth": {
            "webhook": {
                "bearer_tokens": [{"file": str(secrets / "webhook")}, {"file": str(secrets / "webhook-next")}],
                "basic": {"username": "alertmanager", "password": {"file": str(secrets / "basic")}},
            },
            "admin_token": {"file": str(secrets / "admin")},
            "read_token": {"file": str(secrets / "read")},
            "gate_token": {"file": str(secrets / "gate")},
        },
        "kubernetes": {"mode": "url", "url": kube_url, "request_timeout": "2s"},
        "safety": {"allowed_namespaces": ["shop", "pay"]},
        "targets": [
            {"name": "by-labels", "namespace": "{namespace}", "deployment": "{app}-canary", "ingress": "{app}-canary"}
        ],
        "coalesce_window": "30s",
        "cooldown": "15m",
        "retry": {"attempts": 4, "base_delay": "10ms", "max_delay": "50ms"},
        "storage": {"path": str(tmp_path / "responder.db")},
    }
    document.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]


def alert(
    alertname: str = "CanaryHighErrorRate",
    *,
    status: str = "firing",
    app: str = "checkout",
    namespace: str = "shop",
    action: str = "rollback",
    starts_at: datetime | None = None,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {
        "alertname": alertname,
        "namespace": namespace,
        "app": app,
        "action": action,
        "severity": "critical",
        **labels,
    }
    start = starts_at or datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{alertname} on {namespace}/{app}", "description": "canary 5xx ratio 12.5%"},
        "startsAt": start.isoformat().replace("+00:00", "Z"),
        "endsAt": (start + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
        if status == "resolved"
        else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=canary",
        "fingerprint": fingerprint(all_labels),
    }


def notification(
    *alerts: dict[str, Any],
    external_url: str = "http://alertmanager-0:9093",
    receiver: str = "canary\\.responder",
    **extra: Any,
) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="CanaryHighErrorRate"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": list(alerts),
        **extra,
    }


def bearer(token: str = WEBHOOK_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Running:
    url: str
    session: aiohttp.ClientSession
    services: Services
    captured: list[dict[str, Any]]

    async def post_alerts(self, payload: Any, *, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        return await self.session.post(
            f"{self.url}/api/v1/alerts", json=payload, headers=headers if headers is not None else bearer()
        )


@asynccontextmanager
async def running_responder(
    config: Path, *, cluster: ClusterPort | None = None, environ: dict[str, str] | None = None, port: int | None = None
) -> AsyncIterator[Running]:
    """The whole responder on a loopback port (``port``, else any free one); audit lines are captured instead of
    printed."""
    settings, secrets = load_settings(config, environ or {})
    captured: list[dict[str, Any]] = []
    app = build_app(settings, secrets, cluster=cluster, metrics=Metrics(), audit_sink=captured.extend)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            services = app[RUNTIME].require()
            yield Running(str(server.make_url("")).rstrip("/"), session, services, captured)
    finally:
        await server.close()


# -- waiting, and the server as a real process (crash and SIGKILL tests) --


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


async def responder_command(
    *args: str, env: dict[str, str] | None = None, merge_stderr: bool = False
) -> tuple[int, str, str]:
    """``python -m responder ARGS`` as a process of its own (``env``: its whole environment, this one's by
    default): the exit code, stdout and stderr (with ``merge_stderr``, stdout holds both and stderr is "")."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "responder",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        env=env if env is not None else {**os.environ},
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), (err or b"").decode()


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


def record_of(outcomes: Any, target: Any) -> Any:
    """A done rollback record holding these step outcomes (what a restore reads)."""
    from responder.store import RollbackRecord

    return RollbackRecord(
        incident="i",
        target=target,
        created_at="",
        received_at=0.0,
        status="done",
        dry_run=False,
        steps={o.id: {"result": o.result.value, "before": o.before, "after": o.after} for o in outcomes},
        cites=[],
    )


def bare_engine(config: Path, store: Store, cluster: ClusterPort, **options: Any) -> Engine:
    """An engine on its own (no HTTP) from a configuration file, over a store and a cluster the test controls;
    ``options`` replace fields of the engine options the configuration gives."""
    settings, _ = load_settings(config, {})
    return Engine(
        core=DecisionCore(settings.core()),
        store=store,
        cluster=cluster,
        metrics=Metrics(),
        options=dataclasses.replace(engine_options(settings), **options),
    )


async def finish_and_stop(engine: Engine, store: Store) -> str:
    """Start ``engine``, let it finish what the store holds (a resumed rollback), stop it; the one rollback's
    status."""
    await engine.start()
    try:
        await engine.drain()
    finally:
        await engine.stop()
    [record] = await store.rollbacks()
    return record.status


async def stop_at_call(engine: Engine, fake: FakeCluster, method: str) -> None:
    """Start ``engine``, hand it one alert, and stop it the moment its rollback calls ``method`` of the fake
    cluster, that call never answered: a process dying with the call in flight."""
    reached = asyncio.Event()

    async def hold(called: str, call: tuple[Any, ...]) -> None:
        if called == method:
            reached.set()
            await asyncio.Event().wait()  # never returns: the engine is stopped while it waits

    fake.before_call = hold
    await engine.start()
    event = to_event(WebhookNotification.model_validate(notification(alert())).alerts[0])
    await engine.accept(b"{}", [event], {}, received_at=0.0)
    await asyncio.wait_for(reached.wait(), 5)
    await engine.stop()
    fake.before_call = None


@asynccontextmanager
async def read_only(store: Store) -> AsyncIterator[None]:
    """The SQLite store refuses every write meanwhile (``PRAGMA query_only``), as a full or read-only disk would."""
    await store.read(lambda r: r.conn.execute("PRAGMA query_only=ON").fetchall())
    try:
        yield
    finally:
        await store.read(lambda r: r.conn.execute("PRAGMA query_only=OFF").fetchall())

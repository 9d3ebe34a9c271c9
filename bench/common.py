"""What the benchmarks share: a free port, the server's configuration, waiting for it, RSS and percentiles."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def write_config(
    workdir: Path, kube_url: str, port: int, *, token: str, rollback_cap: int = 100_000, dsn: str | None = None
) -> Path:
    """A server configuration for namespace ``shop`` (targets ``{app}-canary``), quiet logs, a high cap; the
    SQLite store in ``workdir``, or the PostgreSQL database ``dsn``."""
    (workdir / "token").write_text(token)
    (workdir / "admin-token").write_text(f"admin-{token}")  # each role its own secret (the server insists)
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {
            "webhook": {"bearer_tokens": [{"file": str(workdir / "token")}]},
            "admin_token": {"file": str(workdir / "admin-token")},
        },
        "kubernetes": {"mode": "url", "url": kube_url},
        "safety": {"allowed_namespaces": ["shop"]},
        "targets": [{"name": "shop", "match": {"namespace": "shop"}}],
        "rollback_cap": {"max": rollback_cap, "window": "10m"},
        "storage": {"path": str(workdir / "responder.db")},
        "log_level": "WARNING",
    }
    if dsn is not None:
        (workdir / "dsn").write_text(dsn)
        config["storage"] = {"backend": "postgres", "postgres": {"dsn": {"file": str(workdir / "dsn")}}}
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def wait_healthy(
    session: aiohttp.ClientSession, url: str, process: subprocess.Popen[bytes] | None = None
) -> None:
    for _ in range(400):
        if process is not None and process.poll() is not None:
            raise RuntimeError("the server exited during startup")
        try:
            async with session.get(f"{url}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")


def start_postgres() -> Any:
    """A throwaway PostgreSQL server (tests/postgres.py: Debian's binaries, as the postgres user when root)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    server = PostgresServer(bindir, durable=True).init()  # fsync on, like SQLite's synchronous=FULL
    server.start()
    return server

"""Three (or more) real responder processes on one PostgreSQL database and one emulated Kubernetes API, the way an
operator runs them: each with its own identity, port and log, all electing a leader through one Lease.

A replica names itself in its Kubernetes User-Agent, so the emulator's record of every mutating request says
which process sent it (``mutations_by``)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from support import ADMIN_TOKEN, bearer, free_port, start_server, write_config

from responder.testing.emulator import Emulator, Mutation

LEASE = {
    "enabled": True,
    "lease_name": "canary-responder",
    "namespace": "canary-system",
    "lease_duration": "3s",
    "renew_deadline": "2s",
    "retry_period": "1s",
}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Replica:
    name: str
    home: Path
    port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "stderr.log"

    def start(self) -> None:
        self.process = start_server(self.config, self.log)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Replicas:
    emulator: Emulator
    session: aiohttp.ClientSession
    members: list[Replica] = field(default_factory=list)

    def __iter__(self) -> Any:
        return iter(self.members)

    def __getitem__(self, index: int) -> Replica:
        return self.members[index]

    async def start(self, *, wait_ready: bool = True) -> None:
        for replica in self.members:
            replica.start()
        for replica in self.members:
            await self.wait_up(replica)
        if wait_ready:
            await self.leader()

    async def wait_up(self, replica: Replica, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not replica.alive():
                raise AssertionError(f"{replica.name} exited:\n{replica.log_text()[-4000:]}")
            try:
                async with self.session.get(f"{replica.url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"{replica.name} did not start:\n{replica.log_text()[-4000:]}")

    async def status(self, replica: Replica) -> dict[str, Any] | None:
        try:
            async with self.session.get(f"{replica.url}/api/v1/status", headers=ADMIN, timeout=_SHORT) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def leaders(self) -> list[Replica]:
        found = []
        for replica in self.members:
            if replica.alive():
                status = await self.status(replica)
                if status is not None and status.get("leader"):
                    found.append(replica)
        return found

    async def leader(self, *, within: float = 20.0, besides: Sequence[Replica] = ()) -> Replica:
        """The one replica that reports leading (and is not in ``besides``), waiting for an election."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = [r for r in await self.leaders() if r not in besides]
            if len(found) == 1:
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError("no single leader:\n" + "\n".join(r.log_text()[-2000:] for r in self.members))

    async def post(self, replica: Replica, payload: Any) -> tuple[int, dict[str, Any]]:
        async with self.session.post(
            f"{replica.url}/api/v1/alerts", json=payload, headers=bearer(), timeout=_SHORT
        ) as response:
            return response.status, await response.json()

    async def admin(self, replica: Replica, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method, f"{replica.url}{path}", json=body, headers=ADMIN, timeout=aiohttp.ClientTimeout(total=60)
        ) as response:
            return response.status, await response.json()

    def stop(self) -> None:
        for replica in self.members:
            replica.kill()

    def mutations_by(self, replica: Replica, *, since: float = 0.0) -> list[Mutation]:
        """The changes ``replica`` sent to the API after ``since`` (its Lease updates aside)."""
        return [
            m
            for m in self.emulator.mutations
            if f"({replica.name}_" in m.agent and m.kind != "Lease" and m.at >= since and m.status != 0
        ]

    def canary_mutations(self, app: str) -> list[Mutation]:
        """Every landed change to one canary's Deployment (scale) and Ingress, by anyone."""
        name = f"{app}-canary"
        return [m for m in self.emulator.mutations if m.name == name and m.ok and m.kind in ("Deployment", "Ingress")]


_SHORT = aiohttp.ClientTimeout(total=5)


def replica_configs(
    tmp_path: Path,
    names: Sequence[str],
    *,
    kube_url: str,
    dsn: str,
    election: dict[str, dict[str, Any]] | None = None,
    **overrides: Any,
) -> list[Replica]:
    """One configuration per replica (``election``: per-replica leader_election overrides, by name)."""
    dsn_file = tmp_path / "postgres-dsn"
    dsn_file.write_text(dsn + "\n")
    found = []
    for index, name in enumerate(names):
        home = tmp_path / f"replica-{index}-{name}"
        home.mkdir()
        port = free_port()
        own = (election or {}).get(name, {})
        election_settings = {**LEASE, "identity": name, "advertise_url": f"http://127.0.0.1:{port}", **own}
        document = {
            "listen": {"host": "127.0.0.1", "port": port},
            "storage": {"backend": "postgres", "postgres": {"dsn": {"file": str(dsn_file)}, "poll_interval": "1s"}},
            "leader_election": election_settings,
            "shutdown_grace": "2s",
            **overrides,
        }
        found.append(Replica(name, home, port, write_config(home, kube_url=kube_url, **document)))
    return found


async def eventually(predicate: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)

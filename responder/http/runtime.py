"""What the HTTP handlers reach: the typed application keys and the services filled in at startup."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from responder.config import Secrets, Settings
from responder.engine import Engine
from responder.health import Health
from responder.http.rejections import RejectionSummary
from responder.metrics import Metrics
from responder.ports import ClusterPort
from responder.store import Store

Forwarded = tuple[int, dict[str, str], bytes]  # status, headers, body


class Leadership(Protocol):
    """Which replica acts (several replicas on the shared store), as the HTTP face needs it."""

    def is_leader(self) -> bool:
        """This replica leads now, with certainty (one replica alone always does)."""
        ...

    def ready_problem(self) -> str | None:
        """Why this replica should take no traffic (shutting down, a duplicate identity), or None."""
        ...

    def status(self) -> dict[str, Any]: ...

    async def forward(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Forwarded | None:
        """Send an operator request to the leader; None when no replica leads right now."""
        ...


class Alone:
    """One replica, no election: it leads."""

    def is_leader(self) -> bool:
        return True

    def ready_problem(self) -> str | None:
        return None

    def status(self) -> dict[str, Any]:
        return {"mode": "single", "leader": True}

    async def forward(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Forwarded | None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    store: Store
    engine: Engine
    cluster: ClusterPort
    metrics: Metrics
    leadership: Leadership = field(default_factory=Alone)
    health: Health | None = None  # crash bookkeeping of the background tasks (/healthz)

    def is_leader(self) -> bool:
        return self.leadership.is_leader()


@dataclass(slots=True)
class Runtime:
    """Filled in by the application's startup (responder.app) once the database and the engine are up."""

    services: Services | None = None

    def require(self) -> Services:
        if self.services is None:
            raise web.HTTPServiceUnavailable(text="starting up")
        return self.services


SETTINGS = web.AppKey("settings", Settings)


SECRETS = web.AppKey("secrets", Secrets)


RUNTIME = web.AppKey("runtime", Runtime)


REJECTIONS = web.AppKey("rejections", RejectionSummary)

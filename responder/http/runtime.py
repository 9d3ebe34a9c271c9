"""What the HTTP handlers reach: the typed application keys and the services filled in at startup."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from responder.config import Secrets, Settings
from responder.engine import Engine
from responder.health import Health
from responder.http.rejections import RejectionSummary
from responder.metrics import Metrics
from responder.ports import ClusterPort
from responder.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    store: Store
    engine: Engine
    cluster: ClusterPort
    metrics: Metrics
    is_leader: Callable[[], bool] = lambda: True  # replaced when leader election is enabled
    health: Health | None = None  # crash bookkeeping of the background tasks (/healthz)


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

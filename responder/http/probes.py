"""Probes and metrics: ``/healthz`` (liveness: red while a background task keeps crashing), ``/readyz`` (a
notification-sized write goes through, the Kubernetes API answers, the replica is not shutting down or a
duplicate) and ``/metrics``. With several replicas on the shared store every replica is ready, leader or not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from responder.http.errors import json_response
from responder.http.runtime import RUNTIME
from responder.ports import ClusterError
from responder.store import Store, StoreUnavailable

log = logging.getLogger("responder.http")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: red while a background task keeps crashing or cannot go on (see responder.health), so that
    Kubernetes restarts the pod rather than leave a dead task behind a 200."""
    services = request.app[RUNTIME].services
    problems = services.health.problems() if services is not None and services.health is not None else []
    if problems:
        return json_response({"status": "failing", "problems": problems}, 503)
    return json_response({"status": "ok"})


async def _inbox(store: Store) -> str:
    """The inbox takes notifications: a real write goes through, and the last notification was stored."""
    probed = await _check(store.probe, StoreUnavailable)
    if probed != "ok":
        return probed
    problem = store.health.problem()
    return "ok" if problem is None else f"failing: {problem}"


async def readyz(request: web.Request) -> web.Response:
    services = request.app[RUNTIME].require()
    inbox, kubernetes = await asyncio.gather(  # at once: the probe's own timeout bounds the slower one only
        _inbox(services.store), _check(services.cluster.ping, ClusterError)
    )
    checks = {"inbox": inbox, "kubernetes": kubernetes}
    problem = services.leadership.ready_problem()
    if problem is not None:  # several replicas: every one takes webhooks and serves the API, leader or not
        checks["replica"] = f"failing: {problem}"
    ready = all(value == "ok" for value in checks.values())
    return json_response({"ready": ready, "checks": checks}, 200 if ready else 503)


async def _check(probe: Callable[[], Awaitable[None]], expected: type[Exception]) -> str:
    try:
        async with asyncio.timeout(3):
            await probe()
    except expected as exc:
        return f"failing: {exc}"
    except TimeoutError:
        return "failing: timed out"
    return "ok"


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[RUNTIME].require().metrics.registry
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response

"""The HTTP layer: thin aiohttp handlers over the engine.

``POST /api/v1/alerts`` answers 200 only once the notification and its events are durable; it never calls
Kubernetes. Alertmanager retries 5xx (with backoff) but never 4xx, so 4xx is reserved for requests that must never
be accepted (bad credentials, not JSON, too large, malformed, schema violations) and 503 means "try again":
the database cannot be written or the engine's backlog is full. Every error body is
``{"error": <code>, "message": <text>, ...}``, an unexpected exception's too (a 500 logged with its traceback);
every rejection is counted by reason, logged and audited without credentials or the body. Requests without valid
credentials are audited and logged as one summary per interval (responder.rejections), so that whoever reaches the
port cannot grow the database; bodies must arrive within ``listen.body_timeout`` (else 408).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from responder.config import Secrets, Settings
from responder.core.webhook import WebhookNotification, to_event
from responder.engine import Engine, Saturated
from responder.health import Health
from responder.metrics import Metrics
from responder.ports import ClusterError, ClusterPort
from responder.rejections import KIND as SUMMARY_KIND
from responder.rejections import RejectionSummary
from responder.store import Store, StoreUnavailable

log = logging.getLogger("responder.web")


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


class Rejection(Exception):
    """A request refused with a JSON error body; ``reason`` is the metric label."""

    def __init__(self, status: int, reason: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.extra = status, reason, message, extra


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(rejection: Rejection) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="canary-responder"'} if rejection.status == 401 else None
    if rejection.status == 503:
        headers = {"Retry-After": "5"}
    body = {"error": rejection.reason, "message": rejection.message, **rejection.extra}
    response = json_response(body, rejection.status, headers)
    if rejection.status == 408:
        response.force_close()  # "Connection: close": the rest of that body is never read (see close_after_408)
    return response


# -- credentials --


def _matches_any(given: bytes, secrets: list[bytes]) -> bool:
    """Compare against every configured secret in constant time, without stopping at the first match."""
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(given, secret)
    return found


def webhook_authorized(request: web.Request, secrets: Secrets) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and secrets.webhook_tokens:
        tokens = [t.get_secret_value().encode() for t in secrets.webhook_tokens]
        # undecodable header bytes arrive as surrogate escapes: compare them as the bytes they were
        return _matches_any(value.strip().encode(errors="surrogateescape"), tokens)
    if scheme.lower() == "basic" and secrets.basic_user and secrets.basic_password:
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except ValueError:  # binascii.Error, UnicodeDecodeError, or non-ASCII text
            return False
        user_ok = hmac.compare_digest(user.encode(), secrets.basic_user.encode())
        password_ok = hmac.compare_digest(password.encode(), secrets.basic_password.get_secret_value().encode())
        return user_ok & password_ok
    return False


class Role(enum.IntEnum):
    WEBHOOK = 1
    READ = 2
    ADMIN = 3


def caller_role(request: web.Request) -> Role | None:
    """The role the request's credentials carry; None for no or unknown credentials (401, not 403)."""
    secrets = request.app[SECRETS]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    given = value.strip().encode(errors="surrogateescape")  # undecodable header bytes: compare as bytes
    if scheme.lower() == "bearer":
        is_admin = hmac.compare_digest(given, secrets.admin_token.get_secret_value().encode())
        read = secrets.read_token.get_secret_value().encode() if secrets.read_token else None
        is_reader = read is not None and hmac.compare_digest(given, read)
        if is_admin:
            return Role.ADMIN
        if is_reader:
            return Role.READ
    return Role.WEBHOOK if webhook_authorized(request, secrets) else None


# -- the webhook --


async def receive_alerts(request: web.Request) -> web.Response:
    received_at = time.time()
    services = request.app[RUNTIME].require()
    try:
        notification, raw = await _parse_webhook(request)
        stored = await _accept(request, services, notification, raw, received_at)
    except Rejection as rejection:
        await record_rejection(request, services, rejection)
        return error_response(rejection)
    services.metrics.webhooks.labels("accepted").inc()
    if notification.truncatedAlerts:
        services.metrics.truncated.inc(notification.truncatedAlerts)
    body = {"status": "accepted", "notification_id": stored[0].notification_id, "events": len(stored)}
    return json_response(body)


async def _parse_webhook(request: web.Request) -> tuple[WebhookNotification, bytes]:
    role = caller_role(request)
    if role is None:
        raise Rejection(401, "unauthorized", "missing or invalid webhook credentials")
    if role is not Role.WEBHOOK:  # the admin or read token: known, but never a webhook credential
        raise Rejection(403, "forbidden", "this endpoint needs the webhook credentials")
    if request.content_type != "application/json":
        raise Rejection(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {request.content_type or 'none'!r}",
        )
    raw = await read_body(request)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejection(400, "malformed_json", f"request body is not valid JSON: {exc}") from None
    try:
        return WebhookNotification.model_validate(document), raw
    except ValidationError as exc:
        raise Rejection(
            422,
            "schema",
            "the notification does not match the Alertmanager webhook schema (v4)",
            errors=field_errors(exc),
        ) from None


async def read_body(request: web.Request) -> bytes:
    """The whole body (b"" when there is none), within ``listen.body_limit_bytes`` (413) and within
    ``listen.body_timeout`` (408): a client that announces a body and trickles it is not waited for."""
    listen = request.app[SETTINGS].listen
    limit = listen.body_limit_bytes
    if request.content_length is not None and request.content_length > limit:
        raise Rejection(
            413, "too_large", f"body of {request.content_length} bytes exceeds the {limit}-byte limit", limit=limit
        )
    if not request.can_read_body:
        return b""
    seconds = listen.body_timeout.total_seconds()
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Rejection(413, "too_large", f"body exceeds the {limit}-byte limit", limit=limit) from None
    except TimeoutError:
        raise Rejection(408, "body_timeout", f"the request body did not arrive within {seconds:g} s") from None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"path": ".".join(str(p) for p in error["loc"]) or "(body)", "message": error["msg"]}
        for error in exc.errors(include_url=False, include_input=False)[:50]
    ]


async def _accept(
    request: web.Request, services: Services, notification: WebhookNotification, raw: bytes, received_at: float
) -> list[Any]:
    if not services.is_leader():
        raise Rejection(503, "not_leader", "this replica is not the leader; Alertmanager will retry")
    events = [to_event(alert) for alert in notification.alerts]
    meta = {
        "group_key": notification.groupKey,
        "receiver": notification.receiver,
        "external_url": notification.externalURL,
        "status": notification.status,
        "remote": request.remote or "",
        "user_agent": request.headers.get("User-Agent", "")[:200],
    }
    try:
        return await services.engine.accept(
            raw, events, meta, received_at=received_at, truncated=notification.truncatedAlerts
        )
    except Saturated as exc:
        raise Rejection(503, "saturated", str(exc)) from None
    except StoreUnavailable:
        raise Rejection(503, "store_unavailable", "the inbox cannot be written right now; retry later") from None


async def record_rejection(request: web.Request, services: Services, rejection: Rejection) -> None:
    """Count, log and audit a rejection. Without valid credentials (401) only the count is per request: the log
    line (the first of each reason per interval) and the audit entry go through the summary."""
    if request.path == "/api/v1/alerts":
        services.metrics.webhooks.labels("unavailable" if rejection.status == 503 else "rejected").inc()
    services.metrics.rejected.labels(rejection.reason).inc()
    if rejection.status == 401:
        summary = request.app[REJECTIONS]
        if summary.add(reason=rejection.reason, route=_route(request), remote=request.remote or "", at=time.time()):
            _log_rejection(request, rejection, f" (more like it: one summary every {summary.interval_s:g} s)")
        return
    _log_rejection(request, rejection)
    if rejection.status == 503:
        return  # the store is the problem (or the engine is flooded); Alertmanager retries
    data = {
        "status": rejection.status,
        "reason": rejection.reason,
        "message": rejection.message[:500],
        "path": request.path,
        "remote": request.remote or "",
        "content_length": request.content_length,
    }
    try:
        await services.store.audit("rejected", data, actor="http")
    except StoreUnavailable:
        log.error("could not audit a rejected request: database unavailable")


def _log_rejection(request: web.Request, rejection: Rejection, suffix: str = "") -> None:
    log.warning(
        "rejected %s %s from %s: %d %s: %s%s",
        request.method,
        request.path,
        request.remote,
        rejection.status,
        rejection.reason,
        rejection.message,
        suffix,
    )


def _route(request: web.Request) -> str:
    """The route's template (``/api/v1/audit/{seq}``), not the path: a bounded label and summary key."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


async def rejection_summaries(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: audits the summary of unauthenticated rejections every interval, and once more on
    shutdown. Register it after the context that opens the store: cleanup runs in reverse order, so the last
    summary is written while the store is still open."""
    summary = app[REJECTIONS]
    services = app[RUNTIME].services
    summary.health = services.health if services is not None else None

    async def write(data: dict[str, Any]) -> None:
        services = app[RUNTIME].require()
        await services.store.audit(SUMMARY_KIND, data, actor="http")

    task = asyncio.create_task(summary.run(write), name="rejection-summaries")
    try:
        yield
    finally:
        summary.stop()
        await task


# -- probes and metrics --


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
    checks = {
        "inbox": await _inbox(services.store),
        "kubernetes": await _check(services.cluster.ping, ClusterError),
        "leader": "ok" if services.is_leader() else "follower: not acting, so not taking webhooks",
    }
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


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn aiohttp's own HTTP errors (404, 405) into the same JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason.lower().replace(" ", "_")
        return json_response({"error": reason, "message": exc.text or exc.reason}, exc.status)


@web.middleware
async def internal_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Any unexpected exception in a handler: a JSON 500 without traceback or exception text (either could carry
    a secret), logged at ERROR with the traceback and counted by route; never aiohttp's plain-text 500."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        route = _route(request)
        log.exception("internal error in %s %s (%s)", request.method, route, request.path)
        services = request.app[RUNTIME].services
        if services is not None:
            services.metrics.internal_errors.labels(route).inc()
        message = "an unexpected error occurred; it was logged (canary_responder_http_internal_errors_total)"
        return json_response({"error": "internal", "message": message}, 500)


@web.middleware
async def close_after_408(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """After a 408 the rest of the body is still on its way. aiohttp would linger reading it (up to its
    ``lingering_time``, 10 s) before closing, which is what a trickling client wants: send the answer, then close."""
    response = await handler(request)
    if response.status == 408 and isinstance(response, web.Response):
        await response.prepare(request)
        await response.write_eof()  # aiohttp's own prepare/write_eof after the handler are then no-ops
        request.protocol.force_close()  # the transport flushes the answer before it closes
    return response


def create_app(settings: Settings, secrets: Secrets) -> web.Application:
    """The HTTP application; responder.app fills ``app[RUNTIME]`` with the services at startup, and registers
    :func:`rejection_summaries` after the context that opens the store."""
    app = web.Application(
        client_max_size=settings.listen.body_limit_bytes, middlewares=[internal_errors, json_errors, close_after_408]
    )
    app[SETTINGS] = settings
    app[SECRETS] = secrets
    app[RUNTIME] = Runtime()
    app[REJECTIONS] = RejectionSummary()
    app.router.add_post("/api/v1/alerts", receive_alerts)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app

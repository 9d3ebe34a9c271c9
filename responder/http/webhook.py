"""``POST /api/v1/alerts``: answers 200 only once the notification and its events are durable; never calls
Kubernetes. Alertmanager retries 5xx (with backoff) but never 4xx, so 4xx is reserved for requests that must never
be accepted (bad credentials, not JSON, too large, malformed, schema violations, values out of range) and 503 means
"try again": the database cannot be written or the engine's backlog is full. Bodies must arrive within
``listen.body_timeout`` (else 408)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from responder.core.webhook import WebhookNotification, to_event
from responder.engine import Saturated
from responder.engine.leadership import NotLeading
from responder.engine.repeats import Known
from responder.http.auth import Role, caller_role
from responder.http.errors import Rejection, error_response, field_errors, json_response, record_rejection
from responder.http.runtime import RUNTIME, SETTINGS, Services
from responder.store import StoreUnavailable

log = logging.getLogger("responder.http")


async def receive_alerts(request: web.Request) -> web.Response:
    received_at = time.time()
    services = request.app[RUNTIME].require()
    try:
        raw = await _webhook_body(request)
        digest = hashlib.sha256(raw).digest()
        known = await _repeat(request, services, digest, received_at)
        if known is None:
            notification = _parse(raw)
            stored = await _accept(request, services, notification, raw, received_at, digest)
    except Rejection as rejection:
        await record_rejection(request, services, rejection)
        return error_response(rejection)
    services.metrics.webhooks.labels("accepted").inc()
    if known is not None:  # a byte-for-byte repeat: recorded, every alert already seen (see engine.repeats)
        truncated, nid, events = known.truncated, known.notification_id, 0
    else:
        truncated, nid, events = notification.truncatedAlerts, stored[0].notification_id, len(stored)
    if truncated:
        services.metrics.truncated.inc(truncated)
    body: dict[str, Any] = {"status": "accepted", "notification_id": nid, "events": events}
    if known is not None:
        body["repeat"] = True
    return json_response(body)


async def _webhook_body(request: web.Request) -> bytes:
    """The body of a request with the webhook credentials and a JSON content type."""
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
    return await read_body(request)


def _parse(raw: bytes) -> WebhookNotification:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejection(400, "malformed_json", f"request body is not valid JSON: {exc}") from None
    try:
        return WebhookNotification.model_validate(document)
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
        if request.content.is_eof():  # the whole body is in already (the usual case): nothing to wait for
            return await request.read()
        async with asyncio.timeout(seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Rejection(413, "too_large", f"body exceeds the {limit}-byte limit", limit=limit) from None
    except TimeoutError:
        raise Rejection(408, "body_timeout", f"the request body did not arrive within {seconds:g} s") from None


def _unwritable() -> Rejection:
    return Rejection(503, "store_unavailable", "the inbox cannot be written right now; retry later")


async def _repeat(request: web.Request, services: Services, digest: bytes, received_at: float) -> Known | None:
    try:
        return await services.engine.repeats.take(
            digest,
            received_at=received_at,
            remote=request.remote or "",
            user_agent=request.headers.get("User-Agent", "")[:200],
        )
    except StoreUnavailable:
        raise _unwritable() from None


async def _accept(
    request: web.Request,
    services: Services,
    notification: WebhookNotification,
    raw: bytes,
    received_at: float,
    digest: bytes,
) -> list[Any]:
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
            raw, events, meta, received_at=received_at, truncated=notification.truncatedAlerts, digest=digest
        )
    except Saturated as exc:
        raise Rejection(503, "saturated", str(exc)) from None
    except NotLeading:
        raise Rejection(503, "not_leader", "this replica is not the leader; Alertmanager will retry") from None
    except StoreUnavailable:
        raise _unwritable() from None

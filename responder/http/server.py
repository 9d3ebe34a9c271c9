"""The HTTP application: the aiohttp app with the webhook, the probes and the middlewares; the operator API,
incident pages and OpenAPI document are added by :mod:`responder.app`. The names other modules use are re-exported
here: :mod:`responder.http.runtime`, :mod:`responder.http.errors`, :mod:`responder.http.auth`,
:mod:`responder.http.webhook`, :mod:`responder.http.probes`."""

from __future__ import annotations

from aiohttp import web

from responder.config import Secrets, Settings
from responder.http.auth import Role, caller_role, webhook_authorized
from responder.http.errors import (
    Rejection,
    error_response,
    field_errors,
    http_errors,
    json_response,
    record_rejection,
    rejection_summaries,
)
from responder.http.probes import healthz, metrics, readyz
from responder.http.rejections import RejectionSummary
from responder.http.runtime import REJECTIONS, RUNTIME, SECRETS, SETTINGS, Runtime, Services
from responder.http.webhook import read_body, receive_alerts

__all__ = [
    "REJECTIONS",
    "RUNTIME",
    "SECRETS",
    "SETTINGS",
    "Rejection",
    "Role",
    "Runtime",
    "Services",
    "caller_role",
    "create_app",
    "error_response",
    "field_errors",
    "json_response",
    "read_body",
    "record_rejection",
    "rejection_summaries",
    "webhook_authorized",
]


def create_app(settings: Settings, secrets: Secrets) -> web.Application:
    """The HTTP application; responder.app fills ``app[RUNTIME]`` with the services at startup, and registers
    :func:`rejection_summaries` after the context that opens the store."""
    app = web.Application(client_max_size=settings.listen.body_limit_bytes, middlewares=[http_errors])
    app[SETTINGS] = settings
    app[SECRETS] = secrets
    app[RUNTIME] = Runtime()
    app[REJECTIONS] = RejectionSummary()
    app.router.add_post("/api/v1/alerts", receive_alerts)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app

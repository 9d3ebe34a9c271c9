"""Errors over HTTP: every error body is ``{"error": <code>, "message": <text>, ...}``, an unexpected exception's too
(a 500 logged with its traceback and counted); every rejection is counted by reason, logged and audited without
credentials or the body, and requests without valid credentials are audited and logged as one summary per interval
(:mod:`responder.http.rejections`), so that whoever reaches the port cannot grow the database."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from responder.http.rejections import KIND as SUMMARY_KIND
from responder.http.runtime import REJECTIONS, RUNTIME, Services
from responder.store import StoreUnavailable

log = logging.getLogger("responder.http")


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
        response.force_close()  # "Connection: close": the rest of that body is never read (see http_errors)
    return response


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"path": ".".join(str(p) for p in error["loc"]) or "(body)", "message": error["msg"]}
        for error in exc.errors(include_url=False, include_input=False)[:50]
    ]


@web.middleware
async def http_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error a handler ends with, in the JSON error shape (one middleware: the webhook's path pays for one
    coroutine layer, not one per concern):

    - aiohttp's own HTTP errors (404, 405) keep their status;
    - any unexpected exception is a JSON 500 without traceback or exception text (either could carry a secret),
      logged at ERROR with the traceback and counted by route; never aiohttp's plain-text 500;
    - after a 408 the rest of the body is still on its way. aiohttp would linger reading it (up to its
      ``lingering_time``, 10 s) before closing, which is what a trickling client wants: send the answer, then
      close."""
    try:
        response = await handler(request)
        if response.status == 408 and isinstance(response, web.Response):
            await response.prepare(request)
            await response.write_eof()  # aiohttp's own prepare/write_eof after the handler are then no-ops
            request.protocol.force_close()  # the transport flushes the answer before it closes
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason.lower().replace(" ", "_")
        return json_response({"error": reason, "message": exc.text or exc.reason}, exc.status)
    except Exception:
        route = _route(request)
        log.exception("internal error in %s %s (%s)", request.method, route, request.path)
        services = request.app[RUNTIME].services
        if services is not None:
            services.metrics.internal_errors.labels(route).inc()
        message = "an unexpected error occurred; it was logged (canary_responder_http_internal_errors_total)"
        return json_response({"error": "internal", "message": message}, 500)


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

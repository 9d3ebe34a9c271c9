"""The OpenAPI 3.1 description of the whole HTTP API, served without credentials at ``GET /api/v1/openapi.json``.

Request bodies come from the pydantic models that validate them (their JSON Schema is draft 2020-12, which is
what OpenAPI 3.1 speaks), so the document cannot drift from what the handlers accept; responses are written out
here. ``tests/integration/test_openapi.py`` keeps it true: every registered route is described (and nothing
else), and schemathesis drives the live application with it, checking status codes, content types and bodies.
"""

from __future__ import annotations

import functools

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from responder import __version__
from responder.core.webhook import WebhookNotification
from responder.http.admin import OverrideBody, PauseBody, ReplayBody, RestoreBody
from responder.http.gates import FlaggerCall
from responder.http.openapi_parts import (
    INVALID_BODY,
    JSON,
    MALFORMED,
    UNAVAILABLE,
    body,
    error,
    json_of,
    operation,
    path_param,
    query,
    ref,
)
from responder.http.openapi_schemas import (
    ADMIN_AUTH,
    NO_AUTH,
    READ_AUTH,
    RESPONSE_SCHEMAS,
    SECURITY_SCHEMES,
    WEBHOOK_AUTH,
    Schema,
)
from responder.http.openapi_targets import target_paths

PATH = "/api/v1/openapi.json"


def _model_schemas(models: list[type[BaseModel]]) -> dict[str, Schema]:
    """The request models' JSON Schemas (draft 2020-12, as OpenAPI 3.1 uses), their references into components."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    definitions: dict[str, Schema] = top.get("$defs", {})
    return definitions


# -- paths --


def _webhook_paths() -> Schema:
    post = operation(
        "Receive an Alertmanager notification (webhook v4)",
        operation_id="receiveAlerts",
        tag="webhook",
        security=WEBHOOK_AUTH,
        description="Answers 200 once the notification and its events are durable; never calls Kubernetes. "
        "Alertmanager retries 5xx but never 4xx. `startsAt` and `endsAt` must lie between 1970-01-01T00:00:00Z and "
        "2262-04-11T23:47:16Z (what an int64 of nanoseconds holds; `endsAt` may also be 0001-01-01T00:00:00Z, "
        "still firing) and `truncatedAlerts` between 0 and 2^63-1, else 422 naming the field.",
        requestBody=body(ref("WebhookNotification")),
        responses={
            "200": json_of(ref("Accepted"), "Stored durably; decisions follow asynchronously."),
            "400": MALFORMED,
            "403": error("The admin or read token: known credentials, but not the webhook's (`forbidden`)."),
            "413": error("The body exceeds `listen.body_limit_bytes` (`too_large`, with `limit`)."),
            "415": error("Content-Type is not application/json (`unsupported_media_type`)."),
            "422": INVALID_BODY,
            "503": UNAVAILABLE,
        },
    )
    return {"/api/v1/alerts": {"post": post}}


def _probe_paths() -> Schema:
    healthz = operation(
        "Liveness",
        operation_id="healthz",
        tag="probes",
        security=NO_AUTH,
        responses={"200": json_of(ref("Health"), "The process serves HTTP.")},
    )
    readyz = operation(
        "Readiness: the inbox is writable (a real write), the Kubernetes API answers, this replica leads",
        operation_id="readyz",
        tag="probes",
        security=NO_AUTH,
        responses={
            "200": json_of(ref("Readiness"), "Ready."),
            "503": json_of(
                {"anyOf": [ref("Readiness"), ref("Error")]}, "Not ready (which check fails), or starting up."
            ),
        },
    )
    metrics = operation(
        "Prometheus metrics",
        operation_id="metrics",
        tag="probes",
        security=NO_AUTH,
        responses={
            "200": {
                "description": "The Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "503": UNAVAILABLE,
        },
    )
    openapi = operation(
        "This document",
        operation_id="openapi",
        tag="probes",
        security=NO_AUTH,
        responses={"200": json_of(ref("OpenAPI"), "The OpenAPI 3.1 document.")},
    )
    return {
        "/healthz": {"get": healthz},
        "/readyz": {"get": readyz},
        "/metrics": {"get": metrics},
        PATH: {"get": openapi},
    }


def _control_paths() -> Schema:
    status = operation(
        "Version, dry-run, pause state, leadership, engine backlog and the audit chain head",
        operation_id="status",
        tag="operator",
        security=READ_AUTH,
        responses={"200": json_of(ref("Status"), "The responder's state."), "503": UNAVAILABLE},
    )

    def pausing(summary: str, operation_id: str) -> Schema:
        return operation(
            summary,
            operation_id=operation_id,
            tag="operator",
            security=ADMIN_AUTH,
            description="Durable (survives restarts) and audited with its actor. The body is optional.",
            requestBody=body(ref("PauseBody"), required=False),
            responses={
                "200": json_of(ref("PauseState"), "The new state."),
                "400": MALFORMED,
                "422": INVALID_BODY,
                "503": UNAVAILABLE,
            },
        )

    return {
        "/api/v1/status": {"get": status},
        "/api/v1/pause": {"post": pausing("Pause: every decision is recorded as held, nothing executed", "pause")},
        "/api/v1/resume": {"post": pausing("Resume acting on decisions", "resume")},
    }


def _audit_paths() -> Schema:
    listing = operation(
        "Audit entries, oldest first, filtered and paginated",
        operation_id="auditList",
        tag="audit",
        security=READ_AUTH,
        parameters=[
            query("target", {"type": "string", "maxLength": 300}, "namespace/deployment"),
            query("kind", {"type": "string", "maxLength": 64}, "receipt, alert, decision, action, ..."),
            query("since", {"type": "string", "format": "date-time"}, "RFC 3339 with an offset"),
            query("until", {"type": "string", "format": "date-time"}, "RFC 3339 with an offset"),
            query("after", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "only entries with a greater seq"),
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "page size"),
        ],
        responses={
            "200": json_of(ref("AuditPage"), "A page of entries."),
            "400": error("Invalid or unknown query parameters (`invalid_query`, with `errors`)."),
            "503": UNAVAILABLE,
        },
    )
    verify = operation(
        "Recompute the whole audit chain",
        operation_id="auditVerify",
        tag="audit",
        security=READ_AUTH,
        parameters=[
            query(
                "expect_head",
                {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                "a head seen earlier (status, metrics, logs): 409 if it is no longer in the chain (truncated tail)",
            ),
            query(
                "expect_length",
                {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                "409 if the chain has fewer entries (with expect_head: if entry expect_length is not that head)",
            ),
        ],
        responses={
            "200": json_of(ref("VerifyReport"), "The chain is intact (and holds the expected head)."),
            "400": error("Invalid or unknown query parameters (`invalid_query`, with `errors`)."),
            "409": json_of(
                ref("VerifyReport"),
                "Entries were modified, deleted or reordered, or the expected head is gone (`problems`).",
            ),
            "503": UNAVAILABLE,
        },
    )
    entry = operation(
        "One audit entry",
        operation_id="auditEntry",
        tag="audit",
        security=READ_AUTH,
        parameters=[
            path_param("seq", {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}, "the entry's sequence number")
        ],
        responses={
            "200": json_of(ref("AuditEntry"), "The entry."),
            "400": error("Not a positive integer (`invalid_seq`)."),
            "404": error("No such entry (`not_found`)."),
            "503": UNAVAILABLE,
        },
    )
    return {
        "/api/v1/audit": {"get": listing},
        "/api/v1/audit/verify": {"get": verify},
        "/api/v1/audit/{seq}": {"get": entry},
    }


def _markdown_or_json(schema: Schema, description: str) -> Schema:
    return {
        "description": description + " Markdown with `Accept: text/markdown`.",
        "content": {JSON: {"schema": schema}, "text/markdown": {"schema": {"type": "string"}}},
    }


def _incident_paths() -> Schema:
    accept = {
        "name": "Accept",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "`text/markdown` for the Markdown report, else JSON",
    }
    listing = operation(
        "Recent incidents, newest first",
        operation_id="incidentList",
        tag="incidents",
        security=READ_AUTH,
        parameters=[
            query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "how many"),
            accept,
        ],
        responses={
            "200": _markdown_or_json(ref("IncidentList"), "The incidents."),
            "400": error("`limit` is not an integer from 1 to 1000 (`bad_request`)."),
            "503": UNAVAILABLE,
        },
    )
    report = operation(
        "One incident's report",
        operation_id="incidentReport",
        tag="incidents",
        security=READ_AUTH,
        description="A `.md` suffix on the id also selects Markdown.",
        parameters=[path_param("incident", {"type": "string", "minLength": 1}, "the incident id"), accept],
        responses={
            "200": _markdown_or_json(ref("IncidentReport"), "The post-rollback report."),
            "404": error("No such incident (`not_found`)."),
            "503": UNAVAILABLE,
        },
    )
    return {"/api/v1/incidents": {"get": listing}, "/api/v1/incidents/{incident}": {"get": report}}


def document() -> Schema:
    """The whole OpenAPI 3.1 document (a fresh copy each call)."""
    schemas = {
        **_model_schemas([WebhookNotification, PauseBody, ReplayBody, RestoreBody, OverrideBody, FlaggerCall]),
        **RESPONSE_SCHEMAS,
    }
    paths: Schema = {
        **_webhook_paths(),
        **_probe_paths(),
        **_control_paths(),
        **target_paths(),
        **_audit_paths(),
        **_incident_paths(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "canary-responder",
            "version": __version__,
            "description": "Alertmanager webhooks in, canary rollback out; the operator API and the audit log. "
            'Every error body is `{"error": <code>, "message": <text>, ...}`.',
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
    }


@functools.cache
def _serialized() -> bytes:
    return orjson.dumps(document())


async def serve_openapi(request: web.Request) -> web.Response:
    return web.Response(body=_serialized(), content_type=JSON)


def add_openapi_route(app: web.Application) -> None:
    app.router.add_get(PATH, serve_openapi)

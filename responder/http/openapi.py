"""The OpenAPI 3.1 description of the whole HTTP API, served without credentials at ``GET /api/v1/openapi.json``.

Request bodies come from the pydantic models that validate them (their JSON Schema is draft 2020-12, which is
what OpenAPI 3.1 speaks), so the document cannot drift from what the handlers accept; responses are written out
here. ``tests/integration/test_openapi.py`` keeps it true: every registered route is described (and nothing
else), and schemathesis drives the live application with it, checking status codes, content types and bodies.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from responder import __version__
from responder.core.webhook import WebhookNotification
from responder.http.admin import PauseBody, ReplayBody, RestoreBody
from responder.http.openapi_schemas import (
    ADMIN_AUTH,
    NO_AUTH,
    READ_AUTH,
    RESPONSE_SCHEMAS,
    SECURITY_SCHEMES,
    WEBHOOK_AUTH,
    Schema,
)

PATH = "/api/v1/openapi.json"
JSON = "application/json"


# -- building blocks --


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str, *, headers: Schema | None = None) -> Schema:
    response = _json(_ref("Error"), description)
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
_CHALLENGE = {"WWW-Authenticate": {"schema": {"type": "string"}}}
UNAUTHORIZED = _error("No or unknown credentials (`unauthorized`).", headers=_CHALLENGE)
FORBIDDEN = _error("Known credentials without the right role (`forbidden`).")
UNAVAILABLE = _error(
    "Not ready: starting up, the database cannot be written, the engine is saturated, or (several replicas) no "
    "replica leads right now for an operator request that acts (`no_leader`, `not_leader`: forwarded to the leader "
    "otherwise). `Retry-After` is set for the webhook and the operator API.",
    headers=_RETRY_AFTER,
)
MALFORMED = _error("The body is not valid JSON (`malformed_json`).")
TOO_SLOW = _error("The body did not arrive within `listen.body_timeout` (`body_timeout`); the connection is closed.")
INTERNAL = _error(
    "An unexpected error (`internal`; the message carries no detail): logged with its traceback and counted in "
    "`canary_responder_http_internal_errors_total{route}`."
)
INVALID_BODY = _error("The body does not match its schema (`schema`, with `errors: [{path, message}]`).")


def _operation(
    summary: str,
    *,
    operation_id: str,
    tag: str,
    security: list[dict[str, list[str]]],
    responses: dict[str, Schema],
    description: str = "",
    **extra: Any,
) -> Schema:
    operation: Schema = {"summary": summary, "operationId": operation_id, "tags": [tag], "security": security}
    if description:
        operation["description"] = description
    operation.update(extra)
    if "requestBody" in extra:  # every route that reads a body: the size limit and the body timeout
        responses = {"408": TOO_SLOW, "413": _error("The body exceeds `listen.body_limit_bytes`."), **responses}
    if security:
        responses = {"401": UNAUTHORIZED, "403": FORBIDDEN, **responses}
    responses = {"500": INTERNAL, **responses}  # any route (web.internal_errors)
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path_param(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _model_schemas(models: list[type[BaseModel]]) -> dict[str, Schema]:
    """The request models' JSON Schemas (draft 2020-12, as OpenAPI 3.1 uses), their references into components."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    definitions: dict[str, Schema] = top.get("$defs", {})
    return definitions


# -- paths --


def _webhook_paths() -> Schema:
    post = _operation(
        "Receive an Alertmanager notification (webhook v4)",
        operation_id="receiveAlerts",
        tag="webhook",
        security=WEBHOOK_AUTH,
        description="Answers 200 once the notification and its events are durable; never calls Kubernetes. "
        "Alertmanager retries 5xx but never 4xx. `startsAt` and `endsAt` must lie between 1970-01-01T00:00:00Z and "
        "2262-04-11T23:47:16Z (what an int64 of nanoseconds holds; `endsAt` may also be 0001-01-01T00:00:00Z, "
        "still firing) and `truncatedAlerts` between 0 and 2^63-1, else 422 naming the field.",
        requestBody=_body(_ref("WebhookNotification")),
        responses={
            "200": _json(_ref("Accepted"), "Stored durably; decisions follow asynchronously."),
            "400": MALFORMED,
            "403": _error("The admin or read token: known credentials, but not the webhook's (`forbidden`)."),
            "413": _error("The body exceeds `listen.body_limit_bytes` (`too_large`, with `limit`)."),
            "415": _error("Content-Type is not application/json (`unsupported_media_type`)."),
            "422": INVALID_BODY,
            "503": UNAVAILABLE,
        },
    )
    return {"/api/v1/alerts": {"post": post}}


def _probe_paths() -> Schema:
    healthz = _operation(
        "Liveness",
        operation_id="healthz",
        tag="probes",
        security=NO_AUTH,
        responses={"200": _json(_ref("Health"), "The process serves HTTP.")},
    )
    readyz = _operation(
        "Readiness: the inbox is writable (a real write), the Kubernetes API answers, this replica leads",
        operation_id="readyz",
        tag="probes",
        security=NO_AUTH,
        responses={
            "200": _json(_ref("Readiness"), "Ready."),
            "503": _json(
                {"anyOf": [_ref("Readiness"), _ref("Error")]}, "Not ready (which check fails), or starting up."
            ),
        },
    )
    metrics = _operation(
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
    openapi = _operation(
        "This document",
        operation_id="openapi",
        tag="probes",
        security=NO_AUTH,
        responses={"200": _json(_ref("OpenAPI"), "The OpenAPI 3.1 document.")},
    )
    return {
        "/healthz": {"get": healthz},
        "/readyz": {"get": readyz},
        "/metrics": {"get": metrics},
        PATH: {"get": openapi},
    }


def _control_paths() -> Schema:
    status = _operation(
        "Version, dry-run, pause state, leadership, engine backlog and the audit chain head",
        operation_id="status",
        tag="operator",
        security=READ_AUTH,
        responses={"200": _json(_ref("Status"), "The responder's state."), "503": UNAVAILABLE},
    )

    def pausing(summary: str, operation_id: str) -> Schema:
        return _operation(
            summary,
            operation_id=operation_id,
            tag="operator",
            security=ADMIN_AUTH,
            description="Durable (survives restarts) and audited with its actor. The body is optional.",
            requestBody=_body(_ref("PauseBody"), required=False),
            responses={
                "200": _json(_ref("PauseState"), "The new state."),
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


def _replay_paths() -> Schema:
    replay = _operation(
        "Replay a stored notification or a raw Alertmanager payload",
        operation_id="replay",
        tag="operator",
        security=ADMIN_AUTH,
        description="Give exactly one of `notification_id` and `payload` (else 422). `dry_run` (the default) "
        "returns the decisions and the plan without executing; `force` bypasses dedupe and cooldown, never the "
        "safety checks. Audited with its actor.",
        requestBody=_body(_ref("ReplayBody"), required=False),
        responses={
            "200": _json(_ref("ReplayResult"), "The decisions (and, executed or not, the plan)."),
            "400": MALFORMED,
            "404": _error("No stored notification with that id (`not_found`)."),
            "422": INVALID_BODY,
            "503": UNAVAILABLE,
            "504": _error("Executed: stored, but not decided in time (`timeout`)."),
        },
    )
    restore = _operation(
        "Undo the last rollback of a canary: scale back, then traffic back",
        operation_id="restore",
        tag="operator",
        security=ADMIN_AUTH,
        description="Puts back the recorded pre-rollback replica count and canary annotations; refused when the "
        "live objects changed since (someone deployed a new canary). Audited and notified.",
        parameters=[
            _path_param(
                "namespace",
                {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "a Kubernetes namespace (DNS label) in `safety.allowed_namespaces`",
            ),
            _path_param(
                "deployment",
                {
                    "type": "string",
                    "maxLength": 253,
                    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                },
                "the canary Deployment (DNS subdomain)",
            ),
        ],
        requestBody=_body(_ref("RestoreBody"), required=False),
        responses={
            "200": _json(_ref("RestoreResult"), "Restored, or what would be done (`dry_run`)."),
            "400": _error(
                "Malformed JSON (`malformed_json`), a path parameter that is not a Kubernetes name (`invalid_name`), "
                "or a `cluster` the configuration does not know (`unknown_cluster`)."
            ),
            "403": _error(
                "Not the admin role (`forbidden`) or the namespace is not allowed (`namespace_not_allowed`)."
            ),
            "404": _json(
                {"anyOf": [_ref("RestoreResult"), _ref("Error")]},
                "Nothing to restore (a RestoreResult with reason `nothing_to_restore`), or no such route.",
            ),
            "409": _json(_ref("RestoreResult"), "Refused: the live objects changed since the rollback."),
            "422": INVALID_BODY,
            "502": _json(_ref("RestoreResult"), "The Kubernetes API refused or failed a step: manual action."),
            "503": UNAVAILABLE,
        },
    )
    return {
        "/api/v1/replay": {"post": replay},
        "/api/v1/targets/{namespace}/{deployment}/restore": {"post": restore},
    }


def _audit_paths() -> Schema:
    listing = _operation(
        "Audit entries, oldest first, filtered and paginated",
        operation_id="auditList",
        tag="audit",
        security=READ_AUTH,
        parameters=[
            _query("target", {"type": "string", "maxLength": 300}, "namespace/deployment"),
            _query("kind", {"type": "string", "maxLength": 64}, "receipt, alert, decision, action, ..."),
            _query("since", {"type": "string", "format": "date-time"}, "RFC 3339 with an offset"),
            _query("until", {"type": "string", "format": "date-time"}, "RFC 3339 with an offset"),
            _query("after", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, "only entries with a greater seq"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "page size"),
        ],
        responses={
            "200": _json(_ref("AuditPage"), "A page of entries."),
            "400": _error("Invalid or unknown query parameters (`invalid_query`, with `errors`)."),
            "503": UNAVAILABLE,
        },
    )
    verify = _operation(
        "Recompute the whole audit chain",
        operation_id="auditVerify",
        tag="audit",
        security=READ_AUTH,
        parameters=[
            _query(
                "expect_head",
                {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                "a head seen earlier (status, metrics, logs): 409 if it is no longer in the chain (truncated tail)",
            ),
            _query(
                "expect_length",
                {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                "409 if the chain has fewer entries (with expect_head: if entry expect_length is not that head)",
            ),
        ],
        responses={
            "200": _json(_ref("VerifyReport"), "The chain is intact (and holds the expected head)."),
            "400": _error("Invalid or unknown query parameters (`invalid_query`, with `errors`)."),
            "409": _json(
                _ref("VerifyReport"),
                "Entries were modified, deleted or reordered, or the expected head is gone (`problems`).",
            ),
            "503": UNAVAILABLE,
        },
    )
    entry = _operation(
        "One audit entry",
        operation_id="auditEntry",
        tag="audit",
        security=READ_AUTH,
        parameters=[
            _path_param("seq", {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}, "the entry's sequence number")
        ],
        responses={
            "200": _json(_ref("AuditEntry"), "The entry."),
            "400": _error("Not a positive integer (`invalid_seq`)."),
            "404": _error("No such entry (`not_found`)."),
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
    listing = _operation(
        "Recent incidents, newest first",
        operation_id="incidentList",
        tag="incidents",
        security=READ_AUTH,
        parameters=[
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "how many"),
            accept,
        ],
        responses={
            "200": _markdown_or_json(_ref("IncidentList"), "The incidents."),
            "400": _error("`limit` is not an integer from 1 to 1000 (`bad_request`)."),
            "503": UNAVAILABLE,
        },
    )
    report = _operation(
        "One incident's report",
        operation_id="incidentReport",
        tag="incidents",
        security=READ_AUTH,
        description="A `.md` suffix on the id also selects Markdown.",
        parameters=[_path_param("incident", {"type": "string", "minLength": 1}, "the incident id"), accept],
        responses={
            "200": _markdown_or_json(_ref("IncidentReport"), "The post-rollback report."),
            "404": _error("No such incident (`not_found`)."),
            "503": UNAVAILABLE,
        },
    )
    return {"/api/v1/incidents": {"get": listing}, "/api/v1/incidents/{incident}": {"get": report}}


def document() -> Schema:
    """The whole OpenAPI 3.1 document (a fresh copy each call)."""
    schemas = {**_model_schemas([WebhookNotification, PauseBody, ReplayBody, RestoreBody]), **RESPONSE_SCHEMAS}
    paths: Schema = {
        **_webhook_paths(),
        **_probe_paths(),
        **_control_paths(),
        **_replay_paths(),
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

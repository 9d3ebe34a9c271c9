"""The building blocks of the OpenAPI document (responder.http.openapi): references, responses, operations."""

from __future__ import annotations

from typing import Any

from responder.http.openapi_schemas import Schema

JSON = "application/json"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_of(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error(description: str, *, headers: Schema | None = None) -> Schema:
    response = json_of(ref("Error"), description)
    if headers:
        response["headers"] = headers
    return response


RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
CHALLENGE = {"WWW-Authenticate": {"schema": {"type": "string"}}}
UNAUTHORIZED = error("No or unknown credentials (`unauthorized`).", headers=CHALLENGE)
FORBIDDEN = error("Known credentials without the right role (`forbidden`).")
UNAVAILABLE = error(
    "Not ready: starting up, the database cannot be written, the engine is saturated, or (several replicas) no "
    "replica leads right now for an operator request that acts (`no_leader`, `not_leader`: forwarded to the leader "
    "otherwise). `Retry-After` is set for the webhook and the operator API.",
    headers=RETRY_AFTER,
)
MALFORMED = error("The body is not valid JSON (`malformed_json`).")
TOO_SLOW = error("The body did not arrive within `listen.body_timeout` (`body_timeout`); the connection is closed.")
INTERNAL = error(
    "An unexpected error (`internal`; the message carries no detail): logged with its traceback and counted in "
    "`canary_responder_http_internal_errors_total{route}`."
)
INVALID_BODY = error("The body does not match its schema (`schema`, with `errors: [{path, message}]`).")


def operation(
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
        responses = {"408": TOO_SLOW, "413": error("The body exceeds `listen.body_limit_bytes`."), **responses}
    if security:
        responses = {"401": UNAUTHORIZED, "403": FORBIDDEN, **responses}
    responses = {"500": INTERNAL, **responses}  # any route (errors.http_errors)
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def path_param(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}

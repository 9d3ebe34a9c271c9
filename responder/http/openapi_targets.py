"""The OpenAPI operations on stored alerts and targets: replay, restore, and a rollback despite an unavailable
stable Deployment (part of responder.http.openapi)."""

from __future__ import annotations

from responder.http.openapi_parts import (
    INVALID_BODY,
    MALFORMED,
    UNAVAILABLE,
    body,
    error,
    json_of,
    operation,
    path_param,
    ref,
)
from responder.http.openapi_schemas import ADMIN_AUTH, GATE_AUTH, Schema


def target_paths() -> Schema:
    """Replay, restore, and a rollback despite an unavailable stable Deployment."""
    replay = operation(
        "Replay a stored notification or a raw Alertmanager payload",
        operation_id="replay",
        tag="operator",
        security=ADMIN_AUTH,
        description="Give exactly one of `notification_id` and `payload` (else 422). `dry_run` (the default) "
        "returns the decisions and the plan without executing; `force` bypasses dedupe and cooldown, never the "
        "safety checks. Audited with its actor.",
        requestBody=body(ref("ReplayBody"), required=False),
        responses={
            "200": json_of(ref("ReplayResult"), "The decisions (and, executed or not, the plan)."),
            "400": MALFORMED,
            "404": error("No stored notification with that id (`not_found`)."),
            "422": INVALID_BODY,
            "503": UNAVAILABLE,
            "504": error("Executed: stored, but not decided in time (`timeout`)."),
        },
    )
    restore = operation(
        "Undo the last rollback of a canary: scale back, then traffic back",
        operation_id="restore",
        tag="operator",
        security=ADMIN_AUTH,
        description="Puts back the recorded pre-rollback replica count and canary annotations; refused when the "
        "live objects changed since (someone deployed a new canary). Audited and notified.",
        parameters=[
            path_param(
                "namespace",
                {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "a Kubernetes namespace (DNS label) in `safety.allowed_namespaces`",
            ),
            path_param(
                "deployment",
                {
                    "type": "string",
                    "maxLength": 253,
                    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                },
                "the canary Deployment (DNS subdomain)",
            ),
        ],
        requestBody=body(ref("RestoreBody"), required=False),
        responses={
            "200": json_of(ref("RestoreResult"), "Restored, or what would be done (`dry_run`)."),
            "400": error(
                "Malformed JSON (`malformed_json`), a path parameter that is not a Kubernetes name (`invalid_name`), "
                "or a `cluster` the configuration does not know (`unknown_cluster`)."
            ),
            "403": error("Not the admin role (`forbidden`) or the namespace is not allowed (`namespace_not_allowed`)."),
            "404": json_of(
                {"anyOf": [ref("RestoreResult"), ref("Error")]},
                "Nothing to restore (a RestoreResult with reason `nothing_to_restore`), or no such route.",
            ),
            "409": json_of(ref("RestoreResult"), "Refused: the live objects changed since the rollback."),
            "422": INVALID_BODY,
            "502": json_of(ref("RestoreResult"), "The Kubernetes API refused or failed a step: manual action."),
            "503": UNAVAILABLE,
        },
    )
    override = operation(
        "Roll back a canary although its stable Deployment has no ready replica",
        operation_id="rollbackDespiteStable",
        tag="operator",
        security=ADMIN_AUTH,
        description="The stable-health guard holds a rollback (status `held`) while the stable Deployment has no "
        "ready replica: cutting canary traffic would send it nowhere. This runs that held rollback now anyway (a "
        "human's call), audited as `rollback.override`.",
        parameters=restore["parameters"],
        requestBody=body(ref("OverrideBody")),
        responses={
            "200": json_of(ref("OverrideResult"), "The held rollback ran; its status and steps."),
            "400": error("Malformed JSON, a path parameter that is not a Kubernetes name, or an unknown cluster."),
            "404": error("No rollback of the target is held for an unavailable stable (`nothing_held`)."),
            "422": INVALID_BODY,
            "503": UNAVAILABLE,
        },
    )
    gate = operation(
        "Flagger's rollback webhook: should this canary be rolled back now?",
        operation_id="flaggerRollbackGate",
        tag="gates",
        security=GATE_AUTH,
        description="Flagger calls its Canary's `type: rollback` webhooks at each analysis interval and rolls back on "
        "a status up to 202. 200 exactly when the responder decided to roll this canary back (a `delegate: flagger` "
        "target), not since restored, not paused, for the same revision (`checksum`); else 409 with the reason. "
        "The gate token comes as a Bearer header or as `metadata.token` (Flagger webhooks cannot send headers); "
        "`?cluster=` names the cluster when several are configured.",
        requestBody=body(ref("FlaggerCall")),
        responses={
            "200": json_of({"type": "object", "required": ["rollback"]}, "Roll back (`rollback: true`)."),
            "400": MALFORMED,
            "401": error("No gate token (`unauthorized`)."),
            "403": error("A wrong gate token (`forbidden`)."),
            "404": error("The gate is off: no `auth.gate_token` configured (`gate_off`)."),
            "409": json_of({"type": "object", "required": ["rollback", "reason"]}, "Do not roll back, and why."),
            "422": INVALID_BODY,
            "503": UNAVAILABLE,
        },
    )
    return {
        "/api/v1/gates/flagger/rollback": {"post": gate},
        "/api/v1/replay": {"post": replay},
        "/api/v1/targets/{namespace}/{deployment}/restore": {"post": restore},
        "/api/v1/targets/{namespace}/{deployment}/rollback": {"post": override},
    }

"""The fixed parts of the OpenAPI document: security schemes and the response schemas the handlers answer with
(request bodies come from the pydantic models, in :mod:`responder.http.openapi`)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

WEBHOOK_AUTH: list[dict[str, list[str]]] = [{"webhookBearer": []}, {"webhookBasic": []}]
READ_AUTH: list[dict[str, list[str]]] = [{"adminBearer": []}, {"readBearer": []}]
ADMIN_AUTH: list[dict[str, list[str]]] = [{"adminBearer": []}]
GATE_AUTH: list[dict[str, list[str]]] = [{"gateBearer": []}]
NO_AUTH: list[dict[str, list[str]]] = []

SECURITY_SCHEMES: Schema = {
    "webhookBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Webhook role: one of the configured webhook bearer tokens (two at once during rotation). "
        "May only post alerts (403 elsewhere).",
    },
    "webhookBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "Webhook role through basic auth (Alertmanager's `basic_auth`), when configured.",
    },
    "adminBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Admin role: the admin token; may read and mutate (pause, resume, replay, restore).",
    },
    "readBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Read role: the optional read-only token; status, audit and incidents (403 on mutations).",
    },
    "gateBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Gate role: `auth.gate_token`, which Flagger's rollback webhook presents (as a Bearer header "
        "or as `metadata.token` in the payload). May only ask the rollback gate (403 elsewhere).",
    },
}

# -- response schemas --

ERROR: Schema = {
    "type": "object",
    "description": "Every error: a stable code, a human message, and sometimes more fields.",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "limit": {"type": "integer"},
    },
    "additionalProperties": True,
}
_ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}

RESPONSE_SCHEMAS: dict[str, Schema] = {
    "Error": ERROR,
    "Accepted": {
        "type": "object",
        "required": ["status", "notification_id", "events"],
        "properties": {
            "status": {"const": "accepted"},
            "notification_id": {"type": "integer", "description": "the stored notification (repeated, for a repeat)"},
            "events": {"type": "integer", "minimum": 0, "description": "alerts stored for deciding (0 for a repeat)"},
            "repeat": {
                "const": True,
                "description": "a byte-for-byte repeat of a stored notification whose alerts were all decided:"
                " recorded in a receipt.repeats audit entry, every alert DUPLICATE",
            },
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Readiness": {
        "type": "object",
        "required": ["ready", "checks"],
        "properties": {
            "ready": {"type": "boolean"},
            "checks": {
                "type": "object",
                "required": ["inbox", "kubernetes"],
                "additionalProperties": {"type": "string"},
                "description": '"ok" or why not; "replica" appears when this replica should take no traffic'
                " (shutting down, a duplicate leader_election.identity)",
            },
        },
    },
    "PauseState": {
        "type": "object",
        "required": ["paused"],
        "properties": {
            "paused": {"type": "boolean"},
            "actor": {"type": "string"},
            "reason": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
        },
    },
    "Status": {
        "type": "object",
        "required": ["version", "dry_run", "paused", "leader", "backlog", "audit"],
        "properties": {
            "version": {"type": "string"},
            "dry_run": {"type": "boolean"},
            "paused": {"$ref": "#/components/schemas/PauseState"},
            "leader": {"type": "boolean", "description": "whether this replica decides and acts now"},
            "leadership": {
                "type": "object",
                "required": ["mode", "leader"],
                "description": "single (one replica) or replicated (several on the shared store): the Lease holder,"
                " this replica's identity, instance and term, and the replicas seen in the registry",
                "properties": {
                    "mode": {"enum": ["single", "replicated"]},
                    "leader": {"type": "boolean"},
                    "identity": {"type": "string"},
                    "instance": {"type": "string"},
                    "holder": {"type": ["string", "null"]},
                    "term": {"type": ["integer", "null"]},
                    "replicas": {"type": "array", "items": {"type": "object"}},
                },
            },
            "backlog": {"type": "integer", "minimum": 0},
            "audit": {
                "type": "object",
                "required": ["length", "head"],
                "properties": {"length": {"type": "integer"}, "head": {"type": "string"}},
            },
        },
    },
    "Decision": {
        "type": "object",
        "required": ["alertname", "fingerprint", "status", "outcome", "reason", "policy", "target", "incident"],
        "properties": {
            "alertname": {"type": "string"},
            "fingerprint": {"type": "string"},
            "status": {"enum": ["firing", "resolved"]},
            "outcome": {"type": "string"},
            "reason": {"type": "string"},
            "policy": _NULLABLE_STRING,
            "target": _NULLABLE_STRING,
            "incident": _NULLABLE_STRING,
            "deadline": _NULLABLE_STRING,
        },
    },
    "ReplayResult": {
        "type": "object",
        "required": ["dry_run", "force", "source", "actor", "decisions", "plan"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "force": {"type": "boolean"},
            "source": _ANY_OBJECT,
            "actor": {"type": "string"},
            "notification_id": {"type": "integer", "description": "only when executed (dry_run false)"},
            "decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}},
            "plan": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["target", "incident", "steps"],
                    "properties": {
                        "target": {"type": "string"},
                        "incident": _NULLABLE_STRING,
                        "steps": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "OverrideResult": {
        "type": "object",
        "required": ["target", "incident", "status", "steps"],
        "properties": {
            "target": {"type": "string"},
            "incident": {"type": "string"},
            "status": {"type": "string", "description": "the rollback's status after it ran (done, partial, ...)"},
            "steps": {"type": "array", "items": {"type": "object"}},
        },
    },
    "RestoreResult": {
        "type": "object",
        "required": ["target", "incident", "status", "reason", "message", "steps"],
        "properties": {
            "target": {"type": "string"},
            "incident": _NULLABLE_STRING,
            "status": {"enum": ["restored", "dry_run", "refused", "failed"]},
            "reason": _NULLABLE_STRING,
            "message": {"type": "string"},
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["step", "result"],
                    "properties": {
                        "step": {"type": "string"},
                        "result": {"type": "string"},
                        "before": {},
                        "after": {},
                        "reason": _NULLABLE_STRING,
                        "message": {"type": "string"},
                    },
                },
            },
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["seq", "ts", "kind", "target", "actor", "data", "prev", "hash"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "ts": {"type": "string"},
            "kind": {"type": "string"},
            "target": _NULLABLE_STRING,
            "actor": {"type": "string"},
            "data": _ANY_OBJECT,
            "prev": {"type": "string"},
            "hash": {"type": "string"},
        },
    },
    "AuditPage": {
        "type": "object",
        "required": ["entries", "next_after"],
        "properties": {
            "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
            "next_after": {"type": ["integer", "null"], "description": "pass as `after` for the next page"},
        },
    },
    "VerifyReport": {
        "type": "object",
        "required": ["ok", "length", "head", "problems"],
        "properties": {
            "ok": {"type": "boolean"},
            "length": {"type": "integer", "minimum": 0},
            "head": {"type": "string"},
            "problems": {"type": "array", "items": {"type": "string"}},
        },
    },
    "IncidentSummary": {
        "type": "object",
        "required": ["id", "kind", "status", "target", "date", "headline", "url"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "status": {"type": "string"},
            "target": _NULLABLE_STRING,
            "date": {"type": "string"},
            "headline": {"type": "string"},
            "url": _NULLABLE_STRING,
            "page_url": {
                "type": "string",
                "description": "With incident_pages configured: the signed link to the incident's HTML page.",
            },
        },
    },
    "IncidentList": {
        "type": "object",
        "required": ["incidents"],
        "properties": {
            "incidents": {"type": "array", "items": {"$ref": "#/components/schemas/IncidentSummary"}},
            "list_page_url": {
                "type": "string",
                "description": "With incident_pages configured: a signed link to the HTML list of incidents.",
            },
        },
    },
    "IncidentReport": {
        "type": "object",
        "description": "The post-rollback report (the canary guide's template) as JSON.",
        "required": ["id", "kind", "status", "headline", "date", "alerts", "actions", "checklist"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "status": {"type": "string"},
            "headline": {"type": "string"},
            "verdict": {"type": "string"},
            "date": {"type": "string"},
            "target": _NULLABLE_STRING,
            "alerts": {"type": "array", "items": _ANY_OBJECT},
            "metrics": _ANY_OBJECT,
            "actions": {
                "type": "array",
                "items": _ANY_OBJECT,
                "description": "Each step: result, timing, before/after and `details` (its message, then each"
                " changed value as `path: before → after`). The `evidence` step's `after` holds the captured pods"
                " (docs/evidence.md).",
            },
            "undone": {
                "type": "array",
                "items": _ANY_OBJECT,
                "description": "After a restore: its steps, in the shape of `actions`, kept beside what was done.",
            },
            "stable": {
                **_ANY_OBJECT,
                "description": "Stable's ready/desired replicas when the rollback was decided and after it.",
            },
            "root_cause": {
                **_ANY_OBJECT,
                "description": "`to_fill_in` (a placeholder for people), `evidence_shows` (what the capture"
                " shows, e.g. '2 of 2 pods OOMKilled'), the evidence step's result and what is missing.",
            },
            "links": _ANY_OBJECT,
            "followups": {"type": "array", "items": _ANY_OBJECT},
            "checklist": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": True,
    },
    "OpenAPI": {"type": "object", "required": ["openapi", "info", "paths"], "additionalProperties": True},
}

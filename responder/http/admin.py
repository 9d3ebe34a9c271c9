"""The operator API: replay, restore, pause/resume, status and the audit log, over HTTP.

Roles come from the bearer token: the admin token may do everything; the optional read token may read (status,
audit, incidents); the webhook credentials may only post alerts. No or unknown credentials give 401, known ones
without the right give 403 (the roles themselves live in responder.http.server, which the webhook shares). Every
mutating call is audited with its actor. Bodies must arrive within ``listen.body_timeout`` (408) and are validated
with pydantic (422 naming the field, numbers bounded to what SQLite stores), path parameters must be Kubernetes
names (400).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from responder import __version__
from responder.config import Settings
from responder.core.decide import Decision
from responder.core.model import TargetRef, iso
from responder.core.rules import is_dns_label, is_dns_subdomain
from responder.core.webhook import Timestamp, WebhookNotification, to_event
from responder.engine import Saturated
from responder.engine.leadership import NotLeading
from responder.http.forward import to_leader
from responder.http.server import (
    RUNTIME,
    SETTINGS,
    Rejection,
    Role,
    caller_role,
    error_response,
    field_errors,
    json_response,
    read_body,
    record_rejection,
)
from responder.store import AuditEntry, StoreUnavailable


def require(request: web.Request, need: Role) -> None:
    role = caller_role(request)
    if role is None:
        raise Rejection(401, "unauthorized", "missing or invalid credentials")
    if role < need:
        raise Rejection(403, "forbidden", f"this endpoint needs the {need.name.lower()} token")


Actor = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9@._:+-]+$")]
Reason = Annotated[str, StringConstraints(max_length=500)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PauseBody(_Body):
    actor: Actor = "admin"
    reason: Reason = ""


SQLITE_INTEGER_MAX = 2**63 - 1


class ReplayBody(_Body):
    notification_id: Annotated[int, Field(ge=1, le=SQLITE_INTEGER_MAX)] | None = None
    payload: WebhookNotification | None = None
    dry_run: bool = True
    force: bool = False
    actor: Actor = "admin"


# A configured cluster's name, or "" (single cluster).
ClusterName = Annotated[str, StringConstraints(max_length=63, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$")]


class RestoreBody(_Body):
    dry_run: bool = False
    actor: Actor = "admin"
    # multi-cluster: which cluster's target (required when clusters are configured); a cluster name is a DNS label
    cluster: ClusterName = ""


async def _body(request: web.Request, model: type[_Body]) -> Any:
    raw = await read_body(request)
    try:
        document = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise Rejection(400, "malformed_json", f"request body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise Rejection(422, "schema", "the request body is not valid", errors=field_errors(exc)) from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(need: Role) -> Callable[[Handler], Handler]:
    """Decorator: authorization first, then the handler; Rejections become JSON errors."""

    def wrap(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                try:
                    require(request, need)
                    if need is Role.ADMIN and not request.app[RUNTIME].require().is_leader():
                        return await to_leader(request)  # acting is the leader's: any replica takes the request
                    return await handler(request)
                except NotLeading:  # deposed while handling it: nothing more was done here
                    raise Rejection(
                        503, "not_leader", "this replica stopped leading; retry (the leader takes it)"
                    ) from None
                except StoreUnavailable as exc:  # the database cannot be written or read now: retry later
                    raise Rejection(503, "store_unavailable", f"the database is unavailable: {exc}") from None
            except Rejection as rejection:
                await record_rejection(request, request.app[RUNTIME].require(), rejection)
                return error_response(rejection)

        return run

    return wrap


# -- status and pause --


@guarded(Role.READ)
async def status(request: web.Request) -> web.Response:
    services = request.app[RUNTIME].require()
    settings = request.app[SETTINGS]
    pause = await services.store.pause_state() or {"paused": False}
    return json_response(
        {
            "version": __version__,
            "dry_run": settings.dry_run,
            "paused": pause,
            "leader": services.is_leader(),
            "leadership": services.leadership.status(),
            "backlog": services.engine.backlog,
            "audit": {"length": services.store.chain_length, "head": services.store.chain_head},
        }
    )


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    body: PauseBody = await _body(request, PauseBody)
    state = (
        await request.app[RUNTIME]
        .require()
        .engine.operations.set_paused(paused=paused, actor=body.actor, reason=body.reason)
    )
    return json_response(state)


@guarded(Role.ADMIN)
async def pause(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


@guarded(Role.ADMIN)
async def resume(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


# -- replay --


@guarded(Role.ADMIN)
async def replay(request: web.Request) -> web.Response:
    body: ReplayBody = await _body(request, ReplayBody)
    services = request.app[RUNTIME].require()
    raw, notification, source = await _replay_source(services.store, body)
    events = [to_event(alert) for alert in notification.alerts]
    result: dict[str, Any] = {"dry_run": body.dry_run, "force": body.force, "source": source, "actor": body.actor}
    if body.dry_run:
        decisions = services.engine.operations.preview(events, force=body.force)
    else:
        meta = {
            "group_key": notification.groupKey,
            "receiver": notification.receiver,
            "external_url": notification.externalURL,
            "status": notification.status,
            "replay_of": source,
        }
        try:
            stored, decisions = await services.engine.operations.replay(
                raw, events, meta, force=body.force, actor=body.actor
            )
        except (Saturated, StoreUnavailable) as exc:
            raise Rejection(503, "unavailable", str(exc)) from None
        except TimeoutError:
            raise Rejection(504, "timeout", "the replayed alerts were stored but not decided in time") from None
        result["notification_id"] = stored[0].notification_id
    result["decisions"] = [_decision_json(d) for d in decisions]
    result["plan"] = [
        {"target": d.target.key, "incident": d.incident, "steps": services.engine.operations.plan(d.target)}
        for d in decisions
        if d.acts and d.target is not None
    ]
    audit = {k: v for k, v in result.items() if k != "plan"}
    await services.store.audit("replay", audit, actor=f"admin:{body.actor}")
    return json_response(result)


async def _replay_source(store: Any, body: ReplayBody) -> tuple[bytes, WebhookNotification, dict[str, Any]]:
    if (body.notification_id is None) == (body.payload is None):
        raise Rejection(
            422,
            "schema",
            "give exactly one of notification_id or payload",
            errors=[{"path": "(body)", "message": "exactly one of notification_id, payload"}],
        )
    if body.payload is not None:
        try:
            raw = orjson.dumps(body.payload.model_dump(mode="json"))
        except (TypeError, ValueError):  # unknown fields nested deeper than the serialisers go (orjson: 254)
            errors = [{"path": "payload", "message": "nested too deeply to replay"}]
            raise Rejection(422, "schema", "the payload is nested too deeply", errors=errors) from None
        return raw, body.payload, {"payload": True}
    raw = await store.raw_notification(body.notification_id)
    if raw is None:
        raise Rejection(404, "not_found", f"no stored notification {body.notification_id}")
    # parsed as the webhook parsed it: pydantic's own JSON parser refuses nesting the webhook accepted
    return raw, WebhookNotification.model_validate(orjson.loads(raw)), {"notification_id": body.notification_id}


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "alertname": decision.event.alertname,
        "fingerprint": decision.event.fingerprint,
        "status": decision.event.status.value,
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "policy": decision.policy,
        "target": decision.target.key if decision.target else None,
        "incident": decision.incident,
        "deadline": iso(decision.deadline) if decision.deadline else None,
    }


# -- restore --


def _check_restore_scope(settings: Settings, cluster: str, namespace: str) -> None:
    """The namespace must be allowed, in the named cluster when clusters are configured."""
    per_cluster = settings.cluster_namespaces()
    if per_cluster is None:
        if cluster:
            raise Rejection(400, "unknown_cluster", "no clusters are configured; leave 'cluster' out")
        allowed: frozenset[str] = frozenset(settings.safety.allowed_namespaces)
    elif cluster not in per_cluster:
        raise Rejection(400, "unknown_cluster", f"'cluster' must name a configured cluster, got {cluster!r}")
    else:
        allowed = per_cluster[cluster]
    if namespace not in allowed:
        raise Rejection(403, "namespace_not_allowed", f"namespace {namespace!r} is not in the allowlist")


def _target_names(request: web.Request) -> tuple[str, str]:
    """The path's namespace and Deployment name, both valid Kubernetes object names (else 400)."""
    namespace, deployment = request.match_info["namespace"], request.match_info["deployment"]
    if not is_dns_label(namespace) or not is_dns_subdomain(deployment):
        raise Rejection(400, "invalid_name", "namespace and deployment must be Kubernetes object names")
    return namespace, deployment


@guarded(Role.ADMIN)
async def restore(request: web.Request) -> web.Response:
    namespace, deployment = _target_names(request)
    body: RestoreBody = await _body(request, RestoreBody)
    services = request.app[RUNTIME].require()
    _check_restore_scope(request.app[SETTINGS], body.cluster, namespace)
    result = await services.engine.operations.restore(
        namespace, deployment, actor=f"admin:{body.actor}", dry_run=body.dry_run, cluster=body.cluster
    )
    payload = {
        "target": TargetRef(namespace, deployment, cluster=body.cluster).key,
        "incident": result.incident,
        "status": result.status,
        "reason": result.reason.value if result.reason else None,
        "message": result.message,
        "steps": [
            {
                "step": o.step.value,
                "result": o.result.value,
                "before": o.before,
                "after": o.after,
                "reason": o.reason.value if o.reason else None,
                "message": o.message,
            }
            for o in result.outcomes
        ],
    }
    status_code = {"restored": 200, "dry_run": 200, "refused": 409, "failed": 502}.get(result.status, 200)
    if result.incident is None:
        status_code = 404
    return json_response(payload, status_code)


class OverrideBody(_Body):
    despite_stable: bool  # must be true: says what the caller overrides
    actor: Actor = "admin"
    cluster: ClusterName = ""


@guarded(Role.ADMIN)
async def rollback_despite_stable(request: web.Request) -> web.Response:
    """Run a rollback HELD because the stable Deployment had no ready replica, acting anyway (a human's call)."""
    namespace, deployment = _target_names(request)
    body: OverrideBody = await _body(request, OverrideBody)
    if not body.despite_stable:
        raise Rejection(422, "schema", 'say what you override: {"despite_stable": true}')
    _check_restore_scope(request.app[SETTINGS], body.cluster, namespace)
    operations = request.app[RUNTIME].require().engine.operations
    record = await operations.despite_stable(namespace, deployment, actor=f"admin:{body.actor}", cluster=body.cluster)
    key = TargetRef(namespace, deployment, cluster=body.cluster).key
    if record is None:
        raise Rejection(404, "nothing_held", f"no rollback of {key} is held for an unavailable stable Deployment")
    steps = [
        {"step": name, "result": step.get("result"), "message": step.get("message")}
        for name, step in record.steps.items()
    ]
    return json_response({"target": key, "incident": record.incident, "status": record.status, "steps": steps})


# -- audit --


class AuditQuery(_Body):
    target: Annotated[str, StringConstraints(max_length=300)] | None = None
    kind: Annotated[str, StringConstraints(max_length=64)] | None = None
    since: Timestamp | None = None  # normalised to UTC; out of range (year 1 with an offset) is a 400, not a 500
    until: Timestamp | None = None
    after: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0  # SQLite INTEGER
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


@guarded(Role.READ)
async def audit_list(request: web.Request) -> web.Response:
    try:
        query = AuditQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise Rejection(400, "invalid_query", "invalid query parameters", errors=field_errors(exc)) from None
    store = request.app[RUNTIME].require().store
    entries = await store.audit_entries(
        after=query.after,
        limit=query.limit,
        target=query.target,
        kind=query.kind,
        since=_iso_or_none(query.since),
        until=_iso_or_none(query.until),
    )
    next_after = entries[-1].seq if len(entries) == query.limit else None
    return json_response({"entries": [e.as_dict() for e in entries], "next_after": next_after})


def _iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None


class VerifyQuery(_Body):
    """A head seen earlier (status, metrics, logs): a chain that lost its tail is still valid without it."""

    expect_head: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    expect_length: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None  # SQLite INTEGER


@guarded(Role.READ)
async def audit_verify(request: web.Request) -> web.Response:
    try:
        query = VerifyQuery.model_validate(dict(request.query))
    except ValidationError as exc:
        raise Rejection(400, "invalid_query", "invalid query parameters", errors=field_errors(exc)) from None
    store = request.app[RUNTIME].require().store
    report = await store.verify(expect_length=query.expect_length, expect_head=query.expect_head)
    problems = report.problems
    return json_response(
        {"ok": not problems, "length": report.length, "head": report.head, "problems": problems},
        200 if not problems else 409,
    )


@guarded(Role.READ)
async def audit_entry(request: web.Request) -> web.Response:
    raw = request.match_info["seq"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit() but int("²") fails
        raise Rejection(400, "invalid_seq", "the audit sequence number must be a positive integer")
    entries: list[AuditEntry] = await request.app[RUNTIME].require().store.audit_entries(after=int(raw) - 1, limit=1)
    if not entries or entries[0].seq != int(raw):
        raise Rejection(404, "not_found", f"no audit entry {raw}")
    return json_response(entries[0].as_dict())


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/status", status)
    app.router.add_post("/api/v1/pause", pause)
    app.router.add_post("/api/v1/resume", resume)
    app.router.add_post("/api/v1/replay", replay)
    app.router.add_post("/api/v1/targets/{namespace}/{deployment}/restore", restore)
    app.router.add_post("/api/v1/targets/{namespace}/{deployment}/rollback", rollback_despite_stable)
    app.router.add_get("/api/v1/audit", audit_list)
    app.router.add_get("/api/v1/audit/verify", audit_verify)
    app.router.add_get("/api/v1/audit/{seq}", audit_entry)

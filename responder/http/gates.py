"""Flagger's rollback gate: ``POST /api/v1/gates/flagger/rollback``.

Flagger calls every ``type: rollback`` webhook of a Canary at each analysis interval while the Canary progresses,
with ``{"name", "namespace", "phase", "checksum", "metadata"}``, and rolls the Canary back as soon as one answers
with a status up to 202. This gate answers 200 exactly when the responder has decided to roll that canary back (a
target with ``delegate: flagger`` whose rollback is ``delegated``), not since restored, while not paused, and for
the revision it decided about (Flagger's ``checksum`` of the Canary: a new revision deployed since gets "no").
Otherwise 409 with ``{"rollback": false, "reason"}``. Every "roll back" answer is audited (``flagger.gate``) and
recorded with the incident (the ``flagger`` step: when Flagger first asked, how often, for which checksum).

Flagger's webhooks cannot send headers, so the gate token may come in the Canary's webhook ``metadata`` (key
``token``) as well as in an ``Authorization: Bearer`` header. It can only ask this question.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from responder.core.model import TargetRef, iso
from responder.http.auth import caller_role
from responder.http.errors import Rejection, error_response, field_errors, json_response, record_rejection
from responder.http.server import RUNTIME, SECRETS, read_body
from responder.store import RollbackRecord, StoreUnavailable, Tx

PATH = "/api/v1/gates/flagger/rollback"


class FlaggerCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=253)
    namespace: str = Field(min_length=1, max_length=63)
    phase: str = Field(default="", max_length=64)
    checksum: str = Field(default="", max_length=256)
    metadata: dict[str, str] = Field(default_factory=dict)


async def flagger_rollback(request: web.Request) -> web.Response:
    services = request.app[RUNTIME].require()
    try:
        call = await _call(request)
        cluster = request.query.get("cluster", "")
        key = TargetRef(call.namespace, call.name, cluster=cluster).key
        if await services.store.paused():
            return _no("paused: the responder asks nobody to roll back while paused")
        records = await services.store.rollbacks_since_restore(key)
        decided = next((r for r in records if r.status == "delegated"), None)
        if decided is None:
            return _no(f"no rollback of {key} decided (or restored since)")
        asked = decided.steps.get("flagger") or {}
        first = str(asked.get("checksum") or "")
        if first and call.checksum and call.checksum != first:
            return _no("a new revision was deployed since the rollback decision (the Canary's checksum changed)")
        await services.store.write(_answered(decided, call, asked))
        return json_response({"rollback": True, "incident": decided.incident, "decided_at": decided.created_at})
    except StoreUnavailable as exc:  # not a "yes" that was never recorded, nor a 500: Flagger asks again
        rejection = Rejection(503, "store_unavailable", f"the gate cannot read or record its answer now: {exc}")
        await record_rejection(request, services, rejection)
        return error_response(rejection)
    except Rejection as rejection:
        await record_rejection(request, services, rejection)
        return error_response(rejection)


async def _call(request: web.Request) -> FlaggerCall:
    """The caller's payload, once its gate token is verified: credentials first, then the schema."""
    raw = await read_body(request)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None
    _authorize(request, _given_token(request, document))
    if document is None:
        raise Rejection(400, "malformed_json", "request body is not valid JSON")
    try:
        return FlaggerCall.model_validate(document)
    except ValidationError as exc:
        raise Rejection(422, "schema", "not a Flagger webhook payload", errors=field_errors(exc)) from None


def _given_token(request: web.Request, document: Any) -> bytes | None:
    """The token from an ``Authorization`` header (any scheme: a wrong one is no gate token), else from the
    payload's ``metadata.token`` (Flagger's webhooks send no headers of their own)."""
    if "Authorization" in request.headers:
        scheme, _, value = request.headers["Authorization"].partition(" ")
        return value.strip().encode(errors="surrogateescape") if scheme.lower() == "bearer" else b""
    metadata = document.get("metadata") if isinstance(document, dict) else None
    token = metadata.get("token") if isinstance(metadata, dict) else None
    return token.encode(errors="surrogateescape") if isinstance(token, str) else None


def _authorize(request: web.Request, given: bytes | None) -> None:
    expected = request.app[SECRETS].gate_token
    if given and expected is not None and hmac.compare_digest(given, expected.get_secret_value().encode()):
        return
    if caller_role(request) is not None:  # a known credential of another role (header): it may not ask the gate
        raise Rejection(403, "forbidden", "this endpoint needs the gate token (auth.gate_token)")
    if given and expected is None:
        raise Rejection(404, "gate_off", "the Flagger rollback gate is off (set auth.gate_token)")
    raise Rejection(401, "unauthorized", "missing or invalid gate token (Authorization: Bearer, or metadata.token)")


def _answered(record: RollbackRecord, call: FlaggerCall, asked: dict[str, Any]) -> Any:
    now = iso(datetime.fromtimestamp(time.time(), UTC))
    step = {
        "incident": record.incident,
        "step": "flagger",
        "result": "asked",
        "before": {},
        "after": {"answer": "roll back"},
        "checksum": asked.get("checksum") or call.checksum,
        "first_asked_at": asked.get("first_asked_at") or now,
        "last_asked_at": now,
        "answers": int(asked.get("answers") or 0) + 1,
        "phase": call.phase,
        "message": f"Flagger asked ({call.phase or 'no phase'}) and was told to roll back",
    }
    audit = {"incident": record.incident, "answer": "roll back", "phase": call.phase, "checksum": call.checksum}

    def write(tx: Tx) -> None:
        tx.update_rollback(record.incident, step=("flagger", step))
        tx.append_audit("flagger.gate", audit, target=record.key, actor="flagger")

    return write


def _no(reason: str) -> web.Response:
    return json_response({"rollback": False, "reason": reason}, 409)


def add_gate_routes(app: web.Application) -> None:
    app.router.add_post(PATH, flagger_rollback)

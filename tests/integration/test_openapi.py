"""The OpenAPI document is kept true: it describes exactly the routes the application registers, and
schemathesis drives the live responder (real server on loopback, the emulator as the cluster) with valid and
invalid input for every operation, checking that nothing answers 5xx and that status codes, content types and
bodies are the documented ones. Real success bodies that random input cannot reach (an incident, a restore, an
executed replay) are validated against the document too."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import ADMIN_TOKEN, READ_TOKEN, WEBHOOK_TOKEN, alert, bearer, notification, running_responder, write_config

from responder.app import build_app
from responder.config import load_settings
from responder.http.openapi import PATH, document
from responder.testing.emulator import Emulator

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES_PER_MODE = 100  # per operation, positive and negative
UNAUTHENTICATED = {"/healthz", "/readyz", "/metrics", PATH}


def documented_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document()["paths"].items() for method in item}


def registered_routes(tmp_path: Path) -> Iterator[tuple[str, str]]:
    settings_, secrets = load_settings(write_config(tmp_path), {})
    app = build_app(settings_, secrets, audit_sink=None)
    for route in app.router.routes():
        yield route.method, route.resource.canonical if route.resource else ""


def test_every_registered_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    routes = set(registered_routes(tmp_path))
    heads = {(m, p) for m, p in routes if m == "HEAD"}
    others = routes - heads
    assert others == documented_operations()
    assert heads == {("HEAD", p) for m, p in others if m == "GET"}  # aiohttp's automatic HEAD for every GET


def test_security_matches_the_roles() -> None:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            names = {name for requirement in operation["security"] for name in requirement}
            if path in UNAUTHENTICATED:
                assert names == set() and "401" not in operation["responses"], path
            elif path == "/api/v1/alerts":
                assert names == {"webhookBearer", "webhookBasic"}
                assert {"401", "403"} <= operation["responses"].keys()  # 403: the admin or read token
            elif path == "/api/v1/gates/flagger/rollback":
                assert names == {"gateBearer"}
                assert {"401", "403"} <= operation["responses"].keys()  # 403: any other role's token
            elif method == "get":
                assert names == {"adminBearer", "readBearer"}, path
                assert {"401", "403"} <= operation["responses"].keys()
            else:
                assert names == {"adminBearer"}, path
                assert {"401", "403"} <= operation["responses"].keys()


def test_every_error_response_uses_the_error_schema() -> None:
    for item in document()["paths"].values():
        for operation in item.values():
            assert "500" in operation["responses"]  # any handler's unexpected exception (errors.http_errors)
            if "requestBody" in operation:
                assert "408" in operation["responses"]  # listen.body_timeout
            for code, response in operation["responses"].items():
                if code in ("401", "403", "400", "408", "413", "415", "422", "500"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}


# -- the live application --


def token_for(path: str, method: str) -> str:
    if path == "/api/v1/alerts":
        return WEBHOOK_TOKEN
    return READ_TOKEN if method == "GET" else ADMIN_TOKEN


CREDENTIALS = st.sampled_from(["right"] * 6 + ["webhook", "read", "admin", "bogus", "none"])


def authorization(choice: str, path: str, method: str) -> dict[str, str]:
    tokens = {"right": token_for(path, method), "webhook": WEBHOOK_TOKEN, "read": READ_TOKEN, "admin": ADMIN_TOKEN}
    if choice == "none":
        return {}
    return {"Authorization": f"Bearer {tokens.get(choice, 'not-a-known-token')}"}


def fuzz(base_url: str) -> collections.Counter[tuple[str, int]]:
    """Every operation, positive and negative cases, against the live server (blocking: run in a thread)."""
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    with requests.Session() as session:
        # from_dict, not from_url: from_url leaves out the operation that served the document
        schema = schemathesis.openapi.from_dict(session.get(f"{base_url}{PATH}", timeout=10).json())
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                run_operation(operation, mode, base_url, session, seen)
    return seen


def run_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    base_url: str,
    session: requests.Session,
    seen: collections.Counter[tuple[str, int]],
) -> None:
    path, method = operation.path, operation.method.upper()

    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), who=CREDENTIALS)
    def run(case: schemathesis.Case, who: str) -> None:
        headers = authorization(who, path, method)
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        seen[(operation.label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    except Unsatisfiable:
        if mode is schemathesis.GenerationMode.POSITIVE or operation_has_input(operation):
            raise  # an operation without parameters or body has no invalid input to send


def operation_has_input(operation: Any) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


@pytest.mark.slow
async def test_schemathesis_against_the_live_app(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200  # some state to read
        await running.services.engine.drain()
        started = time.monotonic()
        seen = await asyncio.to_thread(fuzz, running.url)
        elapsed = time.monotonic() - started
        await running.services.engine.drain()
    labels = {label for label, _ in seen}
    assert labels == {f"{m} {p}" for m, p in documented_operations()}, seen
    assert not [key for key in seen if key[1] >= 500]
    assert sum(seen.values()) >= len(labels) * 20, seen
    print(f"schemathesis: {sum(seen.values())} requests in {elapsed:.1f} s: {sorted(seen.items())}")


# -- success bodies random input cannot reach --


async def test_real_responses_conform(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await running.services.engine.drain()
        incident = (await running.services.store.rollbacks())[0].incident
        responses = await asyncio.to_thread(real_calls, running.url, incident)
    assert [status for _, _, status in responses] == [200, 200, 200, 200, 200, 200, 200, 200, 404, 200, 200, 401]


def real_calls(base_url: str, incident: str) -> list[tuple[str, str, int]]:
    schema = schemathesis.openapi.from_url(f"{base_url}{PATH}", timeout=10)
    admin, reader = bearer(ADMIN_TOKEN), bearer(READ_TOKEN)
    calls: list[tuple[str, str, str, dict[str, str], Any]] = [
        ("GET", "/api/v1/incidents", "/api/v1/incidents", reader, None),
        ("GET", "/api/v1/incidents", "/api/v1/incidents", {**reader, "Accept": "text/markdown"}, None),
        ("GET", "/api/v1/incidents/{incident}", f"/api/v1/incidents/{incident}", reader, None),
        ("GET", "/api/v1/incidents/{incident}", f"/api/v1/incidents/{incident}.md", reader, None),
        ("GET", "/api/v1/audit/{seq}", "/api/v1/audit/3", reader, None),
        (
            "POST",
            "/api/v1/targets/{namespace}/{deployment}/restore",
            "/api/v1/targets/shop/checkout-canary/restore",
            admin,
            {"actor": "carol"},
        ),
        ("POST", "/api/v1/replay", "/api/v1/replay", admin, {"notification_id": 1, "dry_run": False, "force": True}),
        ("POST", "/api/v1/pause", "/api/v1/pause", admin, None),
        (
            "POST",
            "/api/v1/targets/{namespace}/{deployment}/restore",
            "/api/v1/targets/shop/payments-canary/restore",
            admin,
            {},
        ),
        ("GET", "/readyz", "/readyz", {}, None),
        ("GET", "/metrics", "/metrics", {}, None),
        ("GET", "/api/v1/status", "/api/v1/status", {"Authorization": "Basic bm9ib2R5Om5vdGhpbmc="}, None),
    ]
    done = []
    with requests.Session() as session:
        for method, template, path, headers, body in calls:
            response = session.request(method, f"{base_url}{path}", headers=headers, json=body, timeout=30)
            schema[template][method].validate_response(response)
            done.append((method, path, response.status_code))
    return done

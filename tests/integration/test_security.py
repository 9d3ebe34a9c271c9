"""Security over real HTTP: the role matrix for every documented operation (taken from the OpenAPI document, so
a new endpoint is covered the day it is added), forged alert labels, odd path parameters and undecodable
credentials, and credentials never showing up in anything the responder writes or sends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from slack_fake import BOT_TOKEN, WEBHOOK_PATH, FakeSlack, fake_slack
from support import (
    ADMIN_TOKEN,
    ALL_SECRETS,
    BASIC_PASSWORD,
    READ_TOKEN,
    WEBHOOK_TOKEN,
    Running,
    alert,
    bearer,
    notification,
    running_responder,
    write_config,
)

from responder.http.openapi import document
from responder.testing.emulator import Emulator

EXAMPLE_PATHS = {
    "/api/v1/targets/{namespace}/{deployment}/restore": "/api/v1/targets/shop/checkout-canary/restore",
    "/api/v1/targets/{namespace}/{deployment}/rollback": "/api/v1/targets/shop/checkout-canary/rollback",
    "/api/v1/audit/{seq}": "/api/v1/audit/1",
    "/api/v1/incidents/{incident}": "/api/v1/incidents/shop:checkout-canary:20261127T120000.000000Z",
}
OPERATIONS = sorted(
    (method.upper(), EXAMPLE_PATHS.get(path, path), operation["security"])
    for path, item in document()["paths"].items()
    for method, operation in item.items()
)
AUTHENTICATED = [(m, p) for m, p, security in OPERATIONS if security]
OPEN = [(m, p) for m, p, security in OPERATIONS if not security]
WEBHOOK = ("POST", "/api/v1/alerts")
MUTATING = [(m, p) for m, p in AUTHENTICATED if m == "POST" and (m, p) != WEBHOOK]
READING = [(m, p) for m, p in AUTHENTICATED if m == "GET"]
BASIC_OK = "Basic " + __import__("base64").b64encode(f"alertmanager:{BASIC_PASSWORD}".encode()).decode()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return orjson.loads(self.body)


async def raw_request(base_url: str, method: str, path: bytes, headers: dict[bytes, bytes] | None = None) -> Answer:
    """One HTTP/1.1 request with the path and header bytes exactly as given (no client normalises `..` or %2F)."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
        lines += [name + b": " + value for name, value in (headers or {}).items()]
        lines += [b"Content-Length: 0", b"", b""]
        writer.write(b"\r\n".join(lines))
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines)
    return Answer(int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, body)


async def call(running: Running, method: str, path: str, headers: dict[str, str], json: Any = None) -> Answer:
    async with running.session.request(method, f"{running.url}{path}", headers=headers, json=json) as response:
        return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, await response.read())


def body_for(method: str, path: str) -> Any:
    return notification(alert()) if (method, path) == WEBHOOK else None


def changes(emulator: Emulator) -> list[tuple[str, str | None, str | None]]:
    return [(m.kind, m.name, m.subresource) for m in emulator.mutations if m.kind != "Event"]


@pytest.fixture
async def running(tmp_path: Path, cluster: tuple[Emulator, str]) -> AsyncIterator[Running]:
    async with running_responder(write_config(tmp_path, kube_url=cluster[1])) as running:
        yield running


# -- the role matrix --


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("not-a-token"), {"Authorization": "Bearer"}, {"Authorization": "Token " + ADMIN_TOKEN}],
    ids=["none", "unknown", "empty", "wrong-scheme"],
)
async def test_every_endpoint_needs_credentials(
    running: Running, cluster: tuple[Emulator, str], headers: dict[str, str]
) -> None:
    for method, path in AUTHENTICATED:
        answer = await call(running, method, path, headers, body_for(method, path))
        assert answer.status == 401, (method, path, answer.body)
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    for method, path in OPEN:
        answer = await call(running, method, path, headers)
        assert answer.status == 200, (method, path, answer.body)
    assert {p for _, p in OPEN} == {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}
    await running.services.engine.drain()
    assert cluster[0].mutations == []


@pytest.mark.parametrize("credential", [bearer(WEBHOOK_TOKEN), {"Authorization": BASIC_OK}], ids=["bearer", "basic"])
async def test_webhook_credentials_open_nothing_but_the_webhook(
    running: Running, cluster: tuple[Emulator, str], credential: dict[str, str]
) -> None:
    for method, path in MUTATING + READING:
        answer = await call(running, method, path, credential, {})
        assert (answer.status, answer.json()["error"]) == (403, "forbidden"), (method, path)
    assert (await running.services.store.pause_state()) is None
    assert cluster[0].mutations == []


async def test_read_token_cannot_mutate_and_admin_token_is_no_webhook_credential(
    running: Running, cluster: tuple[Emulator, str]
) -> None:
    for method, path in MUTATING:
        answer = await call(running, method, path, bearer(READ_TOKEN), {"dry_run": False})
        assert (answer.status, answer.json()["error"]) == (403, "forbidden"), (method, path)
    for method, path in READING:
        answer = await call(running, method, path, bearer(READ_TOKEN))
        assert answer.status in (200, 404), (method, path)  # 404: the example incident / entry does not exist
    for token in (ADMIN_TOKEN, READ_TOKEN):  # known credentials without the right: 403, as for the other roles
        answer = await call(running, *WEBHOOK, bearer(token), notification(alert()))
        assert (answer.status, answer.json()["error"]) == (403, "forbidden"), answer.body
        assert "www-authenticate" not in answer.headers
    await running.services.engine.drain()
    assert await running.services.store.audit_entries(kind="receipt") == []
    assert (await running.services.store.pause_state()) is None
    assert cluster[0].mutations == []


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xff\xfe", b"Basic \xc3\xa9", b"Basic \xff", b"Bearer \xe2\x80\xae" + ADMIN_TOKEN.encode()],
    ids=["latin1-bearer", "utf8-basic", "latin1-basic", "rtl-override"],
)
async def test_undecodable_credentials_are_401_not_500(running: Running, value: bytes) -> None:
    """Header bytes that are not UTF-8 (or not base64) once crashed the credential check with a 500."""
    for method, path in AUTHENTICATED:
        answer = await raw_request(running.url, method, path.encode(), {b"Authorization": value})
        assert answer.status == 401, (method, path, answer.body)


# -- forged labels --


async def test_labels_forged_to_point_at_a_stable_deployment_are_refused_and_audited(
    tmp_path: Path, cluster: tuple[Emulator, str]
) -> None:
    emulator, url = cluster
    targets = [{"name": "forgeable", "namespace": "{namespace}", "deployment": "{deployment}", "ingress": "{app}"}]
    async with running_responder(write_config(tmp_path, kube_url=url, targets=targets)) as running:
        forged = alert(deployment="checkout")  # the stable Deployment (version=stable), not the canary
        assert (await running.post_alerts(notification(forged))).status == 200
        await running.services.engine.drain()
        [record] = await running.services.store.rollbacks()
        assert record.key == "shop/checkout" and record.status == "refused"
        actions = await running.services.store.audit_entries(kind="action", target="shop/checkout")
        assert [(a.data["step"], a.data["reason"]) for a in actions][0] == ("check", "not_canary")
        # forcing a replay bypasses dedupe and cooldown, never the canary check
        replay = {"payload": notification(alert("CanaryHighLatencyP95", deployment="checkout")), "force": True}
        answer = await call(running, "POST", "/api/v1/replay", bearer(ADMIN_TOKEN), {**replay, "dry_run": False})
        assert answer.status == 200, answer.body
        await running.services.engine.drain()
        assert [r.status for r in await running.services.store.rollbacks()] == ["refused", "refused"]
    stable = emulator.get_object("apps/v1/deployments", "shop", "checkout")
    assert stable["spec"]["replicas"] == 4
    assert changes(emulator) == []


async def test_labels_pointing_outside_the_allowlist_are_refused_and_audited(
    running: Running, cluster: tuple[Emulator, str]
) -> None:
    for namespace in ("kube-system", "Shop", "shop/../kube-system", "ｓｈｏｐ"):
        forged = alert(namespace=namespace, app="coredns")
        assert (await running.post_alerts(notification(forged))).status == 200
    await running.services.engine.drain()
    decisions = [e.data for e in await running.services.store.audit_entries(kind="decision")]
    assert [d["outcome"] for d in decisions] == ["refused"] * 4
    assert all("allow" in d["reason"] or "not" in d["reason"] for d in decisions), decisions
    answer = await call(running, "POST", "/api/v1/targets/kube-system/coredns/restore", bearer(ADMIN_TOKEN))
    assert (answer.status, answer.json()["error"]) == (403, "namespace_not_allowed")
    [rejected] = await running.services.store.audit_entries(kind="rejected")
    assert rejected.data["reason"] == "namespace_not_allowed"
    assert await running.services.store.rollbacks() == []
    assert cluster[0].mutations == []


# -- odd path parameters --

ODD_SEGMENTS = [
    b"..",
    b"%2E%2E",
    b"..%2Fetc",
    b"%2F",
    b"Shop",
    b"%EF%BD%93%EF%BD%88%EF%BD%8F%EF%BD%90",  # fullwidth "shop"
    b"%00",
    b"shop%20",
    b"-shop",
    b"a" * 64,
    b"a" * 300,
    b"%C2%B2",
    b"%FF",
    b"%",
]


async def test_odd_path_parameters_are_400_or_404(running: Running, cluster: tuple[Emulator, str]) -> None:
    admin = {b"Authorization": f"Bearer {ADMIN_TOKEN}".encode()}
    for odd in ODD_SEGMENTS:
        for path in (
            b"/api/v1/targets/" + odd + b"/checkout-canary/restore",
            b"/api/v1/targets/shop/" + odd + b"/restore",
            b"/api/v1/audit/" + odd,
            b"/api/v1/incidents/" + odd,
            b"/api/v1/incidents/" + odd + b".md",
            b"/api/v1/incidents?limit=" + odd,
        ):
            method = "POST" if path.endswith(b"/restore") else "GET"
            answer = await raw_request(running.url, method, path, admin)
            assert answer.status in (400, 404), (path, answer.status, answer.body[:200])
            body = answer.json()
            assert body.get("error") or body["reason"] == "nothing_to_restore"  # a 64-char deployment name is valid
    assert cluster[0].mutations == []


# -- credentials never leak --


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as fake:
        yield fake


async def test_credentials_never_appear_in_logs_errors_audit_or_slack(
    tmp_path: Path, cluster: tuple[Emulator, str], slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "slack-token").write_text(BOT_TOKEN)
    notifications = {
        "slack": {
            "bot_token": {"file": str(secrets / "slack-token")},
            "channel": "#c",
            "api_base_url": slack.url + "/api/",
        },
        "outbox": {"base_delay": "50ms", "max_delay": "200ms"},
        "public_url": "https://responder.example.com",
    }
    seen: list[bytes] = []
    async with running_responder(write_config(tmp_path, kube_url=cluster[1], notifications=notifications)) as running:
        every_credential = [
            {},
            bearer(WEBHOOK_TOKEN),
            bearer(READ_TOKEN),
            bearer(ADMIN_TOKEN),
            {"Authorization": BASIC_OK},
        ]
        every_credential += [bearer(secret + "x") for secret in ALL_SECRETS]  # near misses are logged as rejections
        for headers in every_credential:
            for method, path, _ in OPERATIONS:
                answer = await call(running, method, path, headers, body_for(method, path))
                seen += [answer.body, orjson.dumps(answer.headers)]
        await running.services.engine.drain()
        await slack.wait_delivered(1)
        for path in ("/api/v1/audit?limit=1000", "/api/v1/incidents", "/metrics", "/api/v1/status"):
            seen.append((await call(running, "GET", path, bearer(ADMIN_TOKEN))).body)
        stored = await running.services.store.audit_entries(limit=1000)
        captured = running.captured
    assert any(e.kind == "rejected" for e in stored) and slack.requests
    haystack = b"\n".join(
        [
            *seen,
            caplog.text.encode(),
            orjson.dumps([e.as_dict() for e in stored]),
            orjson.dumps(captured),
            *(orjson.dumps(r.body) for r in slack.requests),
        ]
    )
    for secret in (*ALL_SECRETS, BOT_TOKEN, WEBHOOK_PATH):
        assert secret.encode() not in haystack, secret

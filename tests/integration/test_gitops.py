"""GitOps awareness: the rejected images land on the canary Deployment as annotations, the audit log records the
rejection, and a Standard-Webhooks-signed webhook is delivered once, retried on 500, never delaying the rollback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Running, alert, notification, running_responder, write_config

from responder.adapters.kube import open_cluster
from responder.config import ConfigError
from responder.core.model import FailureReason
from responder.engine.steps import REJECTED_AT, REJECTED_IMAGES, REJECTED_INCIDENT, REJECTED_REVISION
from responder.gitops import signature, signing_key
from responder.ports import ClusterError
from responder.testing.emulator import Emulator

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@dataclass
class Receiver:
    """A webhook receiver on loopback that verifies signatures independently of the responder's code."""

    answers: list[int] = field(default_factory=list)  # statuses to answer, in order; then 204
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self.gate.set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        msg_id = request.headers["webhook-id"]
        timestamp = request.headers["webhook-timestamp"]
        version, _, sent = request.headers["webhook-signature"].partition(",")
        expected = base64.b64encode(hmac.new(KEY, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
        valid = version == "v1" and hmac.compare_digest(sent.encode(), expected)
        fresh = abs(time.time() - int(timestamp)) < 300  # what a receiver checks against replays
        status = self.answers.pop(0) if self.answers else 204
        if status < 300:
            await self.gate.wait()
        self.attempts.append({"id": msg_id, "valid": valid, "fresh": fresh, "status": status, "body": json.loads(body)})
        return web.Response(status=status)

    @property
    def accepted(self) -> list[dict[str, Any]]:
        return [a for a in self.attempts if a["status"] < 300]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/canary", found.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    found.url = str(server.make_url("/hooks/canary"))
    try:
        yield found
    finally:
        await server.close()


def gitops_config(tmp_path: Path, url: str, *, annotate: bool = True, hook_url: str | None = None) -> Path:
    (tmp_path / "whsec").write_text(SECRET + "\n")
    gitops: dict[str, Any] = {"annotate": annotate}
    if hook_url is not None:
        gitops["webhook"] = {
            "url": hook_url,
            "secret": {"file": str(tmp_path / "whsec")},
            "base_delay": "20ms",
            "max_delay": "100ms",
            "max_attempts": 5,
        }
    return write_config(tmp_path, kube_url=url, gitops=gitops)


async def wait_for(predicate: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def audit(running: Running, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in running.captured if e["kind"] == kind]


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # The example of the Standard Webhooks specification (and of its reference libraries).
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert signature(key, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_a_bad_secret_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base64"):
        signing_key("whsec_not base64!")
    with pytest.raises(ValueError, match="too short"):
        signing_key("whsec_" + base64.b64encode(b"short").decode())
    assert ConfigError  # build_relay turns these into ConfigError naming gitops.webhook.secret


async def test_the_rejected_images_land_on_the_canary_deployment(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    async with running_responder(gitops_config(tmp_path, url)) as running:
        await running.post_alerts(notification(alert()))
        await running.services.engine.drain()
        [record] = await running.services.store.rollbacks()
        assert record.status == "done" and record.steps["annotate"]["result"] == "done"
        annotations = emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")["metadata"]["annotations"]
        assert annotations[REJECTED_IMAGES] == "checkout:1.5.0"
        assert annotations[REJECTED_INCIDENT] == record.incident and annotations[REJECTED_AT].endswith("Z")
        assert REJECTED_REVISION not in annotations  # the emulator has no Deployment controller writing revisions
        stable = emulator.get_object("apps/v1/deployments", "shop", "checkout")["metadata"]
        assert not stable.get("annotations")  # stable untouched
        intent = audit(running, "rollback.intent")[0]
        plan = ["check", "traffic_off:nginx/checkout-canary", "evidence", "scale_zero", "annotate", "event"]
        assert intent["plan"] == plan
        [rejected] = audit(running, "gitops.rejected")
        assert rejected["images"] == ["checkout:1.5.0"] and rejected["annotated"] and rejected["webhook"] is False
        assert rejected["incident"] == record.incident and rejected["alerts"] == ["CanaryHighErrorRate"]
        # Order: traffic off, scale to zero, then the annotation (a mark, never in the way of the rollback).
        kinds = [(m.kind, m.subresource) for m in emulator.mutations if m.ok and m.kind != "Event"]
        assert kinds == [("Ingress", None), ("Deployment", "scale"), ("Deployment", None)]
        assert (await running.services.store.verify()).ok


async def test_a_failed_annotation_does_not_fail_the_rollback(tmp_path: Path, cluster: tuple[Emulator, str]) -> None:
    emulator, url = cluster
    kube = await open_cluster(host=url)

    async def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise ClusterError(FailureReason.FORBIDDEN, "deployments.apps is forbidden: cannot patch")

    kube.set_deployment_annotations = forbidden  # type: ignore[method-assign]  # RBAC without `patch`
    try:
        async with running_responder(gitops_config(tmp_path, url), cluster=kube) as running:
            await running.post_alerts(notification(alert()))
            await running.services.engine.drain()
            [record] = await running.services.store.rollbacks()
            assert record.steps["annotate"]["result"] == "failed"
            assert record.steps["annotate"]["reason"] == "forbidden"
            assert record.steps["event"]["result"] == "done"  # the Event still goes out
            assert record.status == "done"
    finally:
        await kube.close()
    assert emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")["spec"]["replicas"] == 0


async def test_the_webhook_is_signed_retried_on_500_and_delivered_once(
    tmp_path: Path, cluster: tuple[Emulator, str], receiver: Receiver
) -> None:
    _, url = cluster
    receiver.answers = [500, 503]
    receiver.gate.clear()  # the receiver holds its first 2xx: the rollback must not wait for it
    async with running_responder(gitops_config(tmp_path, url, hook_url=receiver.url)) as running:
        await running.post_alerts(notification(alert()))
        await running.services.engine.drain()
        [record] = await running.services.store.rollbacks()
        assert record.status == "done" and not receiver.accepted
        receiver.gate.set()
        await wait_for(lambda: receiver.accepted)
        await asyncio.sleep(0.3)  # nothing more arrives: delivered exactly once
        assert [a["status"] for a in receiver.attempts] == [500, 503, 204]
        assert all(a["valid"] and a["fresh"] for a in receiver.attempts)
        assert len({a["id"] for a in receiver.attempts}) == 1  # one webhook-id across retries: receivers dedupe
        [delivered] = receiver.accepted
        assert delivered["body"]["type"] == "canary.rolled_back"
        data = delivered["body"]["data"]
        assert data["incident"] == record.incident and data["images"] == ["checkout:1.5.0"]
        assert (data["namespace"], data["deployment"], data["cluster"]) == ("shop", "checkout-canary", None)
        await wait_for(lambda: len(audit(running, "gitops.webhook")) == 3)
        assert [a["result"] for a in audit(running, "gitops.webhook")] == ["retry", "retry", "delivered"]
        assert audit(running, "gitops.rejected")[0]["webhook"] is True
        assert (await running.services.store.verify()).ok
        assert SECRET not in json.dumps(running.captured)


async def test_the_annotation_and_the_webhook_carry_one_rejection_time(
    tmp_path: Path, cluster: tuple[Emulator, str], receiver: Receiver
) -> None:
    """Issue 18: the annotation's rejected-at and the webhook's rejected_at were taken ~30 ms apart."""
    emulator, url = cluster
    async with running_responder(gitops_config(tmp_path, url, hook_url=receiver.url)) as running:
        await running.post_alerts(notification(alert()))
        await running.services.engine.drain()
        await wait_for(lambda: receiver.accepted)
        [delivered] = receiver.accepted
    annotations = emulator.get_object("apps/v1/deployments", "shop", "checkout-canary")["metadata"]["annotations"]
    data = delivered["body"]["data"]
    assert data["rejected_at"] == annotations["canary-responder.io/rejected-at"]
    assert delivered["body"]["timestamp"] == data["rejected_at"]


async def test_a_refused_rollback_sends_nothing_and_4xx_is_not_retried(
    tmp_path: Path, cluster: tuple[Emulator, str], receiver: Receiver
) -> None:
    _, url = cluster
    receiver.answers = [410]
    path = gitops_config(tmp_path, url, annotate=False, hook_url=receiver.url)
    path.write_text(path.read_text().replace("deployment: '{app}-canary'", "deployment: '{deployment}'"))
    async with running_responder(path) as running:
        await running.post_alerts(notification(alert(deployment="checkout")))  # forged: the stable Deployment
        await running.post_alerts(notification(alert(app="payments", deployment="payments-canary")))
        await running.services.engine.drain()
        assert sorted(r.status for r in await running.services.store.rollbacks()) == ["done", "refused"]
        await wait_for(lambda: audit(running, "gitops.webhook"))
        await asyncio.sleep(0.2)
        assert [a["status"] for a in receiver.attempts] == [410]
        assert [a["result"] for a in audit(running, "gitops.webhook")] == ["failed"]
        [rejected] = audit(running, "gitops.rejected")
        assert rejected["deployment"] == "payments-canary" and rejected["annotated"] is False

"""The real responder at the end of the chain: its configuration, the emulated cluster it acts on, and views of
its audit trail per canary. Shared by test_chain_responder.py and bench/bench_chain.py.

The responder runs in-process (`support.running_responder`) on loopback and talks to the Kubernetes API
emulator (`responder.testing.emulator`) over HTTP with the real kubernetes_asyncio client. The demo apps' canary
traffic follows the emulated cluster (`follow_cluster`): once the responder has turned the canary Ingress off
or scaled the canary to zero, the demo app's canary serves no more requests, as a real canary would not, so
the alert resolves by itself and Alertmanager sends the resolved notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from support import WEBHOOK_TOKEN, Running, running_responder, write_config

from responder.testing.emulator import Emulator, SeedObject, run_emulator, sample_canary_objects

from .harness import NAMESPACE, Binaries, Chain, DemoApp, TrafficProfile, run_chain

CANARY_ANNOTATION = "nginx.ingress.kubernetes.io/canary"
DEPLOYMENTS = "apps/v1/deployments"
INGRESSES = "networking.k8s.io/v1/ingresses"
WEBHOOK_PATH = "/api/v1/alerts"

T = TypeVar("T")


def policies(*, persist_for: str) -> list[dict[str, Any]]:
    """The responder's default policies keyed on the rules' `action` label, with a test-sized persist time."""
    return [
        {"name": "rollback", "match": {"action": "rollback"}, "mode": "immediate"},
        {
            "name": "rollback-if-persists",
            "match": {"action": "rollback-if-persists"},
            "mode": "persist",
            "persist_for": persist_for,
        },
        {"name": "notify", "match": {"action": "notify"}, "mode": "notify"},
    ]


def responder_config(workdir: Path, *, kube_url: str, persist_for: str, namespace: str, **overrides: Any) -> Path:
    """`support.write_config` (secrets in files, webhook token `support.WEBHOOK_TOKEN`) with the target mapping
    namespace/app -> Deployment and Ingress `{app}-canary`, the `action` policies and room for many rollbacks."""
    document: dict[str, Any] = {
        "safety": {"allowed_namespaces": [namespace]},
        "targets": [
            {"name": "by-labels", "namespace": "{namespace}", "deployment": "{app}-canary", "ingress": "{app}-canary"}
        ],
        "policies": policies(persist_for=persist_for),
        "rollback_cap": {"max": 100, "window": "10m"},
        **overrides,
    }
    return write_config(workdir, kube_url=kube_url, **document)


def canary_objects(demos: Iterable[DemoApp]) -> list[SeedObject]:
    """A stable and a canary Deployment and Ingress per demo app (canary Ingress enabled, 2 canary replicas)."""
    return [obj for demo in demos for obj in sample_canary_objects(demo.namespace, demo.app)]


def canary_state(emulator: Emulator, namespace: str, app: str) -> tuple[str | None, int]:
    """(canary Ingress annotation, canary Deployment spec.replicas) as the emulated cluster has them now."""
    ingress = emulator.get_object(INGRESSES, namespace, f"{app}-canary")
    deployment = emulator.get_object(DEPLOYMENTS, namespace, f"{app}-canary")
    annotation = (ingress["metadata"].get("annotations") or {}).get(CANARY_ANNOTATION)
    return annotation, int(deployment["spec"]["replicas"])


def stable_objects(emulator: Emulator, demos: Iterable[DemoApp]) -> dict[tuple[str, str], dict[str, Any]]:
    """The stable Deployment and Ingress of every demo app (for a before/after comparison)."""
    return {
        (kind, demo.app): emulator.get_object(resource, demo.namespace, demo.app)
        for demo in demos
        for kind, resource in (("Deployment", DEPLOYMENTS), ("Ingress", INGRESSES))
    }


async def follow_cluster(emulator: Emulator, demos: Sequence[DemoApp], *, every: float = 0.1) -> None:
    """Run until cancelled: a canary whose Ingress is off or whose Deployment is at 0 replicas gets no traffic."""
    stopped: set[str] = set()
    while True:
        for demo in demos:
            if demo.app in stopped:
                continue
            annotation, replicas = canary_state(emulator, demo.namespace, demo.app)
            if annotation == "false" or replicas == 0:
                stopped.add(demo.app)
                demo.set(canary=TrafficProfile(rps=0, latency=demo.canary.latency))
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def following(emulator: Emulator, demos: Sequence[DemoApp]) -> AsyncIterator[None]:
    """:func:`follow_cluster` in the background for the duration of the block."""
    follower = asyncio.create_task(follow_cluster(emulator, demos))
    try:
        yield
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def until(probe: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.05) -> T:
    """Poll `probe` (a cheap in-process check) until it returns something other than None/False/empty."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


class Audit:
    """The responder's audit trail (the entries its store committed, in order), viewed per canary.

    Decisions about a resolution carry no target, so an app's decisions are found through the fingerprints of
    the alerts received for it.
    """

    def __init__(self, running: Running) -> None:
        self.entries = running.captured

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry["kind"] == kind]

    def alerts(self, app: str) -> list[dict[str, Any]]:
        """The alerts the receipts carry (one per alert per received notification) whose labels name `app`."""
        receipts = self.of_kind("receipt") + self.of_kind("receipt.events")
        return [a for e in receipts for a in e["data"]["events"] if a["labels"].get("app") == app]

    def decisions(self, app: str, *, alertname: str | None = None) -> list[dict[str, Any]]:
        fingerprints = {a["fingerprint"] for a in self.alerts(app)}
        return [
            e["data"]
            for e in self.of_kind("decision")
            if e["data"]["fingerprint"] in fingerprints and alertname in (None, e["data"]["alertname"])
        ]

    def outcomes(self, app: str, *, alertname: str | None = None) -> list[str]:
        return [d["outcome"] for d in self.decisions(app, alertname=alertname)]

    def for_target(self, target: str, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.of_kind(kind) if e["target"] == target]

    def tail(self, lines: int = 60) -> str:
        return "\n".join(
            f"{e['seq']:>5} {e['ts']} {e['kind']:<16} {e['target'] or '-':<28} {_brief(e['data'])}"
            for e in self.entries[-lines:]
        )


def _brief(data: dict[str, Any]) -> str:
    keys = ("alertname", "status", "outcome", "reason", "step", "result", "incident", "alert", "labels")
    return ", ".join(f"{key}={data[key]}" for key in keys if key in data)


@dataclass
class World:
    chain: Chain
    emulator: Emulator
    responder: Running
    demos: dict[str, DemoApp]
    stable_before: dict[tuple[str, str], dict[str, Any]]
    started: float  # time.monotonic() when the chain was up

    @property
    def audit(self) -> Audit:
        return Audit(self.responder)

    def logs(self) -> str:
        return f"{self.chain.logs()}\n\n----- responder audit trail (tail)\n{self.audit.tail()}"


@contextlib.asynccontextmanager
async def running_world(
    workdir: Path, demos: dict[str, DemoApp], *, persist_for: str, binaries: Binaries, rules_source: str = "app"
) -> AsyncIterator[World]:
    """The whole chain for ``demos``: the emulator seeded with their canaries, the responder, Prometheus and
    Alertmanager on ``rules_source``'s rules, and the demos' canary traffic following the cluster."""
    async with run_emulator(canary_objects(demos.values())) as (emulator, kube_url):
        stable_before = stable_objects(emulator, demos.values())
        config = responder_config(workdir, kube_url=kube_url, persist_for=persist_for, namespace=NAMESPACE)
        async with (
            running_responder(config) as responder,
            run_chain(
                workdir=workdir,
                webhook_url=f"{responder.url}{WEBHOOK_PATH}",
                token=WEBHOOK_TOKEN,
                demo=list(demos.values()),
                binaries=binaries,
                rules_source=rules_source,
            ) as chain,
            following(emulator, list(demos.values())),
        ):
            yield World(chain, emulator, responder, demos, stable_before, time.monotonic())

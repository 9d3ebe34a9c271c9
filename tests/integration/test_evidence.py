"""Evidence captured before the canary's pods go (issue 13): the canary pods' status, log tails (bounded by lines
and bytes, the previous instance's too), terminations and Events, read through the real Kubernetes adapter from
the emulator serving pods and their logs. Capture only reports: a 403 on pods/log, a slow API or hostile log
content is recorded as missing (or kept as text), and the rollback completes, never later than the budget."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import ADMIN_TOKEN, alert, notification, running_responder, write_config

from responder.adapters.kube import KubeCluster, open_cluster
from responder.core.model import Step, StepResult, TargetRef, TrafficRef
from responder.engine.executor import EvidenceOptions, RetryPolicy, SafetyRules, StepOutcome, execute_rollback
from responder.notify.incident import Incident, Links
from responder.notify.report import report, report_markdown
from responder.testing.emulator import (
    Emulator,
    LogSeed,
    SeedObject,
    run_emulator,
    sample_canary_objects,
    sample_canary_pods,
)

NS = "shop"
CANARY = "checkout-canary"
TARGET = TargetRef(namespace=NS, deployment=CANARY, traffic=(TrafficRef("nginx", CANARY),), stable="checkout")
SAFETY = SafetyRules(allowed_namespaces=frozenset({NS}))
FORBIDDEN = 'pods "x" is forbidden: User "system:serviceaccount:ops:canary-responder" cannot get resource "pods/log"'


def canary_pods(seeds: Iterable[SeedObject | LogSeed]) -> list[str]:
    return sorted(s.name for s in seeds if isinstance(s, SeedObject) and s.resource == "v1/pods" and CANARY in s.name)


@dataclass
class Harness:
    emu: Emulator
    cluster: KubeCluster
    pods: list[str]
    audited: list[StepOutcome] = field(default_factory=list)

    async def rollback(self, options: EvidenceOptions | None = None) -> dict[str, StepOutcome]:
        async def on_step(outcome: StepOutcome) -> None:
            self.audited.append(outcome)

        outcomes = await execute_rollback(
            self.cluster,
            TARGET,
            safety=SAFETY,
            retry=RetryPolicy(),
            dry_run=False,
            on_step=on_step,
            evidence=options or EvidenceOptions(),
        )
        return {o.id: o for o in outcomes}

    def log(self, text: str, *, pod: int = 0, previous: bool = False) -> None:
        self.emu.set_log(NS, self.pods[pod], "checkout", text, previous=previous)

    def replicas(self) -> int:
        return int(self.emu.get_object("apps/v1/deployments", NS, CANARY)["spec"]["replicas"])


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    seeds = [*sample_canary_objects(NS), *sample_canary_pods(NS)]
    async with run_emulator(seeds) as (emu, url):
        cluster = await open_cluster(host=url, request_timeout_s=5.0)
        try:
            yield Harness(emu=emu, cluster=cluster, pods=canary_pods(seeds))
        finally:
            await cluster.close()


def evidence_of(outcomes: dict[str, StepOutcome]) -> dict[str, Any]:
    after: dict[str, Any] = outcomes["evidence"].after
    return after


def container(after: dict[str, Any], pod: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = after["pods"][pod]["containers"][0]
    return found


# --- what is captured, and when ---------------------------------------------------------------------------


async def test_status_logs_terminations_and_events_are_read_after_traffic_off_and_before_the_scale_down(
    h: Harness,
) -> None:
    outcomes = await h.rollback()
    assert list(outcomes) == ["check", "traffic_off:nginx/checkout-canary", "evidence", "scale_zero", "event"]
    step = outcomes["evidence"]
    assert step.result is StepResult.DONE and step.step is Step.EVIDENCE
    assert "2 of 2 pods OOMKilled" in step.message and "now CrashLoopBackOff" in step.message
    after = evidence_of(outcomes)
    assert [p["name"] for p in after["pods"]] == h.pods  # the canary's pods only: not stable's
    assert after["missing"] == []
    pod = after["pods"][0]
    assert (pod["phase"], pod["ready"], pod["restarts"]) == ("Running", False, 3)
    found = container(after)
    assert found["last_termination"] == {"reason": "OOMKilled", "exit_code": 137, "finished_at": "2026-11-27T20:43:58Z"}
    assert found["log_tail"].endswith("loading the catalog cache into memory\n") and not found["log_truncated"]
    assert found["previous_log_tail"].endswith("WARN cache at 498MiB of 512MiB, still growing\n")  # the killed one
    assert [(e["type"], e["reason"], e["count"]) for e in pod["events"]] == [
        ("Warning", "BackOff", 4),
        ("Normal", "Started", 4),
    ]
    # Order in the API: the Ingress patched, then every read of the evidence, then the scale-down.
    calls = h.emu.calls
    traffic = calls.index(("PATCH", f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{CANARY}"))
    scale = calls.index(("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{CANARY}/scale"))
    reads = [i for i, (method, path) in enumerate(calls) if method == "GET" and ("/pods" in path or "/events" in path)]
    assert len(reads) == 1 + 2 * 2 + 2  # list, current and previous log of each pod, Events of each
    assert traffic < min(reads) and max(reads) < scale
    assert h.replicas() == 0 and outcomes["event"].result is StepResult.DONE


async def test_a_pod_the_selector_matches_but_another_replicaset_owns_is_left_out(h: Harness) -> None:
    stranger = h.emu.get_object("v1/pods", NS, h.pods[0])
    stranger["metadata"]["name"] = "checkout-canary-other-7c9d5b8f4d-zzzzz"
    stranger["metadata"]["ownerReferences"][0]["name"] = "checkout-canary-other-7c9d5b8f4d"
    h.emu.put_object("v1/pods", NS, stranger["metadata"]["name"], stranger)
    outcomes = await h.rollback()
    assert [p["name"] for p in evidence_of(outcomes)["pods"]] == h.pods
    assert "1 other pod(s) matched the selector" in outcomes["evidence"].message


async def test_log_tails_are_bounded_by_lines_and_by_bytes_keeping_the_newest_lines(h: Harness) -> None:
    lines = [f"{i:05d} {'x' * 90}\n" for i in range(3000)]
    h.log("".join(lines))
    outcomes = await h.rollback(EvidenceOptions(log_lines=50, log_bytes=65_536))
    tail = container(evidence_of(outcomes))["log_tail"]
    assert tail == "".join(lines[-50:]) and not container(evidence_of(outcomes))["log_truncated"]

    # Again, on the canary now off (its steps are no-ops; the emulator has no controller removing the pods).
    outcomes = await h.rollback(EvidenceOptions(log_lines=500, log_bytes=2048))
    found = container(evidence_of(outcomes))
    assert len(found["log_tail"].encode()) <= 2048 and found["log_truncated"]
    assert found["log_tail"].endswith(lines[-1])  # the newest line (the crash), not the oldest of the 500
    assert found["log_tail"].startswith(tuple(lines))  # whole lines


async def test_unicode_cut_by_the_byte_limit_and_hostile_log_content_are_kept_as_text(h: Harness) -> None:
    hostile = (
        '{"level":"error","msg":"a log line that is JSON"}\n'
        "\x1b[31mred\x1b[0m \x00 nul \x07 bell\n"
        "</pre><script>alert(1)</script> | a | table |\n"
        "```\n# not a heading\n````` five backticks\n"
        "\u202eevil right-to-left override\n"
    )
    h.log(hostile)
    h.log("ünïcödé 🚀 " * 400 + "\nlast: 終わり\n", pod=1)
    outcomes = await h.rollback(EvidenceOptions(log_lines=200, log_bytes=1024))
    after = evidence_of(outcomes)
    assert container(after, 0)["log_tail"] == hostile  # kept exactly: the JSON log not parsed, nothing dropped
    cut = container(after, 1)["log_tail"]
    assert cut.endswith("last: 終わり\n") and len(cut.encode()) <= 1024
    incident = Incident(
        id="i",
        kind="rollback",
        status="done",
        created_at="2026-11-27T20:44:26Z",
        steps={
            o.id: {"result": o.result.value, "message": o.message, "before": o.before, "after": o.after}
            for o in outcomes.values()
        },
    )
    markdown = report_markdown(incident, Links())
    assert "\x1b" not in markdown and "\x00" not in markdown and "\u202e" not in markdown
    assert "``````text\n" in markdown  # a fence longer than the five backticks inside the log
    assert "<script>" in markdown.split("``````text\n", 1)[1].split("\n``````\n", 1)[0]  # only inside the fence
    assert report(incident, Links())["root_cause"]["evidence_shows"][0] == "2 of 2 pods OOMKilled"


# --- capture never fails nor delays the rollback -------------------------------------------------------------


async def test_a_403_on_pods_log_is_recorded_as_missing_and_the_rollback_completes(h: Harness) -> None:
    h.emu.add_fault(method="GET", path_contains="/log", status=403, times=None, message=FORBIDDEN)
    outcomes = await h.rollback()
    step = outcomes["evidence"]
    assert step.result is StepResult.PARTIAL and step.attempts == 1  # no retry of a permanent refusal
    after = evidence_of(outcomes)
    assert len(after["missing"]) == 4 and all("403" in m and "forbidden" in m for m in after["missing"])
    assert container(after)["last_termination"]["reason"] == "OOMKilled"  # the status is still there
    assert container(after)["log_tail"] is None
    assert outcomes["scale_zero"].result is StepResult.DONE and h.replicas() == 0


async def test_no_pod_list_at_all_fails_the_evidence_step_only(h: Harness) -> None:
    h.emu.add_fault(method="GET", path_contains="/pods", status=403, times=None, message=FORBIDDEN)
    outcomes = await h.rollback()
    assert outcomes["evidence"].result is StepResult.FAILED and "no evidence" in outcomes["evidence"].message
    [missing] = evidence_of(outcomes)["missing"]
    assert evidence_of(outcomes)["pods"] == [] and missing.startswith("pods: ") and "403" in missing
    assert outcomes["scale_zero"].result is StepResult.DONE and h.replicas() == 0


async def test_a_slow_api_costs_the_rollback_no_more_than_the_budget(h: Harness) -> None:
    h.emu.add_fault(method="GET", path_contains="/log", delay=5.0, times=None)
    started = time.monotonic()
    outcomes = await h.rollback(EvidenceOptions(budget_s=0.3))
    took = time.monotonic() - started
    step = outcomes["evidence"]
    assert step.result is StepResult.PARTIAL and step.duration_s < 0.3 + 0.5
    assert took < 0.3 + 1.5  # the whole rollback, far below the 5 s the log reads would have taken
    missing = evidence_of(outcomes)["missing"]
    assert len(missing) == 4 and all(m.endswith("not read within the 0.3s budget") for m in missing)
    assert evidence_of(outcomes)["pods"][0]["events"]  # what came in time is kept
    assert h.replicas() == 0


# --- the whole responder: stored, audited, reported -----------------------------------------------------------


@pytest.fixture
async def cluster_with_pods() -> AsyncIterator[tuple[Emulator, str]]:
    async with run_emulator([*sample_canary_objects(NS), *sample_canary_pods(NS)]) as served:
        yield served


async def test_the_incident_keeps_the_evidence_and_its_report_shows_it(
    tmp_path: Path, cluster_with_pods: tuple[Emulator, str]
) -> None:
    emulator, url = cluster_with_pods
    first = sorted(canary_pods(sample_canary_pods(NS)))[0]
    emulator.add_fault(method="GET", path_contains=f"/pods/{first}/log", status=403, times=None, message=FORBIDDEN)
    async with running_responder(write_config(tmp_path, kube_url=url)) as running:
        assert (await running.post_alerts(notification(alert()))).status == 200
        await running.services.engine.drain()
        [record] = await running.services.store.rollbacks()
        assert record.status == "done"
        evidence = record.steps["evidence"]
        assert evidence["result"] == "partial" and len(evidence["after"]["missing"]) == 2
        audited = next(e["data"] for e in running.captured if e["data"].get("step") == "evidence")
        assert set(audited["after"]) == {"pods", "missing", "sha256"}  # the audit line holds no log text
        assert (await running.services.store.verify()).ok

        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        base = f"{running.url}/api/v1/incidents/{record.incident}"
        async with running.session.get(base, headers=admin) as response:
            body = await response.json()
        assert body["root_cause"]["evidence_shows"][0] == "2 of 2 pods OOMKilled"
        assert body["root_cause"]["evidence"] == "partial" and len(body["root_cause"]["missing"]) == 2
        assert body["stable"]["summary"] == "checkout verified healthy: 4/4 ready"
        [action] = [a for a in body["actions"] if a["step"] == "evidence"]
        assert action["after"]["pods"][0]["containers"][0]["last_termination"]["reason"] == "OOMKilled"
        async with running.session.get(f"{base}.md", headers=admin) as response:
            markdown = await response.text()
        for part in (
            "## Root cause",
            "- 2 of 2 pods OOMKilled",
            "## Stable version health",
            "- checkout verified healthy: 4/4 ready",
            "| scale_zero | done |",
            "replicas: 2 → 0",
            "## Evidence (the canary pods before the scale-down)",
            "Missing evidence:",
            "WARN cache at 498MiB of 512MiB, still growing",
            "| Warning | BackOff | 4 |",
            "- [ ] Add test coverage that would have caught it before the canary",
        ):
            assert part in markdown, part

        result = await running.services.engine.operations.restore(NS, CANARY, actor="alice", dry_run=False)
        assert result.status == "restored", result.message
        [record] = await running.services.store.rollbacks()
        assert record.steps["scale_zero"]["after"] == {"replicas": 0}  # what was done first, kept
        assert record.steps["scale_restore"]["after"] == {"replicas": 2} and record.steps["scale_restore"]["actor"]
        assert record.steps["check"]["before"]["stable"]["ready"] == 4  # the rollback's check, not the restore's
        async with running.session.get(f"{base}.md", headers=admin) as response:
            markdown = await response.text()
        assert "## Undone by the restore" in markdown and "| scale_restore | done |" in markdown
        assert "replicas: 0 → 2" in markdown and "replicas: 2 → 0" in markdown


async def test_evidence_can_be_switched_off(tmp_path: Path, cluster_with_pods: tuple[Emulator, str]) -> None:
    emulator, url = cluster_with_pods
    async with running_responder(write_config(tmp_path, kube_url=url, evidence={"enabled": False})) as running:
        await running.post_alerts(notification(alert()))
        await running.services.engine.drain()
        [record] = await running.services.store.rollbacks()
        assert record.status == "done" and "evidence" not in record.steps
        assert not [path for _, path in emulator.calls if "/pods" in path]  # not even listed: RBAC may lack it


async def test_a_selector_with_match_expressions_selects_the_canary_pods(h: Harness) -> None:
    deployment = h.emu.get_object("apps/v1/deployments", NS, CANARY)
    deployment["spec"]["selector"] = {
        "matchLabels": {"app": "checkout"},
        "matchExpressions": [
            {"key": "version", "operator": "In", "values": ["canary", "next"]},
            {"key": "debug", "operator": "DoesNotExist"},
        ],
    }
    h.emu.put_object("apps/v1/deployments", NS, CANARY, deployment)
    outcomes = await h.rollback()
    assert [p["name"] for p in evidence_of(outcomes)["pods"]] == h.pods
    assert "other pod" not in outcomes["evidence"].message  # stable's pod (version=stable) was not even listed
    listed = [path for method, path in h.emu.calls if path.endswith("/pods")]
    assert listed == [f"/api/v1/namespaces/{NS}/pods"]


async def test_an_operator_it_cannot_write_lists_no_pods_at_all(h: Harness) -> None:
    deployment = h.emu.get_object("apps/v1/deployments", NS, CANARY)
    deployment["spec"]["selector"]["matchExpressions"] = [{"key": "version", "operator": "Gt", "values": ["1"]}]
    h.emu.put_object("apps/v1/deployments", NS, CANARY, deployment)
    outcomes = await h.rollback()
    assert outcomes["evidence"].result is StepResult.FAILED
    assert "no usable label selector" in evidence_of(outcomes)["missing"][0]
    assert not [path for _, path in h.emu.calls if "/pods" in path]  # never "every pod of the namespace"
    assert h.replicas() == 0

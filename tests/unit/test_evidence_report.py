"""The pure side of evidence (issue 13): what a capture shows in words, and the report sections that read a
rollback's record (before -> after, stable health, root cause, the evidence in Markdown), whatever the record
holds; and the evidence step over the in-process fake cluster."""

from __future__ import annotations

from typing import Any

from fake_cluster import FakeCluster
from hypothesis import given
from hypothesis import strategies as st

from responder.core.evidence import findings
from responder.core.model import ContainerView, EventView, PodView, StepResult, Termination
from responder.engine.executor import EvidenceOptions, RetryPolicy, SafetyRules, execute_rollback
from responder.notify.incident import Incident, Links, MetricsSnapshot, TrackMetrics, metric_rows
from responder.notify.report import report, report_markdown
from responder.notify.sections import cell, changes, code, evidence_markdown, root_cause, stable_health

NS = "shop"


def oom_pod(name: str, *, restarts: int = 3, events: int = 2) -> dict[str, Any]:
    ended = {"reason": "OOMKilled", "exit_code": 137, "finished_at": "2026-11-27T20:43:58Z"}
    container = {"name": "app", "restarts": restarts, "last_termination": ended, "log_tail": "a\n"}
    return {
        "name": name,
        "phase": "Running",
        "ready": False,
        "restarts": restarts,
        "containers": [container],
        "events": [{"type": "Warning", "reason": "BackOff", "count": events, "message": "back-off"}],
    }


def incident(steps: dict[str, Any]) -> Incident:
    return Incident(id="i", kind="rollback", status="done", created_at="2026-11-27T20:44:26Z", steps=steps)


def test_findings_say_what_the_pods_show_most_telling_first() -> None:
    after = {"pods": [oom_pod("a"), oom_pod("b", restarts=2, events=5)], "missing": []}
    assert findings(after) == [
        "2 of 2 pods OOMKilled",
        "2 of 2 pods not ready",
        "5 container restarts",
        "Warning events: BackOff x7",
    ]
    error = {"name": "c", "ready": True, "containers": [{"last_termination": {"reason": "Error", "exit_code": 1}}]}
    assert findings({"pods": [error]}) == ["1 of 1 pod terminated: Error (exit code 1)"]
    assert findings({"pods": []}) == [] and findings({}) == []


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_the_sections_render_whatever_a_record_holds(value: Any) -> None:
    steps = {
        "evidence": {"result": "done", "after": value},
        "check": {"before": {"stable": value}},
        "event": {"after": {"stable": value}},
        "scale_zero": {"before": {"replicas": value}, "after": value},
    }
    data = report(incident(steps), Links())
    assert isinstance(data["root_cause"]["evidence_shows"], list) and isinstance(data["stable"]["summary"], str)
    assert isinstance(report_markdown(incident(steps), Links()), str)
    for pods in (
        [value],
        [{"containers": [value], "events": [value]}],
        [{"containers": [{"last_termination": value}]}],
    ):
        evidence_markdown(incident({"evidence": {"after": {"pods": pods}}}))
        findings({"pods": pods})


def test_details_are_before_to_after_of_what_changed() -> None:
    scale = {"result": "done", "before": {"replicas": 3}, "after": {"replicas": 0}}
    assert changes("scale_zero", scale) == ["replicas: 3 → 0"]
    ingress = {
        "before": {"annotations": {"canary": "true", "weight": "10", "by-header": "x"}},
        "after": {"annotations": {"canary": "false", "weight": "10"}},
    }
    assert changes("traffic_off:nginx/c", ingress) == [
        "annotations.canary: true → false",
        "annotations.by-header: x → (removed)",
    ]
    assert changes("check", {"result": "done", "before": {"images": ["x"]}, "after": {}}) == ["read only"]
    assert changes("evidence", {"before": {}, "after": {"pods": [1, 2]}}) == []  # its message says it
    many = {"before": {str(i): i for i in range(10)}, "after": {str(i): i + 1 for i in range(10)}}
    assert changes("x", many)[-1] == "… 4 more" and len(changes("x", many)) == 7


def test_stable_health_before_and_after_the_rollback() -> None:
    steps = {
        "check": {"before": {"stable": {"name": "checkout", "ready": 2, "desired": 4}}},
        "event": {"after": {"stable": {"name": "checkout", "ready": 4, "desired": 4}}},
    }
    health = stable_health(incident(steps))
    assert health["summary"] == "checkout verified healthy: 4/4 ready"
    assert health["at_decision"] == {"name": "checkout", "ready": 2, "desired": 4}
    down = stable_health(incident({"event": {"after": {"stable": {"name": "s", "ready": 0, "desired": 3}}}}))
    assert down["summary"] == "s NOT healthy: 0/3 ready"
    unknown = {"event": {"after": {"stable": {"name": "s", "unknown": "HTTP 500"}}}}
    assert stable_health(incident(unknown))["summary"] == "s: health unknown (HTTP 500)"
    assert stable_health(incident({}))["summary"].startswith("not checked")


def test_root_cause_without_evidence_says_so() -> None:
    assert root_cause(incident({}))["evidence_shows"][0].startswith("no evidence captured")
    failed = {"evidence": {"result": "failed", "message": "no evidence: pods: HTTP 403", "after": {"pods": []}}}
    assert root_cause(incident(failed))["evidence_shows"] == ["no evidence: pods: HTTP 403"]
    assert "## Root cause" in report_markdown(incident(failed), Links())


def test_untrusted_text_starts_no_markup() -> None:
    assert cell("a|b\n<img src=x onerror=alert(1)>\x1b[31m`[x](javascript:y)`") == (
        "a\\|b &lt;img src=x onerror=alert(1)&gt;\\[31m\\`\\[x](javascript:y)\\`"
    )
    assert code("pod`x") == "`` pod`x ``" and code("plain") == "`plain`"
    log = "ok\n```\n<script>alert(1)</script>\n"
    steps = {"evidence": {"result": "done", "after": {"pods": [{"name": "p", "containers": [{"log_tail": log}]}]}}}
    markdown = "\n".join(evidence_markdown(incident(steps)))
    assert "````text\nok\n```\n<script>alert(1)</script>\n````" in markdown


def test_a_long_log_shows_its_last_lines_in_markdown() -> None:
    log = "".join(f"line {i}\n" for i in range(500))
    steps = {"evidence": {"result": "done", "after": {"pods": [{"name": "p", "containers": [{"log_tail": log}]}]}}}
    markdown = "\n".join(evidence_markdown(incident(steps)))
    assert "(last 100 of 500 lines; all of them in the JSON report)" in markdown
    assert "line 499" in markdown and "line 399\n" not in markdown and "line 400\n" in markdown


def test_memory_is_a_metric_row_canary_vs_stable() -> None:
    snapshot = MetricsSnapshot(
        at="t", canary=TrackMetrics(memory_bytes=1020054732.8), stable=TrackMetrics(memory_bytes=None)
    )
    assert ("memory (working set)", "972.8 MiB", "unavailable") in metric_rows(snapshot)
    assert MetricsSnapshot.from_dict(snapshot.as_dict()) == snapshot
    old = {"at": "t", "canary": {"error_rate": 0.1}, "stable": {}}  # stored before memory was queried
    assert MetricsSnapshot.from_dict(old).canary.memory_bytes is None


async def none(outcome: object) -> None:
    return None


async def test_the_step_over_the_fake_cluster() -> None:
    fake = FakeCluster()
    fake.add_stable(NS, "checkout")
    target = fake.add_canary(NS, "checkout")
    crashed = ContainerView(name="app", restarts=1, last_termination=Termination("OOMKilled", 137, None))
    pod = PodView(
        namespace=NS,
        name="checkout-canary-5f6d7-a",
        phase="Running",
        ready=False,
        containers=(crashed,),
        owners=("ReplicaSet/checkout-canary-5f6d7",),
    )
    event = EventView(type="Warning", reason="BackOff", message="m", count=3, last_seen=None)
    fake.add_pod(
        NS,
        pod,
        labels={"app": "checkout", "version": "canary"},
        logs={"app": "now\n"},
        previous_logs={"app": "before the crash\n"},
        events=[event],
    )
    outcomes = await execute_rollback(
        fake,
        target,
        safety=SafetyRules(allowed_namespaces=frozenset({NS})),
        retry=RetryPolicy(),
        dry_run=False,
        on_step=none,
        evidence=EvidenceOptions(),
    )
    [step] = [o for o in outcomes if o.id == "evidence"]
    assert step.result is StepResult.DONE and "1 of 1 pod OOMKilled" in step.message
    [container] = step.after["pods"][0]["containers"]
    assert (container["log_tail"], container["previous_log_tail"]) == ("now\n", "before the crash\n")
    reads = [method for method, _ in fake.calls if method in ("list_pods", "read_log", "list_events")]
    assert reads == ["list_pods", "read_log", "read_log", "list_events"]  # the crashed instance's log first
    assert [m.method for m in fake.landed()][-2:] == ["set_replicas", "emit_event"]

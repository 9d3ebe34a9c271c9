"""The vocabulary of a rollback's run, shared by the executor (:mod:`responder.engine.executor`) and the step
bodies (:mod:`responder.engine.steps`): plans, outcomes, safety rules, restore points, and the state of a run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from responder.core.model import DeploymentView, FailureReason, ObjectView, Step, StepResult, TargetRef, TrafficRef
from responder.ports import ClusterPort
from responder.retry import Backoff
from responder.traffic import TrafficSwitch, switch_for

RetryPolicy = Backoff  # the retries of one step within one run
Body = tuple[StepResult, dict[str, Any], dict[str, Any]]  # result, before, after
Intent = Callable[["Planned", dict[str, Any], dict[str, Any]], Awaitable[None]]  # (step, before, planned)
OnStep = Callable[["StepOutcome"], Awaitable[None]]

CHANGING_STEPS = frozenset(
    {Step.TRAFFIC_OFF, Step.SCALE_ZERO, Step.SCALE_RESTORE, Step.TRAFFIC_RESTORE, Step.ABORT, Step.RETRY}
)
# Their failure neither stops nor fails a rollback.
REPORTING_STEPS = frozenset({Step.EVIDENCE, Step.ANNOTATE, Step.EVENT})
STOPPING_RESULTS = frozenset({StepResult.REFUSED, StepResult.FAILED})


@dataclass(frozen=True, slots=True)
class Planned:
    """One step of a plan; traffic steps name their object. ``id`` is how the step is recorded."""

    step: Step
    ref: TrafficRef | None = None

    @property
    def id(self) -> str:
        return f"{self.step.value}:{self.ref.key}" if self.ref else self.step.value


@dataclass(frozen=True, kw_only=True)
class SafetyRules:
    """What the executor may touch at all."""

    marker_label: str = "version"  # the live Deployment must carry marker_label=marker_value
    marker_value: str = "canary"
    allowed_namespaces: frozenset[str]
    clusters: Mapping[str, frozenset[str]] | None = None  # multi-cluster: each cluster's own allowlist

    def refusal(self, target: TargetRef) -> tuple[FailureReason, str] | None:
        """Why the executor must not touch ``target`` at all (checked before any call), or None."""
        if target.cluster:
            if not self.clusters or target.cluster not in self.clusters:
                return FailureReason.UNKNOWN_CLUSTER, f"cluster {target.cluster!r} is not configured"
            allowed, where = self.clusters[target.cluster], f" of cluster {target.cluster!r}"
        elif self.clusters:
            return FailureReason.UNKNOWN_CLUSTER, "no cluster named, but clusters are configured"
        else:
            allowed, where = self.allowed_namespaces, ""
        if target.namespace not in allowed:
            return FailureReason.NAMESPACE_NOT_ALLOWED, f"namespace {target.namespace!r} is not in the allowlist{where}"
        return None


@dataclass(frozen=True, kw_only=True)
class EvidenceOptions:
    """Evidence capture between traffic off and the scale-down (:mod:`responder.engine.evidence`): per canary pod
    its status, the last ``log_lines`` lines of each container's log (and of the instance before its last restart)
    at most ``log_bytes`` each, and its recent Events, all within ``budget_s`` seconds."""

    log_lines: int = 200
    log_bytes: int = 65_536
    budget_s: float = 2.0
    max_pods: int = 10  # pods beyond these are named as missing evidence
    max_events: int = 20  # per pod, the most recent
    concurrency: int = 8  # API requests in flight at once


@dataclass(frozen=True, kw_only=True)
class RejectionMark:
    """GitOps awareness: the rollback also annotates the canary Deployment with what it rejected and why."""

    incident: str
    at: str  # RFC 3339 UTC


@dataclass(frozen=True, kw_only=True)
class StepOutcome:
    """What one step did; ``before``/``after`` hold the values an undo needs (for DRY_RUN: the planned after)."""

    step: Step
    result: StepResult
    before: dict[str, Any]
    after: dict[str, Any]
    attempts: int
    duration_s: float
    reason: FailureReason | None = None
    message: str = ""
    ref: TrafficRef | None = None

    @property
    def id(self) -> str:
        return Planned(self.step, self.ref).id


@dataclass(frozen=True, kw_only=True)
class TrafficPoint:
    """One traffic object as the rollback found it (``before``) and left it (``after``), as its switch's snapshot."""

    ref: TrafficRef
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class RestorePoint:
    """What an undo puts back (``replicas``, each traffic object's ``before``), while the live objects are still as
    the rollback left them (same images, 0 replicas, each traffic object at its ``after``), or already restored."""

    replicas: int
    images: tuple[str, ...]
    traffic: tuple[TrafficPoint, ...] = ()
    aborted: Mapping[str, Any] | None = None  # Argo Rollouts: the Rollout as the abort found it (retry checks it)


class Refusal(Exception):
    """The target failed a safety check: stop, mutate nothing, never retry."""

    def __init__(self, reason: FailureReason, message: str, *, before: dict[str, Any]) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.before = before


@dataclass
class Memo:
    """What one step knows across its attempts: the before-value of a write of ours that may have landed."""

    landed: dict[str, Any] | None = None  # set (durably) before each write; dropped when the write is refused
    seen: dict[str, Any] | None = None  # the last read, for the record of a step that fails

    def settled(self, current: dict[str, Any]) -> dict[str, Any]:
        """The before-value when the object is found already in the wanted state: our earlier write's read if
        one may have landed, else what is there now (NOOP)."""
        return self.landed if self.landed is not None else current

    def observed(self, current: dict[str, Any]) -> dict[str, Any]:
        self.seen = current
        return current


@dataclass(kw_only=True)
class Run:
    """The inputs of one rollback or restore, and what its steps learned so far."""

    cluster: ClusterPort
    target: TargetRef
    safety: SafetyRules
    retry: RetryPolicy
    dry_run: bool
    sleep: Callable[[float], Awaitable[None]]
    random: Callable[[], float]
    deployment: DeploymentView | None = None
    observed: dict[str, ObjectView] = field(default_factory=dict)  # CHECK's reads, used once by the first attempts
    restore: RestorePoint | None = None  # set for an undo
    ready_timeout_s: float = 120.0  # restore: how long the restored pods may take to become ready
    mark: RejectionMark | None = None  # set when GitOps annotations are on
    outcomes: list[StepOutcome] = field(default_factory=list)
    on_intent: Intent | None = None  # write-ahead: awaited before every write
    prior: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # recorded before-values by step id
    memo: Memo | None = None  # the running step's
    planned: Planned | None = None  # the running step
    guard: Callable[[str], None] | None = None  # raises when this replica may not act now (HA: not certain to lead)
    leftover: dict[str, str] = field(default_factory=dict)  # by step id: what a step could not do (PARTIAL)
    ignore_stable: bool = False  # act even though the stable Deployment has no ready replica (a human said so)
    evidence: EvidenceOptions | None = None  # capture evidence before the scale-down (None: off)
    notes: dict[str, str] = field(default_factory=dict)  # by step id: the message a step that did not fail leaves

    def switch(self, ref: TrafficRef) -> TrafficSwitch:
        return switch_for(ref, namespace=self.target.namespace)

    async def intend(self, before: dict[str, Any], planned: dict[str, Any]) -> None:
        """Record (durably, through ``on_intent``) what was read and what will be set, then send the write.

        A retry that reads what the durable intent already holds (its earlier write was lost or refused by a 5xx)
        needs no new record: the write may go out even while the database is unwritable. A read that differs
        waits for the record, whatever the database's state (never a change without its before-value)."""
        if self.memo is None or self.memo.landed != before:
            if self.on_intent is not None and self.planned is not None:
                await self.on_intent(self.planned, before, planned)
            if self.memo is not None:
                self.memo.landed = before
        self.check_guard()

    def check_guard(self) -> None:
        """Right before a mutation: may this replica still act? (Raises, through the guard, when not.)"""
        if self.guard is not None:
            self.guard(self.planned.id if self.planned is not None else "a change")


StepBody = Callable[[Run, Memo, Planned], Awaitable[Body]]


def settled_body(memo: Memo, current: dict[str, Any], after: dict[str, Any]) -> Body:
    """A step that finds its object already in the wanted state: NOOP if it was so from the start, DONE if an
    earlier write of ours landed (the before-value is then that write's read)."""
    before = memo.settled(current)
    return (StepResult.NOOP if before == after else StepResult.DONE), before, after

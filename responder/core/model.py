"""Value objects shared by every layer: alert events, targets, live-object views and the closed enums.

The enums double as metric label values and audit fields, so their values are stable API: renaming one is a
breaking change for dashboards and for anyone reading the audit log.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class PolicyMode(enum.StrEnum):
    """What a matching alert may cause."""

    IMMEDIATE = "immediate"  # roll back as soon as it fires
    PERSIST = "persist"  # roll back only if still firing after ``persist_for``
    NOTIFY = "notify"  # never act; record and notify
    IGNORE = "ignore"  # never act, never notify; only recorded (alerts no policy matches)


class ResultStatus:
    """The final statuses of a rollback the core distinguishes (the executor's own closed set)."""

    DONE = "done"
    FAILED = "failed"
    REFUSED = "refused"
    DRY_RUN = "dry_run"
    ABANDONED = "abandoned"  # a half-done rollback not resumed (stale): like a refusal, the target stays live
    HELD = "held"  # stable had no ready replica, nothing changed: like a failure, retried while the alerts fire


class Outcome(enum.StrEnum):
    """The verdict the core reaches for one alert event (or one timer tick)."""

    ROLLBACK = "rollback"  # start a rollback of the target now
    COALESCED = "coalesced"  # joined a rollback of the same target that is already under way
    PENDING = "pending"  # persist policy: waiting for the deadline
    CANCELLED = "cancelled"  # persist policy: resolved before the deadline
    NOTIFY = "notify"  # notify-only policy
    IGNORED = "ignored"  # no policy matches (another team's alert): recorded only
    RESOLVED = "resolved"  # a resolution; recorded, never acted on
    DUPLICATE = "duplicate"  # same (fingerprint, status, startsAt) already seen
    STALE = "stale"  # firing event older than a resolution already seen
    SUPPRESSED = "suppressed"  # target already rolled back and in cooldown
    HELD = "held"  # global rollback cap reached, or paused: a human must decide
    REFUSED = "refused"  # no configured target, or namespace not allowed
    RETRY = "retry"  # a failed rollback of the target is tried again (a new alert, or its retry timer)
    ERROR = "error"  # the event could not be processed: quarantined, recorded and reported, never retried


class Step(enum.StrEnum):
    CHECK = "check"  # re-read live objects and verify the target is a canary we may touch
    TRAFFIC_OFF = "traffic_off"  # one traffic object: no traffic to the canary (recorded as traffic_off:kind/name)
    EVIDENCE = "evidence"  # read the canary pods' status, log tails and Events before they go (reads only)
    SCALE_ZERO = "scale_zero"  # scale the canary Deployment to zero through /scale
    ANNOTATE = "annotate"  # GitOps: record the rejected images/revision on the Deployment (optional)
    EVENT = "event"  # emit a Kubernetes Event on the Deployment
    SCALE_RESTORE = "scale_restore"  # restore: put the recorded replica count back
    TRAFFIC_RESTORE = "traffic_restore"  # restore: one traffic object back as the rollback found it
    DELEGATE = "delegate"  # the rollback is another controller's (Flagger asks the rollback gate): nothing is changed
    ABORT = "abort"  # Argo Rollouts: abort the Rollout's update (its controller moves traffic and pods back to stable)
    RETRY = "retry"  # restore of an aborted Rollout: let its controller take up the update again


class StepResult(enum.StrEnum):
    DONE = "done"
    NOOP = "noop"  # already in the safe state
    REFUSED = "refused"  # safety check failed; nothing mutated
    FAILED = "failed"  # manual action required
    DRY_RUN = "dry_run"
    PARTIAL = "partial"  # evidence: some of it captured, the rest recorded as missing
    SKIPPED = "skipped"  # evidence: nothing to capture (no canary pod)


class FailureReason(enum.StrEnum):
    """Why a Kubernetes call failed; retryable ones are retried with backoff."""

    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    INVALID = "invalid"
    NOT_CANARY = "not_canary"
    NAMESPACE_NOT_ALLOWED = "namespace_not_allowed"
    CHANGED_SINCE = "changed_since_rollback"  # restore refused: someone changed the canary after the rollback
    NOTHING_TO_RESTORE = "nothing_to_restore"
    NOT_READY = "not_ready"  # restore: the canary's pods did not become ready in time; traffic stays off
    UNKNOWN_CLUSTER = "unknown_cluster"  # the target names a cluster the configuration does not know
    INCOMPLETE = "incomplete"  # a traffic object turned off as far as it could be: some canary traffic remains
    STABLE_UNAVAILABLE = "stable_unavailable"  # no stable replica available: canary traffic left on (HELD)

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {FailureReason.SERVER_ERROR, FailureReason.TIMEOUT, FailureReason.CONNECTION, FailureReason.CONFLICT}
)


@dataclass(frozen=True, slots=True)
class TrafficRef:
    """One object that routes traffic to a canary: its switch ``kind`` (``nginx``, ``httproute``, ``istio`` ...),
    its ``name`` in the target's namespace, and the kind's options (e.g. which backend is the canary), all rendered
    from the target's templates. The core treats it as data; :mod:`responder.traffic` knows what it means."""

    kind: str
    name: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """``kind/name``: unique within a target, and how its step is recorded (``traffic_off:kind/name``)."""
        return f"{self.kind}/{self.name}"

    def option(self, name: str) -> str | None:
        return next((value for key, value in self.options if key == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, **({"options": dict(self.options)} if self.options else {})}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrafficRef:
        options = data.get("options") or {}
        return cls(str(data["kind"]), str(data["name"]), tuple(sorted((str(k), str(v)) for k, v in options.items())))


@dataclass(frozen=True, slots=True)
class TargetRef:
    """A canary the responder may act on: its Deployment, what routes traffic to it (any number of traffic objects,
    each turned off before the scale-down), and its ``cluster`` ("" in a single-cluster configuration)."""

    namespace: str
    deployment: str
    traffic: tuple[TrafficRef, ...] = ()
    cluster: str = ""
    stable: str = ""  # the stable Deployment that takes the canary's traffic ("": not known, no stable-health guard)
    delegate: str = ""  # "flagger": the responder decides, Flagger rolls back when its rollback webhook asks

    @property
    def key(self) -> str:
        """``namespace/deployment``; ``cluster/namespace/deployment`` when a cluster is set (a namespace never
        contains a slash, so the two forms cannot be confused and single-cluster keys stay as they were)."""
        base = f"{self.namespace}/{self.deployment}"
        return f"{self.cluster}/{base}" if self.cluster else base

    def as_dict(self) -> dict[str, Any]:
        """The reference as plain data (stored with rollbacks and core inputs)."""
        found: dict[str, Any] = {"namespace": self.namespace, "deployment": self.deployment}
        if self.traffic:
            found["traffic"] = [ref.as_dict() for ref in self.traffic]
        if self.cluster:
            found["cluster"] = self.cluster
        if self.stable:
            found["stable"] = self.stable
        if self.delegate:
            found["delegate"] = self.delegate
        return found

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetRef:
        traffic = [TrafficRef.from_dict(ref) for ref in data.get("traffic") or []]
        # Written before traffic references existed: one Ingress and/or one HTTPRoute.
        if data.get("ingress"):
            traffic.append(TrafficRef("nginx", str(data["ingress"])))
        if data.get("httproute"):
            backend = (("canary_backend", str(data["canary_backend"])),) if data.get("canary_backend") else ()
            traffic.append(TrafficRef("httproute", str(data["httproute"]), backend))
        return cls(
            namespace=str(data["namespace"]),
            deployment=str(data["deployment"]),
            traffic=tuple(traffic),
            cluster=str(data.get("cluster") or ""),
            stable=str(data.get("stable") or ""),
            delegate=str(data.get("delegate") or ""),
        )


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert as carried by one notification: the unit the core decides on.

    Identity is ``(fingerprint, status, starts_at)``; ``external_url`` and ``receiver`` differ between
    Alertmanager HA peers and are deliberately not part of it (nor part of any decision).
    """

    fingerprint: str
    status: AlertStatus
    starts_at: datetime
    ends_at: datetime | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    generator_url: str = ""
    event_id: int = 0  # inbox row id; 0 for events that were never stored (dry-run replays)
    notification_id: int = 0
    forced: bool = False  # an admin replay with force: bypasses dedupe and cooldown, never the safety checks

    @property
    def identity(self) -> tuple[str, AlertStatus, datetime]:
        return (self.fingerprint, self.status, self.starts_at)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def with_ids(self, *, event_id: int, notification_id: int) -> AlertEvent:
        # Spelled out rather than dataclasses.replace, which inspects the fields on every call (once per stored event).
        return AlertEvent(
            self.fingerprint,
            self.status,
            self.starts_at,
            self.ends_at,
            self.labels,
            self.annotations,
            self.generator_url,
            event_id,
            notification_id,
            self.forced,
        )


@dataclass(frozen=True, slots=True)
class DeploymentView:
    namespace: str
    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    replicas: int
    resource_version: str
    images: tuple[str, ...] = ()
    ready_replicas: int = 0
    selector: str = ""  # its pods' label selector, in the API's string form ("" when it has none)


@dataclass(frozen=True, slots=True)
class ObjectView:
    """Any API object as plain JSON (what traffic switches read), with the resourceVersion to patch against."""

    namespace: str
    name: str
    body: Mapping[str, Any]
    resource_version: str


@dataclass(frozen=True, slots=True)
class ScaleView:
    namespace: str
    name: str
    replicas: int
    resource_version: str


@dataclass(frozen=True, slots=True)
class Termination:
    """How a container instance ended (``lastState.terminated``, or ``state.terminated`` for the current one)."""

    reason: str | None  # OOMKilled, Error, Completed ...
    exit_code: int | None
    finished_at: str | None  # RFC 3339, as the API wrote it


@dataclass(frozen=True, slots=True)
class ContainerView:
    """One container of a pod: its spec name merged with its status (a pod not started yet has no status)."""

    name: str
    ready: bool = False
    restarts: int = 0
    waiting: str | None = None  # state.waiting.reason: CrashLoopBackOff, ImagePullBackOff ...
    last_termination: Termination | None = None  # the previous instance, else the current one if it ended


@dataclass(frozen=True, slots=True)
class PodView:
    namespace: str
    name: str
    phase: str  # Pending, Running, Succeeded, Failed, Unknown
    ready: bool  # the Ready condition
    containers: tuple[ContainerView, ...] = ()
    owners: tuple[str, ...] = ()  # ownerReferences as "Kind/name" (a Deployment's pods: "ReplicaSet/<deploy>-<hash>")

    @property
    def restarts(self) -> int:
        return sum(c.restarts for c in self.containers)


@dataclass(frozen=True, slots=True)
class EventView:
    """One core/v1 Event about an object (``count`` 1 and ``last_seen`` from eventTime for events.k8s.io ones)."""

    type: str  # Normal, Warning
    reason: str
    message: str
    count: int
    last_seen: str | None


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, microseconds kept: how every time is written down (audit, records)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat()[:-6] + "Z"  # an aware UTC time always ends in "+00:00"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))

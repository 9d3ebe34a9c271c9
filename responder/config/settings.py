"""The configuration file's schema: every section as a typed, documented pydantic model, validated at load.

Secrets are never inline: each is a :class:`SecretRef` naming a file (a mounted Kubernetes Secret) or an
environment variable, resolved by :mod:`responder.config.secrets`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from responder.config.base import Duration, SecretRef, _Model
from responder.config.delivery import GitopsSettings, IncidentPagesSettings, NotificationSettings
from responder.core.decide import CoreSettings
from responder.core.model import PolicyMode
from responder.core.rules import PolicyRule, TargetRule, TrafficTemplate, is_dns_label, template_fields
from responder.traffic import kinds


class BasicAuth(_Model):
    username: str = Field(min_length=1)
    password: SecretRef


class WebhookAuth(_Model):
    """Bearer tokens (up to two valid at once, for rotation) and/or HTTP basic auth."""

    bearer_tokens: list[SecretRef] = Field(default_factory=list, max_length=2)
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _some_credential(self) -> WebhookAuth:
        if not self.bearer_tokens and self.basic is None:
            raise ValueError("configure at least one bearer token or basic auth for the webhook")
        return self


class AuthSettings(_Model):
    webhook: WebhookAuth
    admin_token: SecretRef
    read_token: SecretRef | None = None
    # Flagger's rollback webhook: the token it presents to the rollback gate (docs/flagger.md); without it the gate
    # is off. Its own secret: it can only ask whether to roll back.
    gate_token: SecretRef | None = None


class ListenSettings(_Model):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    body_limit_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The whole request body must arrive within this (else 408): a client that announces a body and trickles it
    # would otherwise hold a connection and a handler for ever.
    body_timeout: Duration = Field(default=timedelta(seconds=10), gt=timedelta(0))


class KubernetesSettings(_Model):
    """Which API to talk to: in-cluster service account, a kubeconfig (optionally a named context) or a URL."""

    mode: Literal["auto", "in_cluster", "kubeconfig", "url"] = "auto"
    kubeconfig: Path | None = None
    context: str | None = None
    url: str | None = None
    token: SecretRef | None = None
    request_timeout: Duration = timedelta(seconds=5)


class SafetySettings(_Model):
    allowed_namespaces: list[str] = Field(min_length=1)
    canary_marker: str = "version=canary"

    @model_validator(mode="after")
    def _check(self) -> SafetySettings:
        bad = [ns for ns in self.allowed_namespaces if not is_dns_label(ns)]
        if bad:
            raise ValueError(f"not valid namespace names: {bad}")
        if "=" not in self.canary_marker or not all(self.canary_marker.split("=", 1)):
            raise ValueError("canary_marker must look like label=value, e.g. version=canary")
        return self

    @property
    def marker(self) -> tuple[str, str]:
        key, value = self.canary_marker.split("=", 1)
        return key, value


class TrafficSettings(BaseModel):
    """One object that routes traffic to the canary: ``kind`` names a traffic switch (nginx, httproute, istio
    ...), ``name`` its object in the target's namespace, and any other key is one of that kind's options; every
    value may use ``{label}`` placeholders."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: str = Field(min_length=1)
    name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _known(self) -> TrafficSettings:
        switches = kinds()
        if self.kind not in switches:
            raise ValueError(f"unknown traffic kind {self.kind!r}; known: {', '.join(sorted(switches))}")
        declared = switches[self.kind].options
        given = self.options()
        unknown = sorted(set(given) - set(declared))
        missing = sorted(name for name, required in declared.items() if required and name not in given)
        if unknown or missing:
            parts = [f"unknown option(s) {unknown}" if unknown else "", f"missing {missing}" if missing else ""]
            raise ValueError(f"traffic kind {self.kind!r}: {'; '.join(p for p in parts if p)}")
        for template in (self.name, *given.values()):
            template_fields(template)
        switches[self.kind].validate_options(given)
        return self

    def options(self) -> dict[str, str]:
        extra = self.model_extra or {}
        bad = [key for key, value in extra.items() if not isinstance(value, str)]
        if bad:
            raise ValueError(f"traffic option values must be strings (templates): {bad}")
        return {key: str(value) for key, value in extra.items()}

    def template(self) -> TrafficTemplate:
        return TrafficTemplate(self.kind, self.name, tuple(sorted(self.options().items())))


class TargetSettings(_Model):
    """Maps alerts whose labels equal ``match`` to a canary; names may use ``{label}`` placeholders.

    ``traffic`` lists what routes traffic to the canary, each turned off before the scale-down. Without it, the
    shorthands apply: ``ingress`` (an NGINX canary Ingress, default ``{app}-canary``) and ``httproute`` with
    ``canary_backend`` (a Gateway API HTTPRoute and the canary Service among its backendRefs)."""

    name: str = Field(min_length=1)
    match: dict[str, str] = Field(default_factory=dict)
    namespace: str = "{namespace}"
    deployment: str = "{app}-canary"
    traffic: list[TrafficSettings] | None = None
    ingress: str | None = "{app}-canary"
    httproute: str | None = None
    canary_backend: str | None = None
    # Multi-cluster: the configured clusters this rule applies to (empty: every cluster).
    clusters: list[str] = Field(default_factory=list)
    # The stable Deployment that takes the canary's traffic: with no replica available there, canary traffic is
    # left on (HELD, paged, retried) instead of turning a partial outage into a full one. null: no such guard.
    stable: str | None = "{app}"
    # A canary a progressive-delivery controller runs; `deployment` then names its object, and no traffic objects
    # or stable guard apply (the controller owns the routing). flagger: the responder decides as usual but changes
    # nothing itself: Flagger rolls it back when its rollback webhook asks the responder's gate (docs/flagger.md);
    # `deployment` is the Canary's name. argo-rollouts: the rollback aborts the Argo Rollouts Rollout named
    # `deployment` (docs/argo-rollouts.md).
    delegate: Literal["flagger", "argo-rollouts"] | None = None

    @model_validator(mode="after")
    def _templates(self) -> TargetSettings:
        for template in (
            self.namespace,
            self.deployment,
            self.ingress,
            self.httproute,
            self.canary_backend,
            self.stable,
        ):
            template_fields(template or "")  # raises ValueError naming the template
        routing = {"traffic", "ingress", "httproute", "canary_backend"} & self.model_fields_set
        if self.delegate and routing:
            raise ValueError(f"delegate: {self.delegate} owns the canary's routing: drop {sorted(routing)}")
        if bool(self.httproute) != bool(self.canary_backend):
            raise ValueError("httproute and canary_backend go together (the route, and which backendRef is the canary)")
        if self.traffic is not None and ("ingress" in self.model_fields_set or self.httproute):
            raise ValueError("give either traffic or the ingress/httproute shorthands, not both")
        keys = [(t.kind, t.name) for t in self.traffic or []]
        if len(keys) != len(set(keys)):
            raise ValueError("each traffic object may be listed once")
        return self

    def traffic_templates(self) -> tuple[TrafficTemplate, ...]:
        if self.delegate:  # the controller owns the routing
            return ()
        if self.traffic is not None:
            return tuple(t.template() for t in self.traffic)
        found = [TrafficTemplate("nginx", self.ingress)] if self.ingress else []
        if self.httproute and self.canary_backend:
            found.append(TrafficTemplate("httproute", self.httproute, (("canary_backend", self.canary_backend),)))
        return tuple(found)


class ClusterSettings(_Model):
    """One target cluster (multi-cluster): how to reach its API and where the responder may act in it."""

    kubernetes: KubernetesSettings
    allowed_namespaces: list[str] | None = None  # default: safety.allowed_namespaces

    @model_validator(mode="after")
    def _check(self) -> ClusterSettings:
        bad = [ns for ns in self.allowed_namespaces or [] if not is_dns_label(ns)]
        if bad:
            raise ValueError(f"not valid namespace names: {bad}")
        if self.allowed_namespaces is not None and not self.allowed_namespaces:
            raise ValueError("allowed_namespaces must not be empty (leave it out to use safety.allowed_namespaces)")
        return self


class PolicySettings(_Model):
    name: str = Field(min_length=1)
    match: dict[str, str] = Field(default_factory=dict)
    mode: PolicyMode
    persist_for: Duration = timedelta(0)

    @model_validator(mode="after")
    def _persist(self) -> PolicySettings:
        if self.mode is PolicyMode.PERSIST and self.persist_for <= timedelta(0):
            raise ValueError("mode 'persist' needs a positive persist_for")
        return self


def _default_policies() -> list[PolicySettings]:
    return [
        PolicySettings(name="rollback", match={"action": "rollback"}, mode=PolicyMode.IMMEDIATE),
        PolicySettings(
            name="rollback-if-persists",
            match={"action": "rollback-if-persists"},
            mode=PolicyMode.PERSIST,
            persist_for=timedelta(minutes=2),
        ),
        PolicySettings(name="notify", match={"action": "notify"}, mode=PolicyMode.NOTIFY),
    ]


class RollbackCap(_Model):
    max: int = Field(default=3, ge=1)
    window: Duration = timedelta(minutes=10)


class RetrySettings(_Model):
    attempts: int = Field(default=6, ge=1, le=50)
    base_delay: Duration = timedelta(milliseconds=50)
    max_delay: Duration = timedelta(seconds=2)


class FailedRollbackSettings(_Model):
    """A rollback that failed (manual action required) leaves the canary live: it is tried again after
    ``retry_interval``, then at doubling intervals up to ``max_retry_interval``, while any of its alerts fires;
    a new alert for the target tries at once. Retries stop when its alerts resolve, on pause, or on a restore."""

    retry_interval: Duration = timedelta(seconds=30)
    max_retry_interval: Duration = timedelta(minutes=10)

    @model_validator(mode="after")
    def _order(self) -> FailedRollbackSettings:
        if self.retry_interval <= timedelta(0) or self.max_retry_interval < self.retry_interval:
            raise ValueError("need 0 < retry_interval <= max_retry_interval")
        return self


class RestoreSettings(_Model):
    """Restore (undo a rollback): the restored pods must be ready within ``ready_timeout`` before canary traffic is
    let back in; past it the restore stops with traffic still off (run it again once the pods are ready)."""

    ready_timeout: Duration = timedelta(seconds=120)


class EvidenceSettings(_Model):
    """Evidence captured after canary traffic is off and before the scale-down removes the canary's pods: per pod
    its status, restarts and last termination (OOMKilled ...), the last ``log_lines`` lines of each container's log
    (and of the instance before its last restart) at most ``log_bytes`` each, and its recent Events, all within
    ``budget``. A read that fails or runs out of time is recorded as missing evidence, never fails or delays the
    rollback beyond ``budget``. Needs RBAC ``list`` on pods and events and ``get`` on pods/log (the chart grants
    them exactly when this is enabled)."""

    enabled: bool = True
    log_lines: int = Field(default=200, ge=1, le=10_000)
    log_bytes: int = Field(default=65_536, ge=1_024, le=1_048_576)
    budget: Duration = Field(default=timedelta(seconds=2), gt=timedelta(0), le=timedelta(seconds=30))
    max_pods: int = Field(default=10, ge=1, le=100)
    max_events: int = Field(default=20, ge=0, le=200)


class PostgresSettings(_Model):
    """The shared PostgreSQL store: every replica reads and writes one database (one inbox, one audit chain)."""

    dsn: SecretRef  # a libpq connection string or URI (it may carry the password: a secret)
    connect_timeout: Duration = timedelta(seconds=5)
    statement_timeout: Duration = timedelta(seconds=5)  # also bounds a wait for the audit chain's lock
    poll_interval: Duration = timedelta(seconds=2)  # the leader's look for undecided events besides LISTEN/NOTIFY


class StorageSettings(_Model):
    """``backend: sqlite`` (the embedded default: one replica, the file at ``path``) or ``postgres`` (shared by
    every replica: required for high availability)."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: Path = Path("/var/lib/canary-responder/responder.db")
    postgres: PostgresSettings | None = None
    audit_hmac_key: SecretRef | None = None

    @model_validator(mode="after")
    def _backend(self) -> StorageSettings:
        if self.backend == "postgres" and self.postgres is None:
            raise ValueError("backend postgres needs storage.postgres.dsn (a secret: {file: ...} or {env: ...})")
        return self


class LeaderElectionSettings(_Model):
    """Run several replicas on the shared PostgreSQL store: every replica takes webhooks and serves the API; only
    the holder of a Kubernetes Lease decides and acts, fenced by its term in the database."""

    enabled: bool = False
    lease_name: str = "canary-responder"
    namespace: str | None = None  # default: $POD_NAMESPACE, else the service account's namespace, else "default"
    identity: str | None = None  # default: $POD_NAME, else the host name
    # Where the other replicas reach this one (operator requests are forwarded to the leader); default
    # http://$POD_IP:<listen.port>, else http://<host name>:<listen.port>.
    advertise_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/.*)?$")
    lease_duration: Duration = timedelta(seconds=15)
    renew_deadline: Duration = timedelta(seconds=10)
    retry_period: Duration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _timings(self) -> LeaderElectionSettings:
        lease, renew, retry = (d.total_seconds() for d in (self.lease_duration, self.renew_deadline, self.retry_period))
        if not (lease > renew > 1.2 * retry and retry >= 1):
            raise ValueError("need lease_duration > renew_deadline > 1.2 x retry_period, and retry_period >= 1s")
        if lease != int(lease):
            raise ValueError("lease_duration must be whole seconds (the Lease object stores seconds)")
        return self


class EngineSettings(_Model):
    max_backlog: int = Field(default=20_000, ge=1)
    # A rollback left half done (a crash, a failover) is resumed only if it started no longer ago than this, and
    # only after it is re-validated against the live objects; otherwise it is closed as abandoned, loudly.
    resume_within: Duration = timedelta(minutes=10)
    # A byte-for-byte repeat of a stored notification whose alerts were all decided within this window is recorded
    # in one receipt.repeats audit entry per commit instead of being stored and decided again (it would be decided
    # DUPLICATE). 0s sends every repeat the whole way. See responder/engine/repeats.py.
    repeat_window: Duration = timedelta(seconds=60)


class Settings(_Model):
    listen: ListenSettings = Field(default_factory=ListenSettings)
    auth: AuthSettings
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    safety: SafetySettings
    targets: list[TargetSettings] = Field(min_length=1)
    policies: list[PolicySettings] = Field(default_factory=_default_policies)
    coalesce_window: Duration = timedelta(seconds=30)
    cooldown: Duration = timedelta(minutes=15)
    rollback_cap: RollbackCap = Field(default_factory=RollbackCap)
    dedupe_ttl: Duration = timedelta(hours=6)
    dedupe_max: int = Field(default=100_000, ge=1_000, le=10_000_000)  # ~400 bytes each at the cap
    dry_run: bool = False
    retry: RetrySettings = Field(default_factory=RetrySettings)
    failed_rollbacks: FailedRollbackSettings = Field(default_factory=FailedRollbackSettings)
    restore: RestoreSettings = Field(default_factory=RestoreSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # SIGTERM (a rolling update, a drain): how long the work under way may finish before the process stops: the
    # rollbacks in progress (the rest are recorded as interrupted and resumed later), then the deliveries in
    # progress (Slack, Teams, GitOps: recorded, so the next process does not send them again); with leader
    # election the Lease is released after that. Keep twice this under terminationGracePeriodSeconds.
    shutdown_grace: Duration = timedelta(seconds=10)
    # Multi-cluster (absent: one cluster, the `kubernetes` section). The alert label `cluster_label` names the
    # cluster; an alert naming none of these is refused. `kubernetes` stays the home cluster (readiness, Lease).
    clusters: dict[str, ClusterSettings] = Field(default_factory=dict)
    cluster_label: str = Field(default="cluster", min_length=1)
    gitops: GitopsSettings = Field(default_factory=GitopsSettings)
    incident_pages: IncidentPagesSettings | None = None  # signed links to HTML incident pages (docs/incident-pages.md)

    @model_validator(mode="after")
    def _pages_need_a_public_url(self) -> Settings:
        if self.incident_pages is not None and not self.notifications.public_url:
            raise ValueError("incident_pages needs notifications.public_url: the links in messages must be absolute")
        return self

    @model_validator(mode="after")
    def _one_store_for_many_replicas(self) -> Settings:
        if self.leader_election.enabled and self.storage.backend != "postgres":
            raise ValueError(
                "leader_election runs several replicas, and an alert one replica accepted must be decided by whichever"
                " leads next: that needs the shared store (storage.backend: postgres); with sqlite run one replica"
                " and no leader election"
            )
        return self

    @model_validator(mode="after")
    def _clusters(self) -> Settings:
        bad = [name for name in self.clusters if not is_dns_label(name)]
        if bad:
            raise ValueError(f"cluster names must be DNS labels (lower case, digits, '-'): {bad}")
        for target in self.targets:
            unknown = [c for c in target.clusters if c not in self.clusters]
            if unknown:
                raise ValueError(f"target {target.name!r} names clusters that are not configured: {unknown}")
        return self

    def cluster_namespaces(self) -> dict[str, frozenset[str]] | None:
        """Multi-cluster: each cluster's namespace allowlist; None with one cluster."""
        if not self.clusters:
            return None
        default = self.safety.allowed_namespaces
        return {name: frozenset(c.allowed_namespaces or default) for name, c in self.clusters.items()}

    def core(self) -> CoreSettings:
        return CoreSettings(
            targets=tuple(
                TargetRule(
                    name=t.name,
                    match=t.match,
                    namespace=t.namespace,
                    deployment=t.deployment,
                    traffic=t.traffic_templates(),
                    clusters=tuple(t.clusters),
                    stable="" if t.delegate else (t.stable or ""),
                    delegate=t.delegate or "",
                )
                for t in self.targets
            ),
            policies=tuple(
                PolicyRule(name=p.name, match=p.match, mode=p.mode, persist_for=p.persist_for) for p in self.policies
            ),
            allowed_namespaces=frozenset(self.safety.allowed_namespaces),
            coalesce_window=self.coalesce_window,
            cooldown=self.cooldown,
            cap_max=self.rollback_cap.max,
            cap_window=self.rollback_cap.window,
            dedupe_ttl=self.dedupe_ttl,
            dedupe_max=self.dedupe_max,
            clusters=self.cluster_namespaces(),
            cluster_label=self.cluster_label,
            retry_interval=self.failed_rollbacks.retry_interval,
            max_retry_interval=self.failed_rollbacks.max_retry_interval,
        )

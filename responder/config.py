"""The one configuration file: a YAML document validated by pydantic into a typed :class:`Settings`.

Secrets are never required inline: each is a :class:`SecretRef` naming a file (a mounted Kubernetes Secret) or
an environment variable, resolved once by :func:`load_settings`. A bad file raises :class:`ConfigError` whose
message names each offending field path (``targets.0.deployment: ...``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator

from responder.core.decide import CoreSettings
from responder.core.model import PolicyMode
from responder.core.rules import PolicyRule, TargetRule, is_dns_label, template_fields

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")  # fullmatch: "$" would also match before a newline
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_DURATION_S = 366 * 86400  # a year: anything longer is a typo, and would overflow date arithmetic


def _parse_duration(value: Any) -> Any:
    """Accept ``90``, ``"90s"``, ``"2m"``, ``"1h"`` (Prometheus style, one unit), between 0 and a year."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"invalid duration {value!r}: use a number of seconds or e.g. 30s, 2m, 1h")
    if isinstance(value, str):
        found = _DURATION.fullmatch(value.strip())
        if not found:
            raise ValueError(f"invalid duration {value!r}: use a number of seconds or e.g. 30s, 2m, 1h")
        seconds = float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    else:
        seconds = float(value)
    if not 0 <= seconds <= _MAX_DURATION_S:  # also rejects NaN and infinities
        raise ValueError(f"duration {value!r} is out of range (0 to 366d)")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret lives: exactly one of ``file`` or ``env``."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env' (secrets are never written inline)")
        return self

    def describe(self) -> str:
        return f"file {self.file}" if self.file is not None else f"env ${self.env}"

    def resolve(self, environ: Mapping[str, str]) -> SecretStr:
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"cannot read secret file {self.file}: {exc.strerror}") from exc
        else:
            assert self.env is not None
            value = environ.get(self.env, "").strip()
        if not value:
            raise ConfigError(f"secret from {self.describe()} is empty or missing")
        return SecretStr(value)


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


class TargetSettings(_Model):
    """Maps alerts whose labels equal ``match`` to a canary; names may use ``{label}`` placeholders."""

    name: str = Field(min_length=1)
    match: dict[str, str] = Field(default_factory=dict)
    namespace: str = "{namespace}"
    deployment: str = "{app}-canary"
    ingress: str | None = "{app}-canary"
    # Gateway API: the HTTPRoute whose ``canary_backend`` backendRef (the canary Service) is weighted to 0.
    httproute: str | None = None
    canary_backend: str | None = None
    # Multi-cluster: the configured clusters this rule applies to (empty: every cluster).
    clusters: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _templates(self) -> TargetSettings:
        for template in (self.namespace, self.deployment, self.ingress, self.httproute, self.canary_backend):
            template_fields(template or "")  # raises ValueError naming the template
        if bool(self.httproute) != bool(self.canary_backend):
            raise ValueError("httproute and canary_backend go together (the route, and which backendRef is the canary)")
        return self


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


class GitopsWebhookSettings(_Model):
    """An outgoing webhook after each completed rollback, signed the Standard Webhooks way (HMAC-SHA256 over
    ``id.timestamp.body``) with ``secret`` (``whsec_`` + base64, or plain base64)."""

    url: str = Field(pattern=r"^https?://")
    secret: SecretRef
    timeout: Duration = timedelta(seconds=10)
    base_delay: Duration = timedelta(seconds=1)
    max_delay: Duration = timedelta(minutes=5)
    max_attempts: int = Field(default=20, ge=1, le=1000)


class GitopsSettings(_Model):
    """GitOps awareness: say what was rejected so a GitOps controller does not simply re-apply it."""

    annotate: bool = False  # annotate the rolled-back canary Deployment (needs `patch` on deployments)
    webhook: GitopsWebhookSettings | None = None

    @property
    def enabled(self) -> bool:
        return self.annotate or self.webhook is not None


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


class StorageSettings(_Model):
    path: Path = Path("/var/lib/canary-responder/responder.db")
    audit_hmac_key: SecretRef | None = None


class SlackSettings(_Model):
    """Where Slack messages go: an incoming-webhook URL, or a bot token and channel (needed for thread replies).
    Both URLs and tokens are secrets (a webhook URL is its own credential), so they are SecretRefs."""

    webhook_url: SecretRef | None = None
    bot_token: SecretRef | None = None
    channel: str | None = None
    api_base_url: str = "https://slack.com/api/"
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _one_mode(self) -> SlackSettings:
        if self.webhook_url is None and self.bot_token is None:
            raise ValueError("give webhook_url or bot_token (with channel)")
        if self.bot_token is not None and not self.channel:
            raise ValueError("bot_token needs a channel")
        return self


class OutboxSettings(_Model):
    """Delivery retries: capped exponential backoff (a 429's Retry-After wins when longer)."""

    base_delay: Duration = timedelta(seconds=1)
    max_delay: Duration = timedelta(minutes=5)
    max_attempts: int = Field(default=20, ge=1, le=1000)


class NotificationSettings(_Model):
    """Slack messages and incident reports; everything optional. ``dashboard_url`` may use ``{namespace}``,
    ``{app}``, ``{deployment}``, ``{from_ms}`` and ``{to_ms}`` (epoch milliseconds around the incident)."""

    slack: SlackSettings | None = None
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    prometheus_url: str | None = None
    prometheus_timeout: Duration = timedelta(seconds=3)
    public_url: str | None = None
    dashboard_url: str | None = None
    alertmanager_url: str | None = None
    runbook_url: str | None = None


class LeaderElectionSettings(_Model):
    """Run several replicas: only the holder of a Kubernetes Lease acts (the others report not-ready)."""

    enabled: bool = False
    lease_name: str = "canary-responder"
    namespace: str | None = None  # default: $POD_NAMESPACE, else the service account's namespace, else "default"
    identity: str | None = None  # default: $POD_NAME, else the host name
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
    storage: StorageSettings = Field(default_factory=StorageSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Multi-cluster (absent: one cluster, the `kubernetes` section). The alert label `cluster_label` names the
    # cluster; an alert naming none of these is refused. `kubernetes` stays the home cluster (readiness, Lease).
    clusters: dict[str, ClusterSettings] = Field(default_factory=dict)
    cluster_label: str = Field(default="cluster", min_length=1)
    gitops: GitopsSettings = Field(default_factory=GitopsSettings)

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
                    ingress=t.ingress,
                    httproute=t.httproute,
                    canary_backend=t.canary_backend,
                    clusters=tuple(t.clusters),
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


class Secrets:
    """Resolved secret values; ``repr`` never shows them."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        auth = settings.auth
        self.webhook_tokens = [ref.resolve(environ) for ref in auth.webhook.bearer_tokens]
        self.basic_user = auth.webhook.basic.username if auth.webhook.basic else None
        self.basic_password = auth.webhook.basic.password.resolve(environ) if auth.webhook.basic else None
        self.admin_token = auth.admin_token.resolve(environ)
        self.read_token = auth.read_token.resolve(environ) if auth.read_token else None
        self.kube_token = settings.kubernetes.token.resolve(environ) if settings.kubernetes.token else None
        key = settings.storage.audit_hmac_key
        self.audit_key = key.resolve(environ) if key else None
        slack = settings.notifications.slack
        self.slack_webhook_url = slack.webhook_url.resolve(environ) if slack and slack.webhook_url else None
        self.slack_bot_token = slack.bot_token.resolve(environ) if slack and slack.bot_token else None
        self.cluster_tokens = {
            name: c.kubernetes.token.resolve(environ) for name, c in settings.clusters.items() if c.kubernetes.token
        }
        hook = settings.gitops.webhook
        self.gitops_webhook_secret = hook.secret.resolve(environ) if hook else None
        self._check_one_role_each()

    def _check_one_role_each(self) -> None:
        """Each role needs its own secret. The webhook credentials sit in Alertmanager's configuration (and the
        read token in dashboards and scripts): were one of them also the admin token, or the read token also the
        admin token or a webhook credential, whoever holds the weaker secret would have the stronger role (and the
        server could not tell the roles apart for its 403s)."""
        webhook = {f"auth.webhook.bearer_tokens.{i}": token for i, token in enumerate(self.webhook_tokens)}
        if self.basic_password is not None:
            webhook["auth.webhook.basic.password"] = self.basic_password
        _refuse_shared({"auth.admin_token": self.admin_token}, webhook)
        if self.read_token is not None:
            _refuse_shared({"auth.read_token": self.read_token}, {"auth.admin_token": self.admin_token, **webhook})

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"


def _refuse_shared(stronger: Mapping[str, SecretStr], others: Mapping[str, SecretStr]) -> None:
    """ConfigError naming both fields (never the value) when a secret of ``stronger`` is one of ``others``."""
    for name, secret in stronger.items():
        for other, value in others.items():
            if secret.get_secret_value() == value.get_secret_value():
                raise ConfigError(f"{name} and {other} have the same value: give each role its own secret")


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{path}: {error['msg']}")
    return "\n".join(lines)


def parse_settings(document: Any) -> Settings:
    if not isinstance(document, dict):
        raise ConfigError("the configuration must be a YAML mapping")
    try:
        return Settings.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def format_duration(value: timedelta) -> str:
    """Display a duration in the one-unit form the parser reads back: 90s, 90m, 25h, 250ms."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    for unit, size_ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if total_ms and total_ms % size_ms == 0:
            return f"{total_ms // size_ms}{unit}"
    return f"{total_ms}ms"


def read_settings(path: Path) -> Settings:
    """Read and validate a configuration file without resolving its secrets."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_settings(document)


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> tuple[Settings, Secrets]:
    """Read, validate and resolve a configuration file; raise ConfigError naming what is wrong."""
    settings = read_settings(path)
    return settings, Secrets(settings, os.environ if environ is None else environ)

"""The settings of what leaves the responder besides Kubernetes calls: notifications (Slack ..., the outbox's
retries, the links in messages), the signed links to the incident pages, and GitOps awareness (annotations, the
signed webhook)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, model_validator

from responder.config.base import Duration, SecretRef, _Model


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


class TeamsSettings(_Model):
    """Where Microsoft Teams cards go: a Workflows webhook URL (the "Send webhook alerts to a channel" template's
    "When a Teams webhook request is received" trigger) or a legacy incoming-webhook URL. The URL carries its own
    signature (it is the credential), so it is a SecretRef. Teams webhooks cannot thread: a follow-up is a new card
    that names the incident."""

    webhook_url: SecretRef
    timeout: Duration = timedelta(seconds=10)


class OutboxSettings(_Model):
    """Delivery retries: capped exponential backoff (a 429's Retry-After wins when longer)."""

    base_delay: Duration = timedelta(seconds=1)
    max_delay: Duration = timedelta(minutes=5)
    max_attempts: int = Field(default=20, ge=1, le=1000)


class NotificationSettings(_Model):
    """Slack messages, Teams cards and incident reports; everything optional (each configured destination gets
    every message once). ``dashboard_url`` may use ``{namespace}``, ``{app}``, ``{deployment}``, ``{from_ms}`` and
    ``{to_ms}`` (epoch milliseconds around the incident)."""

    slack: SlackSettings | None = None
    teams: TeamsSettings | None = None
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    prometheus_url: str | None = None
    prometheus_timeout: Duration = timedelta(seconds=3)
    public_url: str | None = None
    dashboard_url: str | None = None
    alertmanager_url: str | None = None
    runbook_url: str | None = None


class IncidentPagesSettings(_Model):
    """Incident pages in a browser (``/incidents/{id}``), opened from the links in Slack and Teams messages without
    a bearer token: each link is signed with ``signing_key`` (HMAC-SHA256 over the incident id and the expiry) and
    expires ``link_ttl`` after the message was laid out. Rotating the key revokes every link sent; shortening
    ``link_ttl`` shortens them too. The pages are read-only; the API keeps its tokens. Needs
    ``notifications.public_url`` (links in messages must be absolute)."""

    signing_key: SecretRef
    link_ttl: Duration = timedelta(days=7)

    @model_validator(mode="after")
    def _ttl(self) -> IncidentPagesSettings:
        if self.link_ttl < timedelta(minutes=1):
            raise ValueError("link_ttl must be at least 1m (a link must survive the way from the message to a browser)")
        return self

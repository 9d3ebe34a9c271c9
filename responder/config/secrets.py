"""Resolved secret values: read once from files or the environment; ``repr`` never shows them, and one secret may
not serve two roles (a webhook credential that could also pause the responder)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from responder.config.base import ConfigError, SecretRef
from responder.config.settings import Settings


class Secrets:
    """Resolved secret values; ``repr`` never shows them."""

    def __init__(self, settings: Settings, environ: Mapping[str, str]) -> None:
        auth = settings.auth
        self.webhook_tokens = [ref.resolve(environ) for ref in auth.webhook.bearer_tokens]
        self.basic_user = auth.webhook.basic.username if auth.webhook.basic else None
        self.basic_password = auth.webhook.basic.password.resolve(environ) if auth.webhook.basic else None
        self.admin_token = auth.admin_token.resolve(environ)
        self.read_token = auth.read_token.resolve(environ) if auth.read_token else None
        self.gate_token = auth.gate_token.resolve(environ) if auth.gate_token else None
        self.kube_token = settings.kubernetes.token.resolve(environ) if settings.kubernetes.token else None
        key = settings.storage.audit_hmac_key
        self.audit_key = key.resolve(environ) if key else None
        postgres = settings.storage.postgres if settings.storage.backend == "postgres" else None
        self.postgres_dsn = postgres.dsn.resolve(environ) if postgres else None
        slack = settings.notifications.slack
        self.slack_webhook_url = slack.webhook_url.resolve(environ) if slack and slack.webhook_url else None
        self.slack_bot_token = slack.bot_token.resolve(environ) if slack and slack.bot_token else None
        teams = settings.notifications.teams
        self.teams_webhook_url = _http_url(teams.webhook_url, environ) if teams else None
        self.cluster_tokens = {
            name: c.kubernetes.token.resolve(environ) for name, c in settings.clusters.items() if c.kubernetes.token
        }
        hook = settings.gitops.webhook
        self.gitops_webhook_secret = hook.secret.resolve(environ) if hook else None
        pages = settings.incident_pages
        self.page_signing_key = _signing_key(pages.signing_key, environ) if pages else None
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
        if self.gate_token is not None:  # the gate token sits in Flagger's Canary objects: it may only ask the gate
            others = {"auth.admin_token": self.admin_token, **webhook}
            if self.read_token is not None:
                others["auth.read_token"] = self.read_token
            _refuse_shared({"auth.gate_token": self.gate_token}, others)
        if self.page_signing_key is not None:  # a token holder must not be able to mint page links, nor vice versa
            tokens = {"auth.admin_token": self.admin_token, **webhook}
            if self.read_token is not None:
                tokens["auth.read_token"] = self.read_token
            _refuse_shared({"incident_pages.signing_key": self.page_signing_key}, tokens)

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"


def _http_url(ref: SecretRef, environ: Mapping[str, str]) -> SecretStr:
    """A webhook URL secret, checked to be an http(s) URL; the error names where it came from, never the value."""
    value = ref.resolve(environ)
    if not value.get_secret_value().lower().startswith(("https://", "http://")):
        raise ConfigError(f"the webhook URL from {ref.describe()} is not an http(s) URL")
    return value


MIN_SIGNING_KEY_BYTES = 32


def _signing_key(ref: SecretRef, environ: Mapping[str, str]) -> SecretStr:
    """The page-link signing key, at least 32 bytes (HMAC-SHA256's block of entropy); the error never shows it."""
    value = ref.resolve(environ)
    if len(value.get_secret_value().encode()) < MIN_SIGNING_KEY_BYTES:
        raise ConfigError(
            f"incident_pages.signing_key from {ref.describe()} is shorter than {MIN_SIGNING_KEY_BYTES} bytes:"
            " use a random value, e.g. `openssl rand -base64 48`"
        )
    return value


def _refuse_shared(stronger: Mapping[str, SecretStr], others: Mapping[str, SecretStr]) -> None:
    """ConfigError naming both fields (never the value) when a secret of ``stronger`` is one of ``others``."""
    for name, secret in stronger.items():
        for other, value in others.items():
            if secret.get_secret_value() == value.get_secret_value():
                raise ConfigError(f"{name} and {other} have the same value: give each role its own secret")

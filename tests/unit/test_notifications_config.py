"""The ``notifications`` settings: optional, validated, secrets resolved like every other secret."""

from __future__ import annotations

from typing import Any

import pytest

from responder.config import ConfigError, Secrets, parse_settings


def document(notifications: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "auth": {"webhook": {"bearer_tokens": [{"env": "WH"}]}, "admin_token": {"env": "ADMIN"}},
        "safety": {"allowed_namespaces": ["shop"]},
        "targets": [{"name": "t"}],
    }
    if notifications is not None:
        doc["notifications"] = notifications
    return doc


def test_everything_is_optional() -> None:
    settings = parse_settings(document())
    assert settings.notifications.slack is None and settings.notifications.prometheus_url is None
    assert Secrets(settings, {"WH": "w", "ADMIN": "a"}).slack_bot_token is None


def test_bot_token_needs_a_channel_and_slack_needs_a_destination() -> None:
    with pytest.raises(ConfigError, match="bot_token needs a channel"):
        parse_settings(document({"slack": {"bot_token": {"env": "SLACK"}}}))
    with pytest.raises(ConfigError, match="webhook_url or bot_token"):
        parse_settings(document({"slack": {"channel": "#c"}}))
    with pytest.raises(ConfigError, match="webhook_url"):
        parse_settings(document({"slack": {"webhook_url": "https://hooks.slack.com/services/inline"}}))


def test_slack_secrets_are_resolved_and_never_shown() -> None:
    settings = parse_settings(
        document({"slack": {"webhook_url": {"env": "HOOK"}}, "outbox": {"base_delay": "50ms", "max_delay": "1s"}})
    )
    secrets = Secrets(settings, {"WH": "w", "ADMIN": "a", "HOOK": "https://hooks.example/T/B/secret"})
    assert secrets.slack_webhook_url is not None
    assert secrets.slack_webhook_url.get_secret_value() == "https://hooks.example/T/B/secret"
    assert "secret" not in repr(secrets) and "secret" not in str(secrets.slack_webhook_url)
    assert settings.notifications.outbox.base_delay.total_seconds() == 0.05

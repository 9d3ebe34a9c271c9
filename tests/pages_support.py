"""Shared by the incident page tests (HTTP and browser): a configuration with signed page links and a Slack-like
receiver, a hostile alert, and the page link as a Slack message carries it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from slack_fake import WEBHOOK_PATH, FakeSlack
from support import alert, write_config

SIGNING_KEY = "page-signing-key-3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"
ROTATED_KEY = "page-signing-key-rotated-8d6b4f2a0c9e7b5d3f1a2c4e"
SLACK_ENV = "SLACK_WEBHOOK_URL"

# What an alert's sender could put in labels and annotations: markup, script, event handlers, a javascript: URL.
HOSTILE_SCRIPT = "<script>window.__pwned = 'script'; alert('pwned')</script>"
HOSTILE_IMG = "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\">"
HOSTILE_LABEL = "\"><script>window.__pwned = 'label'</script>"
HOSTILE_URL = "javascript:window.__pwned='url';alert('url')"

_LINK = re.compile(r"<([^|<>]+/incidents/[^|<>]+)\|Audit record>")


def pages_config(
    tmp_path: Path,
    *,
    kube_url: str,
    slack: FakeSlack,
    public_url: str = "https://responder.example.com",
    key: str = SIGNING_KEY,
    link_ttl: str = "7d",
    pages: bool = True,
    **extra: Any,
) -> Path:
    """A configuration with Slack (incoming webhook), Prometheus (the fake's), and incident_pages (unless not
    ``pages``)."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "page-key").write_text(key + "\n")
    notifications = {
        "slack": {"webhook_url": {"env": SLACK_ENV}, "timeout": "2s"},
        "outbox": {"base_delay": "50ms", "max_delay": "200ms"},
        "prometheus_url": slack.url,
        "public_url": public_url,
        "alertmanager_url": "https://alertmanager.example.com",
    }
    if pages:
        extra["incident_pages"] = {"signing_key": {"file": str(secrets / "page-key")}, "link_ttl": link_ttl}
    return write_config(tmp_path, kube_url=kube_url, notifications=notifications, **extra)


def slack_environ(slack: FakeSlack) -> dict[str, str]:
    return {SLACK_ENV: slack.url + WEBHOOK_PATH}


def hostile_alert(**labels: str) -> dict[str, Any]:
    item = alert("CanaryHighErrorRate", team=HOSTILE_LABEL, **labels)
    item["annotations"]["description"] = f"canary 5xx ratio 12.5% {HOSTILE_SCRIPT}{HOSTILE_IMG}"
    item["annotations"]["runbook_url"] = HOSTILE_URL
    item["generatorURL"] = HOSTILE_URL
    return item


def page_link(slack_body: dict[str, Any]) -> str:
    """The "Audit record" link of a Slack message, as a person clicking it would follow it (mrkdwn unescaped)."""
    found = _LINK.search(orjson.dumps(slack_body).decode())
    assert found is not None, "no incident page link in the Slack message"
    return found.group(1).replace("&amp;", "&")

"""Notifications: what people read about an incident, laid out and delivered by one notifier per destination
(:mod:`responder.notify.base`), through one durable outbox (:mod:`responder.notify.outbox`)."""

from __future__ import annotations

from responder.config import Secrets, Settings
from responder.metrics import Metrics
from responder.notify.base import Notifier
from responder.notify.destinations.slack import SlackNotifier, SlackSender
from responder.notify.destinations.teams import TeamsNotifier, TeamsSender
from responder.notify.incident import Links
from responder.notify.outbox import Outbox
from responder.notify.prometheus import PrometheusMetrics
from responder.notify.signing import PageSigner
from responder.retry import Backoff
from responder.store import Store


def links_from(settings: Settings, secrets: Secrets) -> Links:
    n = settings.notifications
    return Links(
        public_url=n.public_url,
        dashboard_url=n.dashboard_url,
        alertmanager_url=n.alertmanager_url,
        runbook_url=n.runbook_url,
        pages=page_signer(settings, secrets),
    )


def page_signer(settings: Settings, secrets: Secrets) -> PageSigner | None:
    """The signer of incident page links, None when incident_pages is not configured."""
    pages, key = settings.incident_pages, secrets.page_signing_key
    if pages is None or key is None:
        return None
    return PageSigner(key=key.get_secret_value().encode(), ttl_s=round(pages.link_ttl.total_seconds()))


def build_notifiers(settings: Settings, secrets: Secrets) -> dict[str, Notifier]:
    """One notifier per configured destination (none configured: notices are recorded, nothing is sent)."""
    n = settings.notifications
    found: dict[str, Notifier] = {}
    if n.slack is not None:
        sender = SlackSender(
            webhook_url=secrets.slack_webhook_url.get_secret_value() if secrets.slack_webhook_url else None,
            bot_token=secrets.slack_bot_token.get_secret_value() if secrets.slack_bot_token else None,
            channel=n.slack.channel,
            api_base_url=n.slack.api_base_url,
            timeout_s=n.slack.timeout.total_seconds(),
        )
        found["slack"] = SlackNotifier(sender)
    if n.teams is not None and secrets.teams_webhook_url is not None:
        url, timeout_s = secrets.teams_webhook_url.get_secret_value(), n.teams.timeout.total_seconds()
        found["teams"] = TeamsNotifier(TeamsSender(webhook_url=url, timeout_s=timeout_s))
    return found


def build_outbox(settings: Settings, secrets: Secrets, *, store: Store, metrics: Metrics) -> Outbox:
    n = settings.notifications
    return Outbox(
        store=store,
        metrics=metrics,
        notifiers=build_notifiers(settings, secrets),
        prometheus=PrometheusMetrics(n.prometheus_url, timeout_s=n.prometheus_timeout.total_seconds()),
        links=links_from(settings, secrets),
        backoff=Backoff(
            attempts=n.outbox.max_attempts,
            base_delay_s=n.outbox.base_delay.total_seconds(),
            max_delay_s=n.outbox.max_delay.total_seconds(),
            jitter=0.0,
        ),
        coalesce_s=settings.coalesce_window.total_seconds(),
    )


__all__ = ["Links", "Notifier", "Outbox", "PageSigner", "build_notifiers", "build_outbox", "links_from", "page_signer"]

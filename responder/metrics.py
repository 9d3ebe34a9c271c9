"""The responder's own Prometheus metrics, bound to an injected registry (never the global one)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Receipt -> step done spans loopback API calls (ms) up to retries against a struggling API server (s).
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.webhooks = Counter("canary_responder_webhooks", "Webhook requests by result.", ["result"], registry=r)
        self.rejected = Counter(
            "canary_responder_rejected_requests", "Rejected HTTP requests by reason.", ["reason"], registry=r
        )
        self.events = Counter("canary_responder_alert_events", "Alert events by decision.", ["decision"], registry=r)
        self.repeats = Counter(
            "canary_responder_webhook_repeats",
            "Accepted notifications that were byte-for-byte repeats of a stored one (audited as receipt.repeats).",
            registry=r,
        )
        self.truncated = Counter(
            "canary_responder_truncated_alerts",
            "Alerts Alertmanager left out of notifications (max_alerts).",
            registry=r,
        )
        self.actions = Counter(
            "canary_responder_actions", "Rollback steps by step and result.", ["step", "result"], registry=r
        )
        self.action_latency = Histogram(
            "canary_responder_action_latency_seconds",
            "Time from webhook receipt to a rollback step being done.",
            ["step"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.backlog = Gauge("canary_responder_engine_backlog", "Accepted alert events not yet decided.", registry=r)
        self.audit_length = Gauge("canary_responder_audit_chain_length", "Entries in the audit hash chain.", registry=r)
        self.paused = Gauge("canary_responder_paused", "1 while an admin has paused the responder.", registry=r)
        self.rollbacks = Counter("canary_responder_rollbacks", "Rollbacks by final status.", ["status"], registry=r)
        self.outbox_depth = Gauge(
            "canary_responder_outbox_depth", "Notifications waiting to be delivered (Slack outbox).", registry=r
        )
        self.outbox_oldest_age = Gauge(
            "canary_responder_outbox_oldest_age_seconds", "Age of the oldest undelivered notification.", registry=r
        )
        self.notifications = Counter(
            "canary_responder_notification_deliveries",
            "Notification delivery attempts by result (delivered, retry, failed), failure reason and destination.",
            ["result", "reason", "destination"],
            registry=r,
        )

        self.task_crashes = Counter(
            "canary_responder_task_crashes",
            "Unexpected exceptions that ended (a round of) a background task, by task; it was restarted.",
            ["task"],
            registry=r,
        )
        self.poison_writes = Counter(
            "canary_responder_poison_writes",
            "Database writes refused for their own data (isolated, reported, replaced by a quarantine record).",
            registry=r,
        )
        self.internal_errors = Counter(
            "canary_responder_http_internal_errors",
            "HTTP requests answered 500 because a handler raised unexpectedly, by route template (see the log).",
            ["route"],
            registry=r,
        )

    def crashed(self, task: str) -> None:
        self.task_crashes.labels(task).inc()

    def bind_gauges(self, *, backlog: Callable[[], float], audit_length: Callable[[], float]) -> None:
        self.backlog.set_function(backlog)
        self.audit_length.set_function(audit_length)

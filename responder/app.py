"""Wiring: builds the services from the settings and ties their lifetime to the aiohttp application."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from aiohttp import web

from responder.actions import RetryPolicy, SafetyRules
from responder.adapters.kube import open_cluster
from responder.admin import add_admin_routes
from responder.config import Secrets, Settings
from responder.core.decide import DecisionCore
from responder.engine import Clock, Engine, EngineOptions, utc_now
from responder.incidents import INCIDENTS, add_incident_routes
from responder.metrics import Metrics
from responder.outbox import build_outbox
from responder.ports import ClusterPort
from responder.store import AuditSink, Store
from responder.web import RUNTIME, Services, create_app

log = logging.getLogger("responder.app")


def stdout_audit_sink(entries: list[dict[str, Any]]) -> None:
    """Each audit entry is also one JSON line on stdout, for Loki / Elasticsearch (one write per commit)."""
    sys.stdout.buffer.write(b"".join(orjson.dumps({"log": "audit", **entry}) + b"\n" for entry in entries))
    sys.stdout.flush()


async def connect_cluster(settings: Settings, secrets: Secrets) -> ClusterPort:
    kube = settings.kubernetes
    mode = kube.mode
    if mode == "auto":
        mode = "url" if kube.url else "kubeconfig"
    return await open_cluster(
        host=kube.url if mode == "url" else None,
        kubeconfig=str(kube.kubeconfig) if kube.kubeconfig else None,
        context=kube.context,
        in_cluster=mode == "in_cluster",
        request_timeout_s=kube.request_timeout.total_seconds(),
        token=secrets.kube_token.get_secret_value() if secrets.kube_token else None,
    )


def engine_options(settings: Settings) -> EngineOptions:
    key, value = settings.safety.marker
    horizon = max(
        settings.dedupe_ttl,
        settings.cooldown,
        settings.rollback_cap.window,
        timedelta(minutes=1),
        *(p.persist_for for p in settings.policies),
    )
    return EngineOptions(
        safety=SafetyRules(
            marker_label=key, marker_value=value, allowed_namespaces=frozenset(settings.safety.allowed_namespaces)
        ),
        retry=RetryPolicy(
            attempts=settings.retry.attempts,
            base_delay_s=settings.retry.base_delay.total_seconds(),
            max_delay_s=settings.retry.max_delay.total_seconds(),
        ),
        dry_run=settings.dry_run,
        max_backlog=settings.engine.max_backlog,
        replay_horizon=horizon,
    )


def build_app(
    settings: Settings,
    secrets: Secrets,
    *,
    cluster: ClusterPort | None = None,
    metrics: Metrics | None = None,
    clock: Clock = utc_now,
    audit_sink: AuditSink | None = stdout_audit_sink,
) -> web.Application:
    """The complete responder as an aiohttp application; resources open on startup and close on cleanup.

    ``cluster`` replaces the Kubernetes connection built from the settings (the demo and tests pass one bound
    to their emulator); it is then not closed here.
    """
    app = create_app(settings, secrets)
    add_admin_routes(app)
    add_incident_routes(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        key = secrets.audit_key.get_secret_value().encode() if secrets.audit_key else None
        store = Store(settings.storage.path, audit_key=key, sink=audit_sink)
        await store.open()
        own_cluster = cluster is None
        live_cluster = cluster or await connect_cluster(settings, secrets)
        the_metrics = metrics or Metrics()
        outbox = build_outbox(settings, secrets, store=store, metrics=the_metrics)
        await outbox.start()  # before the engine: resumed rollbacks may notify at once
        app[INCIDENTS].reader, app[INCIDENTS].links = outbox.reader, outbox.links
        engine = Engine(
            core=DecisionCore(settings.core()),
            store=store,
            cluster=live_cluster,
            metrics=the_metrics,
            options=engine_options(settings),
            clock=clock,
            notice_hook=outbox.hook,
        )
        the_metrics.bind_gauges(backlog=lambda: engine.backlog, audit_length=lambda: store.chain_length)
        await engine.start()
        app[RUNTIME].services = Services(store=store, engine=engine, cluster=live_cluster, metrics=the_metrics)
        log.info("canary-responder ready (dry_run=%s, audit chain length %d)", settings.dry_run, store.chain_length)
        try:
            yield
        finally:
            app[RUNTIME].services = None
            await engine.stop()
            await outbox.stop()
            await store.close()
            if own_cluster:
                await live_cluster.close()

    app.cleanup_ctx.append(lifecycle)
    return app

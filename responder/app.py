"""Wiring: builds the services from the settings and ties their lifetime to the aiohttp application."""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from responder.adapters.kube import KubeCluster, open_cluster
from responder.adapters.leader import LeaseSettings
from responder.config import ConfigError, KubernetesSettings, Secrets, Settings
from responder.core.decide import DecisionCore
from responder.engine import Clock, Engine, EngineOptions, utc_now
from responder.engine.executor import EvidenceOptions, RetryPolicy, SafetyRules
from responder.gitops import GitopsRelay, build_relay
from responder.ha import Replication, advertise_url
from responder.health import Health
from responder.http.admin import add_admin_routes
from responder.http.gates import add_gate_routes
from responder.http.incidents import INCIDENTS, add_incident_routes
from responder.http.openapi import add_openapi_route
from responder.http.pages import add_page_routes
from responder.http.runtime import Alone
from responder.http.server import RUNTIME, Services, create_app, rejection_summaries
from responder.metrics import Metrics
from responder.notify import build_outbox
from responder.ports import ClusterPort, Notice, NoticeHook
from responder.store import AuditSink, Store, Tx
from responder.store.factory import open_store

log = logging.getLogger("responder.app")


def stdout_audit_sink(entries: list[dict[str, Any]]) -> None:
    """Each audit entry is also one JSON line on stdout, for Loki / Elasticsearch (one write per commit)."""
    sys.stdout.buffer.write(b"".join(orjson.dumps({"log": "audit", **entry}) + b"\n" for entry in entries))
    sys.stdout.flush()


async def connect_cluster(settings: Settings, secrets: Secrets) -> ClusterPort:
    return await _connect(settings.kubernetes, secrets.kube_token.get_secret_value() if secrets.kube_token else None)


async def connect_clusters(settings: Settings, secrets: Secrets, stack: AsyncExitStack) -> dict[str, ClusterPort]:
    """Multi-cluster: one connection per configured cluster (each from its own kubeconfig context, URL or
    service account), closed by ``stack``."""
    found: dict[str, ClusterPort] = {}
    for name, cluster in settings.clusters.items():
        token = secrets.cluster_tokens.get(name)
        port = await _connect(cluster.kubernetes, token.get_secret_value() if token else None)
        stack.push_async_callback(port.close)
        found[name] = port
    return found


async def _connect(kube: KubernetesSettings, token: str | None) -> ClusterPort:
    mode = kube.mode
    if mode == "auto":
        mode = "url" if kube.url else "kubeconfig"
    return await open_cluster(
        host=kube.url if mode == "url" else None,
        kubeconfig=str(kube.kubeconfig) if kube.kubeconfig else None,
        context=kube.context,
        in_cluster=mode == "in_cluster",
        request_timeout_s=kube.request_timeout.total_seconds(),
        token=token,
    )


def _replication(settings: Settings, cluster: ClusterPort, store: Store, health: Health) -> Replication | None:
    election = settings.leader_election
    if not election.enabled:
        return None
    if not isinstance(cluster, KubeCluster):
        raise ConfigError("leader_election needs the Kubernetes API connection built from the configuration")
    lease = LeaseSettings(
        name=election.lease_name,
        namespace=election.namespace or os.environ.get("POD_NAMESPACE") or _service_account_namespace(),
        identity=election.identity or os.environ.get("POD_NAME") or socket.gethostname(),
        lease_duration_s=round(election.lease_duration.total_seconds()),
        renew_deadline_s=election.renew_deadline.total_seconds(),
        retry_period_s=election.retry_period.total_seconds(),
    )
    url = advertise_url(election.advertise_url, settings.listen.port)
    return Replication(
        store=store,
        api_client=cluster.api_client(),
        lease=lease,
        url=url,
        health=health,
        shutdown_grace_s=settings.shutdown_grace.total_seconds(),
    )


def _service_account_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else "default"


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
            marker_label=key,
            marker_value=value,
            allowed_namespaces=frozenset(settings.safety.allowed_namespaces),
            clusters=settings.cluster_namespaces(),
        ),
        retry=RetryPolicy(
            attempts=settings.retry.attempts,
            base_delay_s=settings.retry.base_delay.total_seconds(),
            max_delay_s=settings.retry.max_delay.total_seconds(),
        ),
        dry_run=settings.dry_run,
        max_backlog=settings.engine.max_backlog,
        replay_horizon=horizon,
        annotate=settings.gitops.annotate,
        restore_ready_timeout_s=settings.restore.ready_timeout.total_seconds(),
        evidence=evidence_options(settings),
        resume_within=settings.engine.resume_within,
        repeat_window=settings.engine.repeat_window,
        inbox_poll_s=settings.storage.postgres.poll_interval.total_seconds() if settings.storage.postgres else 2.0,
    )


def evidence_options(settings: Settings) -> EvidenceOptions | None:
    found = settings.evidence
    if not found.enabled:
        return None
    return EvidenceOptions(
        log_lines=found.log_lines,
        log_bytes=found.log_bytes,
        budget_s=found.budget.total_seconds(),
        max_pods=found.max_pods,
        max_events=found.max_events,
    )


def _notice_hooks(*hooks: NoticeHook | None) -> NoticeHook:
    """One notice hook calling each of ``hooks`` in order, inside the same transaction."""
    present = [h for h in hooks if h is not None]

    def hook(tx: Tx, notice: Notice) -> None:
        for each in present:
            each(tx, notice)

    return hook


def build_app(
    settings: Settings,
    secrets: Secrets,
    *,
    cluster: ClusterPort | None = None,
    clusters: Mapping[str, ClusterPort] | None = None,
    metrics: Metrics | None = None,
    clock: Clock = utc_now,
    audit_sink: AuditSink | None = stdout_audit_sink,
) -> web.Application:
    """The complete responder as an aiohttp application; resources open on startup and close on cleanup.

    ``cluster`` replaces the Kubernetes connection built from the settings (the demo and tests pass one bound
    to their emulator); it is then not closed here. ``clusters`` likewise replaces the per-cluster connections
    of a multi-cluster configuration.
    """
    app = create_app(settings, secrets)
    add_admin_routes(app)
    add_gate_routes(app)
    add_incident_routes(app)
    add_openapi_route(app)
    if settings.incident_pages is not None:
        add_page_routes(app)  # HTML for browsers, behind signed links: not part of the API (nor its OpenAPI document)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # Everything opened is closed again in reverse order, also when a later step of the startup fails.
        async with AsyncExitStack() as stack:
            the_metrics = metrics or Metrics()
            health = Health(the_metrics)
            store = open_store(settings, secrets, sink=audit_sink)
            store.on_crash = health.crashed
            await store.open()
            stack.push_async_callback(store.close)
            live_cluster = cluster
            if live_cluster is None:
                live_cluster = await connect_cluster(settings, secrets)
                stack.push_async_callback(live_cluster.close)
            replication = _replication(settings, live_cluster, store, health)
            alone = replication is None  # one replica: it always leads; several: only while it holds the Lease
            outbox = build_outbox(settings, secrets, store=store, metrics=the_metrics)
            outbox.health = health
            grace = settings.shutdown_grace.total_seconds()
            await outbox.start(worker=alone)  # before the engine: resumed rollbacks may notify at once
            stack.push_async_callback(outbox.stop, grace)  # SIGTERM: the delivery in hand finishes first
            app[INCIDENTS].reader, app[INCIDENTS].links = outbox.reader, outbox.links
            relay: GitopsRelay | None = build_relay(settings.gitops, secrets, store=store)
            if relay is not None:
                relay.health = health
                await relay.start(worker=alone)  # before the engine, like the outbox
                stack.push_async_callback(relay.stop, grace)
            targets = dict(clusters) if clusters is not None else await connect_clusters(settings, secrets, stack)
            engine = Engine(
                core=DecisionCore(settings.core()),
                store=store,
                cluster=live_cluster,
                metrics=the_metrics,
                options=engine_options(settings),
                clock=clock,
                notice_hook=_notice_hooks(outbox.hook, relay.hook if relay is not None else None),
                clusters=targets,
                health=health,
                authority=replication.authority if replication is not None else None,
            )
            the_metrics.bind_gauges(backlog=lambda: engine.backlog, audit_length=lambda: store.chain_length)
            stack.push_async_callback(functools.partial(engine.stop, grace_s=grace, why="shutting down"))
            if replication is None:
                await engine.start()
            else:
                for port in (live_cluster, *targets.values()):
                    if isinstance(port, KubeCluster):  # the API server's audit log tells which replica acted
                        port.name_client(replication.elector.holder)
                replication.attach(engine, [w for w in (outbox, relay) if w is not None])
                await replication.start()
                stack.push_async_callback(replication.stop)  # first at shutdown: finish, then release the Lease
            app[RUNTIME].services = Services(
                store=store,
                engine=engine,
                cluster=live_cluster,
                metrics=the_metrics,
                leadership=replication if replication is not None else Alone(),
                health=health,
            )
            stack.callback(setattr, app[RUNTIME], "services", None)
            log.info("canary-responder ready (dry_run=%s, audit chain length %d)", settings.dry_run, store.chain_length)
            yield

    app.cleanup_ctx.append(lifecycle)
    app.cleanup_ctx.append(rejection_summaries)  # after lifecycle: its last summary is written before the store closes
    return app

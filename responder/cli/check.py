"""``canary-responder check-config``: validate a configuration, check that the files it names exist and parse,
print what it resolves to (secrets named by their source, never shown), and with ``--probe`` connect, read-only,
to Kubernetes, Slack, Teams and Prometheus where configured, and report each.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from responder.cli.serve import kubernetes_endpoint
from responder.config import Secrets, Settings, format_duration
from responder.ports import ClusterError, ClusterPort


@dataclass(frozen=True, slots=True)
class Probe:
    what: str
    ok: bool
    detail: str


async def file_problems(settings: Settings) -> tuple[list[str], list[str]]:
    """(errors, warnings): what would stop ``serve`` at startup that can be seen without the network. A kubeconfig
    the configuration names must exist, parse and hold its context (an error); the default one (``$KUBECONFIG``
    or ``~/.kube/config``, when none is named) is only warned about: the machine that checks is often not the one
    that serves."""
    errors: list[str] = []
    kube = settings.kubernetes
    if kube.kubeconfig is not None and not kube.kubeconfig.is_file():
        errors.append(f"kubernetes.kubeconfig: no such file: {kube.kubeconfig}")
    elif kube.kubeconfig is not None and _mode(settings) == "kubeconfig":
        errors += await _opens(settings)
    for name, cluster in settings.clusters.items():
        path = cluster.kubernetes.kubeconfig
        if path is not None and not path.is_file():
            errors.append(f"clusters.{name}.kubernetes.kubeconfig: no such file: {path}")
    warnings = []
    if kube.kubeconfig is None and _mode(settings) == "kubeconfig" and not settings.clusters:
        default, exists = _default_kubeconfig()
        found = await _opens(settings) if exists else [f"kubernetes: no kubeconfig at {default}"]
        warnings += [f"{w} (none named in the configuration: serve uses $KUBECONFIG or ~/.kube/config)" for w in found]
    return errors, warnings


def _default_kubeconfig() -> tuple[Path, bool]:
    default = Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")
    return default, default.is_file()


def _mode(settings: Settings) -> str:
    kube = settings.kubernetes
    return kube.mode if kube.mode != "auto" else ("url" if kube.url else "kubeconfig")


async def _opens(settings: Settings) -> list[str]:
    """Load the kubeconfig as serve will (no network, no token): a file that does not parse, or names no such
    context, is found here rather than in a traceback at startup."""
    from responder.adapters.kube import open_cluster

    kube = settings.kubernetes
    try:
        cluster = await open_cluster(kubeconfig=str(kube.kubeconfig) if kube.kubeconfig else None, context=kube.context)
    except ClusterError as exc:
        return [f"kubernetes: {exc.message}"]
    await cluster.close()
    return []


async def probe(settings: Settings, secrets: Secrets) -> list[Probe]:
    """Read-only checks of everything the responder will talk to; each is reported, none stops the others."""
    timeout = aiohttp.ClientTimeout(total=settings.kubernetes.request_timeout.total_seconds() + 5)
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        found = [await _kubernetes(settings, secrets)]
        found += await _notifications(settings, secrets, session)
    return found


async def _kubernetes(settings: Settings, secrets: Secrets) -> Probe:
    from responder.app import connect_cluster

    where = kubernetes_endpoint(settings)
    try:
        cluster: ClusterPort = await connect_cluster(settings, secrets)
    except ClusterError as exc:
        return Probe("kubernetes", False, exc.message)
    try:
        await cluster.ping()
    except ClusterError as exc:
        return Probe("kubernetes", False, f"{where}: {exc.message}")
    finally:
        await cluster.close()
    return Probe("kubernetes", True, f"{where}: the API server answered /version")


async def _notifications(settings: Settings, secrets: Secrets, session: aiohttp.ClientSession) -> list[Probe]:
    n, found = settings.notifications, []
    if n.slack is not None and secrets.slack_bot_token is not None:
        found.append(await _slack_bot(n.slack.api_base_url, secrets.slack_bot_token.get_secret_value(), session))
    elif n.slack is not None:
        found.append(Probe("slack", True, "incoming webhook: not probed (it can only be checked by posting)"))
    if n.teams is not None:
        found.append(Probe("teams", True, "webhook: not probed (it can only be checked by posting)"))
    if n.prometheus_url:
        found.append(await _prometheus(n.prometheus_url, session))
    return found


async def _slack_bot(base: str, token: str, session: aiohttp.ClientSession) -> Probe:
    url = base.rstrip("/") + "/auth.test"  # read-only: who the token is
    try:
        async with session.post(url, headers={"Authorization": f"Bearer {token}"}) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Probe("slack", False, f"{base}: no answer ({type(exc).__name__})")
    if isinstance(body, dict) and body.get("ok"):
        return Probe("slack", True, f"bot token accepted (team {body.get('team', '?')}, user {body.get('user', '?')})")
    error = body.get("error", "?") if isinstance(body, dict) else "?"
    return Probe("slack", False, f"the bot token was refused: {error}")


async def _prometheus(base: str, session: aiohttp.ClientSession) -> Probe:
    url = base.rstrip("/") + "/api/v1/query"
    try:
        async with session.get(url, params={"query": "vector(1)"}) as response:
            body = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return Probe("prometheus", False, f"{base}: no answer ({type(exc).__name__})")
    if status == 200 and isinstance(body, dict) and body.get("status") == "success":
        return Probe("prometheus", True, f"{base}: queries answered")
    return Probe("prometheus", False, f"{base}: answered {status}")


def run_probes(settings: Settings, secrets: Secrets) -> list[Probe]:
    return asyncio.run(probe(settings, secrets))


def probe_lines(found: list[Probe]) -> list[str]:
    return [f"probe {p.what}: {'OK' if p.ok else 'FAILED'} - {p.detail}" for p in found]


def describe_settings(settings: Settings) -> str:
    lines = [
        f"listen: {settings.listen.host}:{settings.listen.port} (body limit {settings.listen.body_limit_bytes} B)",
        f"dry_run: {settings.dry_run}",
        f"database: {settings.storage.path}"
        if settings.storage.backend == "sqlite"
        else "database: PostgreSQL (storage.postgres.dsn, shared by every replica)",
        f"allowed namespaces: {', '.join(settings.safety.allowed_namespaces)}",
        f"canary marker: {settings.safety.canary_marker}",
        "targets:",
    ]
    for t in settings.targets:
        match = ", ".join(f"{k}={v}" for k, v in t.match.items()) or "(any alert)"
        traffic = ", ".join(
            f"{x.kind}/{x.name}" + (f" ({', '.join(f'{k}={v}' for k, v in x.options)})" if x.options else "")
            for x in t.traffic_templates()
        )
        lines.append(
            f"  - {t.name}: when {match} -> namespace {t.namespace}, deployment {t.deployment},"
            f" traffic {traffic or '(none: scale-down only)'}"
            + (f", clusters {', '.join(t.clusters)}" if t.clusters else "")
        )
    for name, namespaces in sorted((settings.cluster_namespaces() or {}).items()):
        lines.append(
            f"cluster {name} (alert label {settings.cluster_label}={name}): namespaces {', '.join(sorted(namespaces))}"
        )
    if settings.gitops.enabled:
        hook = settings.gitops.webhook
        lines.append(f"gitops: annotate {settings.gitops.annotate}, webhook {hook.url if hook else '(none)'}")
    lines.append("policies (first match wins; an alert no policy matches is only recorded):")
    for p in settings.policies:
        match = ", ".join(f"{k}={v}" for k, v in p.match.items()) or "(any alert)"
        extra = f" for {format_duration(p.persist_for)}" if p.mode.value == "persist" else ""
        lines.append(f"  - {p.name}: when {match} -> {p.mode.value}{extra}")
    cap = settings.rollback_cap
    lines += [
        f"coalesce window: {format_duration(settings.coalesce_window)}",
        f"cooldown: {format_duration(settings.cooldown)}",
        f"rollback cap: {cap.max} per {format_duration(cap.window)}",
        f"dedupe ttl: {format_duration(settings.dedupe_ttl)}",
        f"exact repeats: {_repeats(settings)}",
    ]
    auth = settings.auth
    sources = [ref.describe() for ref in auth.webhook.bearer_tokens]
    lines.append(f"webhook auth: bearer from {', '.join(sources) or '(none)'}; basic: {bool(auth.webhook.basic)}")
    lines.append(f"kubernetes: {kubernetes_endpoint(settings)}" + _kube_token(settings))
    lines += notification_lines(settings)
    return "\n".join(lines)


def _repeats(settings: Settings) -> str:
    window = settings.engine.repeat_window
    if window.total_seconds() <= 0:
        return "off (every repeat is stored and decided again)"
    return f"audited as repeats within {format_duration(window)} of their alerts' decision"


def _kube_token(settings: Settings) -> str:
    token = settings.kubernetes.token
    return f"; bearer token from {token.describe()} (redacted)" if token else ""


def notification_lines(settings: Settings) -> list[str]:
    """Where people are told, with every secret named by its source and never shown."""
    n = settings.notifications
    lines = []
    if n.slack is not None:
        if n.slack.bot_token is not None:
            lines.append(
                f"slack: bot token from {n.slack.bot_token.describe()} (redacted), channel {n.slack.channel},"
                f" API {n.slack.api_base_url} (follow-ups in threads)"
            )
        else:
            hook = n.slack.webhook_url
            source = hook.describe() if hook else "?"
            lines.append(f"slack: incoming webhook URL from {source} (redacted; follow-ups as new messages)")
    if n.teams is not None:
        lines.append(f"teams: webhook URL from {n.teams.webhook_url.describe()} (redacted)")
    if n.slack is None and n.teams is None:
        lines.append("notifications: none configured (incidents are recorded, nobody is told)")
    for name in ("prometheus_url", "public_url", "dashboard_url", "alertmanager_url", "runbook_url"):
        lines.append(f"{name}: {getattr(n, name, None) or '(not set)'}")
    pages = settings.incident_pages
    if pages is not None:
        lines.append(f"incident pages: signed links (key from {pages.signing_key.describe()}, redacted)")
    return lines

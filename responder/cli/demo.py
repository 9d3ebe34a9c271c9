"""``canary-responder demo``: the whole job on an embedded Kubernetes API emulator, no cluster needed.

It seeds the emulator with three apps (stable and canary Deployments, each with an NGINX Ingress; the canary one
at weight 10), starts the real responder on a loopback port, talking to the emulator through the real
kubernetes_asyncio client, and posts Alertmanager notifications for the canary guide's scenarios:
error rate > 5 % (sent by two HA peers), P95 > 2 s, and an error-rate divergence that resolves before its
persist time. Then it prints the decisions, the emulator's resulting objects, the Slack messages and the Teams
cards' headlines (from Slack-like and Teams-like receivers on loopback), the audit trail, and the signed link to
the first incident's page, with a screenshot of it when Playwright and a chromium binary are at hand
(``--serve`` keeps the responder up afterwards so that the link can be opened).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets as random_secrets
import shutil
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from responder.app import build_app
from responder.cli import browser
from responder.cli.demo_report import mutation_line, start_clean, what_to_check
from responder.cli.format import format_entry
from responder.config import load_settings
from responder.http.server import RUNTIME
from responder.testing.emulator import Emulator, run_emulator, sample_canary_objects, sample_canary_pods

APPS = ("checkout", "payments", "search")
PERSIST_S = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_config(workdir: Path, kube_url: str, slack_url: str, teams_url: str, *, port: int) -> Path:
    secrets = workdir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "webhook-token").write_text("demo-webhook-token\n")
    (secrets / "admin-token").write_text("demo-admin-token\n")
    (secrets / "page-signing-key").write_text(random_secrets.token_urlsafe(48) + "\n")
    (secrets / "slack-webhook-url").write_text(slack_url + "\n")
    (secrets / "teams-webhook-url").write_text(teams_url + "\n")
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {
            "webhook": {"bearer_tokens": [{"file": str(secrets / "webhook-token")}]},
            "admin_token": {"file": str(secrets / "admin-token")},
        },
        "kubernetes": {"mode": "url", "url": kube_url},
        "safety": {"allowed_namespaces": ["shop"], "canary_marker": "version=canary"},
        "targets": [
            {
                "name": "shop-canaries",
                "match": {"namespace": "shop"},
                "namespace": "{namespace}",
                "deployment": "{app}-canary",
                "ingress": "{app}-canary",
            }
        ],
        "policies": [
            {"name": "rollback", "match": {"action": "rollback"}, "mode": "immediate"},
            {
                "name": "rollback-if-persists",
                "match": {"action": "rollback-if-persists"},
                "mode": "persist",
                "persist_for": f"{PERSIST_S}s",
            },
            {"name": "notify", "match": {"action": "notify"}, "mode": "notify"},
        ],
        "storage": {"path": str(workdir / "responder.db")},
        "notifications": {
            "slack": {"webhook_url": {"file": str(secrets / "slack-webhook-url")}},
            "teams": {"webhook_url": {"file": str(secrets / "teams-webhook-url")}},
            "public_url": f"http://127.0.0.1:{port}",  # the links in the messages open this responder's pages
            "alertmanager_url": "http://alertmanager.demo:9093",
        },
        "incident_pages": {"signing_key": {"file": str(secrets / "page-signing-key")}, "link_ttl": "7d"},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _alert(
    name: str, app: str, action: str, description: str, *, status: str = "firing", starts_at: datetime
) -> dict[str, Any]:
    labels = {"alertname": name, "namespace": "shop", "app": app, "action": action, "severity": "critical"}
    fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    ends = "0001-01-01T00:00:00Z" if status == "firing" else _ts(datetime.now(UTC))
    return {
        "status": status,
        "labels": labels,
        "fingerprint": fingerprint,
        "startsAt": _ts(starts_at),
        "endsAt": ends,
        "annotations": {"summary": f"{name} on shop/{app}", "description": description},
        "generatorURL": "http://prometheus.demo:9090/graph",
    }


def _notification(alert: dict[str, Any], peer: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alert["labels"]["alertname"]}"}}',
        "truncatedAlerts": 0,
        "status": alert["status"],
        "receiver": "canary\\.responder",
        "groupLabels": {"alertname": alert["labels"]["alertname"]},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": f"http://{peer}.demo:9093",
        "alerts": [alert],
    }


class SlackInbox:
    """A Slack-like incoming-webhook receiver on loopback, so the demo shows what on-call people would read."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/services/demo/hook", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/services/demo/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        self.messages.append(await request.json())
        return web.Response(text="ok")

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        for _ in range(int(within / 0.05)):
            if len(self.messages) >= count:
                return
            await asyncio.sleep(0.05)


class TeamsInbox(SlackInbox):
    """A Teams-like Workflows webhook on loopback: it takes the Adaptive Card messages and answers 202, as Workflows
    does."""

    path = "/workflows/demo/triggers/manual/paths/invoke"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.path}?api-version=1&sig=demo-signature"

    async def _receive(self, request: web.Request) -> web.Response:
        self.messages.append(await request.json())
        return web.Response(status=202)


def _card_headline(message: dict[str, Any]) -> str:
    """The text of a card's first element (its headline band)."""
    try:
        first = message["attachments"][0]["content"]["body"][0]
        return "".join(run["text"] for run in first["items"][0]["inlines"])
    except (KeyError, IndexError, TypeError):
        return "(no headline)"


def _print_teams(inbox: TeamsInbox) -> None:
    print(f"\n== Teams cards received by the demo's Teams-like webhook ({len(inbox.messages)}), headlines")
    for message in inbox.messages:
        print(f"  | {_card_headline(message)}")


def _block_lines(message: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for block in message.get("blocks", []):
        texts = [block.get("text", {}).get("text", "")] + [f.get("text", "") for f in block.get("fields", [])]
        texts += [e.get("text", "") for e in block.get("elements", []) if isinstance(e, dict)]
        lines.extend(line for text in texts if text for line in text.splitlines())
    return lines or [str(message.get("text", ""))]


def _print_slack(inbox: SlackInbox) -> None:
    print(f"\n== Slack messages received by the demo's Slack-like webhook ({len(inbox.messages)})")
    for message in inbox.messages:
        print("  ---")
        for line in _block_lines(message):
            print(f"  | {line}")


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


async def _post(session: aiohttp.ClientSession, url: str, payload: dict[str, Any], label: str) -> None:
    async with session.post(
        f"{url}/api/v1/alerts", json=payload, headers={"Authorization": "Bearer demo-webhook-token"}
    ) as response:
        print(f"  POST /api/v1/alerts  {label:<58} -> HTTP {response.status} {await response.text()}")


async def _scenarios(session: aiohttp.ClientSession, url: str) -> float:
    """Post the scenarios' notifications; return when the first was sent (the t+ of the calls' times)."""
    now = datetime.now(UTC)
    t0 = time.time()
    print("\n== 1. checkout canary: 5xx ratio 12.5% > 5% (the same notification from two HA Alertmanager peers)")
    error = _alert(
        "CanaryHighErrorRate", "checkout", "rollback", "canary 5xx ratio 12.5% (threshold 5%)", starts_at=now
    )
    await _post(session, url, _notification(error, "alertmanager-0"), "CanaryHighErrorRate from alertmanager-0")
    await _post(session, url, _notification(error, "alertmanager-1"), "CanaryHighErrorRate from alertmanager-1")
    print("\n== 2. payments canary: P95 2.8 s > 2 s")
    latency = _alert("CanaryHighLatencyP95", "payments", "rollback", "canary P95 2.8s (threshold 2s)", starts_at=now)
    await _post(session, url, _notification(latency, "alertmanager-0"), "CanaryHighLatencyP95")
    print(f"\n== 3. search canary: error rate +3.4 points over stable, must persist {PERSIST_S}s; resolves after 1s")
    diverge = _alert(
        "CanaryErrorRateDivergence",
        "search",
        "rollback-if-persists",
        "canary 4.1% vs stable 0.7% (+3.4 points, threshold +3)",
        starts_at=now,
    )
    await _post(session, url, _notification(diverge, "alertmanager-0"), "CanaryErrorRateDivergence firing")
    await asyncio.sleep(1)
    resolved = {**diverge, "status": "resolved", "endsAt": _ts(datetime.now(UTC))}
    await _post(session, url, _notification(resolved, "alertmanager-0"), "CanaryErrorRateDivergence resolved")
    print(f"  ... waiting past the persist deadline ({PERSIST_S}s after it started firing)")
    await asyncio.sleep(PERSIST_S - 1 + 0.5)
    return t0


def _print_objects(emulator: Emulator, t0: float) -> None:
    print("\n== Objects in the emulated cluster afterwards")
    for app in APPS:
        for name in (app, f"{app}-canary"):
            deployment = emulator.get_object("apps/v1/deployments", "shop", name)
            ingress = emulator.get_object("networking.k8s.io/v1/ingresses", "shop", name)
            canary = ingress["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/canary", "-")
            version = deployment["metadata"]["labels"].get("version")
            print(
                f"  shop/{name:<18} version={version:<7} replicas={deployment['spec']['replicas']}"
                f"  ingress canary annotation={canary}"
            )
    print("\n== Mutating calls the emulator received, in order (t+: after the first webhook)")
    for m in emulator.mutations:
        print(f"  {mutation_line(m, t0)}")


_PAGE_LINK = re.compile(r"<(http[^|>]+/incidents/[^|>]+)\|Audit record>")


def _page_link(inbox: SlackInbox) -> str | None:
    """The signed incident page link of the first Slack message, as on-call would click it."""
    for line in (line for message in inbox.messages[:1] for line in _block_lines(message)):
        found = _PAGE_LINK.search(line)
        if found:
            return found.group(1).replace("&amp;", "&")
    return None


async def _show_page(inbox: SlackInbox, workdir: Path, *, kept: bool, serving: bool) -> None:
    link = _page_link(inbox)
    print('\n== The incident page (signed link from the first Slack message\'s "Audit record", valid 7 days)')
    if link is None:
        print("  (no link found in the Slack message)")
        return
    print(f"  {link}")
    missing = browser.browser_missing()
    if missing is not None:
        print(f"  screenshot skipped: {missing}")
        return
    shots = {"desktop": workdir / "incident-page.png", "phone": workdir / "incident-page-phone.png"}
    try:
        await browser.screenshot(link, shots)
    except Exception as exc:  # a browser that fails to start must not fail the demo: it is only the picture
        print(f"  screenshot failed: {type(exc).__name__}: {exc}")
        return
    for name, path in shots.items():
        print(f"  screenshot ({name}, headless Chromium): {path}")
    if not kept:
        print("  (the screenshots go with the demo directory at the end: --keep or --workdir DIR keeps them)")
    if not serving:
        print("  (the link opens while the responder runs: --serve keeps it up until Ctrl-C)")


async def _serve_until_interrupted(url: str) -> None:
    print(f"\n== Serving on {url} until Ctrl-C (the page link above opens in a browser)")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        print("  stopping")


async def run_demo(*, workdir: Path | None = None, serve: bool = False, keep: bool = False) -> int:
    temporary = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="canary-responder-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    removed = start_clean(workdir)  # never another run's database: its alerts would be duplicates of these
    try:
        return await _run(workdir, serve=serve, kept="" if temporary and not keep else "kept", cleared=removed)
    finally:
        if temporary and not keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def _run(workdir: Path, *, serve: bool, kept: str, cleared: list[str]) -> int:
    objects = [obj for app in APPS for obj in (*sample_canary_objects("shop", app), *sample_canary_pods("shop", app))]
    slack, teams = SlackInbox(), TeamsInbox()
    await slack.start()
    await teams.start()
    async with run_emulator(objects) as (emulator, kube_url):
        port = _free_port()
        settings, secrets = load_settings(_write_config(workdir, kube_url, slack.url, teams.url, port=port))
        app = build_app(settings, secrets, audit_sink=None)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        url = f"http://127.0.0.1:{port}"
        where = "kept" if kept else "removed at the end; --keep keeps them"
        print(f"canary-responder demo: responder on {url}, Kubernetes API emulator on {kube_url}")
        print(f"files in {workdir} ({where})")
        if cleared:
            print(f"  started clean: removed the previous run's {', '.join(cleared)}")
        try:
            async with aiohttp.ClientSession() as session:
                t0 = await _scenarios(session, url)
            services = app[RUNTIME].require()
            await services.engine.drain()
            _print_objects(emulator, t0)
            await slack.wait_for(2)
            await teams.wait_for(2)
            _print_slack(slack)
            _print_teams(teams)
            print("\n== Audit trail (canary-responder audit tail --db", settings.storage.path, ")")
            for entry in await services.store.audit_entries(limit=10_000):
                print("  " + format_entry(entry.as_dict()))
            report = await services.store.verify()
            print(f"\n== audit verify: {'OK' if report.ok else 'BROKEN'}, {report.length} entries, head {report.head}")
            rolled = [r.incident for r in await services.store.rollbacks() if r.status == "done"]
            print(f"== rollbacks done: {len(rolled)} ({', '.join(rolled)})")
            checks, as_expected = what_to_check(emulator, apps=APPS, acted=("checkout", "payments"), t0=t0)
            print("\n== What to check (from the emulator's own record of the calls)")
            print("\n".join(f"  {line}" for line in checks))
            await _show_page(slack, workdir, kept=bool(kept), serving=serve)
            if serve:
                await _serve_until_interrupted(url)
        finally:
            await runner.cleanup()
            await slack.stop()
            await teams.stop()
    expected = {"shop:checkout-canary", "shop:payments-canary"}
    return 0 if report.ok and as_expected and {i.rsplit(":", 1)[0] for i in rolled} == expected else 1

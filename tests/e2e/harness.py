"""End-to-end harness: the shipped alert rules in a real Prometheus, the shipped Alertmanager route in a real
Alertmanager, a demo app whose canary we can break, and a webhook at the end of the chain.

Everything runs on loopback with temporary storage. The harness does not know what sits at the webhook URL:
`run_chain(webhook_url=..., token=...)` takes any receiver (the plain `WebhookReceiver` below in the smoke
test, the real responder in test_chain_responder.py and bench/bench_chain.py) and Alertmanager authenticates
to it with `Authorization: Bearer <token>` read from a `credentials_file`, as in production.

The rules are canary-rules.yaml with one metrics source's recording rules first in its group
(`shipped_rules(source)`, what the Helm chart renders for `rules.source`; "app" unless `run_chain(rules_source=)`
says otherwise). Test-only changes to the shipped files are textual and listed here so that the shipped rules stay
production-sane (`rules_for_test()`):
  * rules: every `[1m]` range becomes `[<rate_window>]` (10s), every `for: <d>` becomes d / for_divisor
    (30: 30s -> 1s, 1m -> 2s, 5m -> 10s), every group `interval:` becomes 1s; recorded series keep their
    `...rate1m` names;
  * Alertmanager (`alertmanager_config()`): the canary-responder receiver's URL and credentials_file point at
    the test receiver and token file, its route's group_wait and group_interval become 1s.
Prometheus scrapes and evaluates every second. Several demo apps (distinct `app` labels, one scrape target each)
can share one chain, so independent canary scenarios run against one Prometheus and one Alertmanager.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

REPO = Path(__file__).resolve().parents[2]
RULES_MANIFEST = REPO / "alert-rules" / "canary-rules.yaml"
RULES_SOURCES = REPO / "alert-rules" / "sources"
ALERTMANAGER_EXAMPLE = REPO / "examples" / "alertmanager.yaml"
RESPONDER_RECEIVER = "canary-responder"

# The scrape target's labels: what a ServiceMonitor adds in a cluster.
NAMESPACE = "shop"
APP = "checkout"


# ---------------------------------------------------------------------------------------------- binaries


@dataclass(frozen=True, kw_only=True)
class Binaries:
    prometheus: str
    alertmanager: str


def find_binaries() -> Binaries | str:
    """The Prometheus and Alertmanager executables, or the reason they cannot be used.

    `PROMETHEUS_BIN` / `ALERTMANAGER_BIN` override the PATH lookup; Debian names the Alertmanager binary
    `prometheus-alertmanager`.
    """
    env_prometheus, env_alertmanager = os.environ.get("PROMETHEUS_BIN"), os.environ.get("ALERTMANAGER_BIN")
    prometheus = shutil.which(env_prometheus or "prometheus")
    if env_alertmanager:
        alertmanager = shutil.which(env_alertmanager)
    else:
        alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    missing = [name for name, path in (("prometheus", prometheus), ("alertmanager", alertmanager)) if not path]
    if missing:
        return (
            f"{' and '.join(missing)} not found (apt-get install prometheus prometheus-alertmanager, "
            "or point PROMETHEUS_BIN / ALERTMANAGER_BIN at them)"
        )
    assert prometheus and alertmanager
    return Binaries(prometheus=prometheus, alertmanager=alertmanager)


def free_port() -> int:
    """A loopback port that was free a moment ago (a child process binds it, so there is a tiny race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------- demo app


@dataclass(frozen=True, kw_only=True)
class TrafficProfile:
    """What one version of the demo app serves: requests per second, share of 5xx, latency of each request."""

    rps: float
    error_ratio: float = 0.0
    latency: float = 0.05


@dataclass
class _Track:
    profile: TrafficProfile
    request_credit: float = 0.0
    error_credit: float = 0.0

    def requests(self, elapsed: float) -> Iterator[bool]:
        """The synthetic requests of ``elapsed`` seconds at the profile's rate: True for each that fails (every
        1/error_ratio-th one, so the ratio in any window is the profile's)."""
        self.request_credit += self.profile.rps * elapsed
        while self.request_credit >= 1:
            self.request_credit -= 1
            self.error_credit += self.profile.error_ratio
            failed = self.error_credit >= 1
            if failed:
                self.error_credit -= 1
            yield failed


class DemoApp:
    """An aiohttp app exposing `/metrics` with canary and stable `http_request_duration_seconds`.

    It serves no real requests: a background task "observes" synthetic ones at the rates of each version's
    `TrafficProfile`, so a test changes the canary's error ratio or latency with `set()` and Prometheus sees it
    at the next scrape. Errors are spread evenly (every 1/error_ratio-th request), not randomly, so the error
    ratio in any window is what the profile says.
    """

    VERSIONS = {"canary": "canary", "stable": "v1"}
    # A boundary at 2 s (the P95 threshold) keeps histogram_quantile precise where it matters.
    BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 5.0)
    ROUTE = "/api/checkout"

    def __init__(
        self,
        *,
        canary: TrafficProfile,
        stable: TrafficProfile,
        tick: float = 0.05,
        namespace: str = NAMESPACE,
        app: str = APP,
    ) -> None:
        # The target labels Prometheus puts on this app's series (what a ServiceMonitor adds in a cluster).
        self.namespace = namespace
        self.app = app
        self.registry = CollectorRegistry()
        self._histogram = Histogram(
            "http_request_duration_seconds",
            "Duration of HTTP requests.",
            ["method", "route", "code", "version"],
            buckets=self.BUCKETS,
            registry=self.registry,
        )
        self._tracks = {"canary": _Track(canary), "stable": _Track(stable)}
        self._tick = tick
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self.address = ""
        # Create the 200 and 500 series up front, as a well-instrumented service does: a counter that appears
        # only with its first increment loses that increment to rate().
        for version in self.VERSIONS.values():
            for code in ("200", "500"):
                self._histogram.labels("GET", self.ROUTE, code, version)

    @property
    def canary(self) -> TrafficProfile:
        return self._tracks["canary"].profile

    @property
    def target_labels(self) -> dict[str, str]:
        """The labels Prometheus puts on this target's series (what a ServiceMonitor adds in a cluster)."""
        return {"namespace": self.namespace, "app": self.app}

    def set(self, *, canary: TrafficProfile | None = None, stable: TrafficProfile | None = None) -> None:
        for name, profile in (("canary", canary), ("stable", stable)):
            if profile is not None:
                self._tracks[name].profile = profile

    async def start(self) -> str:
        """Serve `/metrics` on a free loopback port and start generating traffic; returns host:port."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.address = f"{host}:{port}"
        self._task = asyncio.create_task(self._generate())
        return self.address

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _generate(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            for name, track in self._tracks.items():
                self._observe(self.VERSIONS[name], track, now - last)
            last = now

    def _observe(self, version: str, track: _Track, elapsed: float) -> None:
        for failed in track.requests(elapsed):
            code = "500" if failed else "200"
            self._histogram.labels("GET", self.ROUTE, code, version).observe(track.profile.latency)


# ---------------------------------------------------------------------------------------------- receiver


@dataclass(frozen=True, kw_only=True)
class Notification:
    """One webhook request as received: wall-clock and monotonic arrival time, headers, JSON body."""

    received_at: float
    received_monotonic: float
    headers: dict[str, str]
    body: dict[str, Any]

    def alerts(self, *, alertname: str, status: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.body.get("alerts", [])
            if a["labels"].get("alertname") == alertname and a["status"] == status
        ]


class WebhookReceiver:
    """A plain Alertmanager webhook receiver on loopback that records every request (a stand-in responder).

    Requests without the expected Bearer token are recorded too (so a test can see them) but get 401.
    """

    PATH = "/api/v1/alerts"

    def __init__(self, *, token: str) -> None:
        self.token = token
        self.notifications: list[Notification] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(self.PATH, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}{self.PATH}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Callable[[Notification], bool], *, timeout: float) -> Notification:
        """The first notification (already received or arriving within `timeout`) matching `predicate`."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for notification in self.notifications:
                    if predicate(notification):
                        return notification
                await self._changed.wait()

    async def _receive(self, request: web.Request) -> web.Response:
        notification = Notification(
            received_at=time.time(),
            received_monotonic=time.monotonic(),
            headers=dict(request.headers),
            body=await request.json(),
        )
        async with self._changed:
            self.notifications.append(notification)
            self._changed.notify_all()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401)
        return web.Response(text="ok")


# ---------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True, kw_only=True)
class ChainTiming:
    """The test-only timing overrides applied to the shipped rules and Alertmanager route."""

    rate_window: str = "10s"
    for_divisor: int = 30
    group_interval: str = "1s"
    scrape_interval: str = "1s"
    alertmanager_group_wait: str = "1s"
    alertmanager_group_interval: str = "1s"
    alertmanager_repeat_interval: str | None = None  # None: the shipped route's


_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def _scaled_for(match: re.Match[str], divisor: int) -> str:
    indent, number, unit = match.groups()
    return f"{indent}for: {max(int(number) * _UNIT_MS[unit] // divisor, 0)}ms"


def shipped_rules(source: str = "app") -> str:
    """canary-rules.yaml with sources/<source>.yaml's recording rules first in the alert group, as a manifest."""
    rules = yaml.safe_load(RULES_MANIFEST.read_text())
    recording = yaml.safe_load((RULES_SOURCES / f"{source}.yaml").read_text())["spec"]["groups"][0]["rules"]
    [group] = rules["spec"]["groups"]
    group["rules"] = recording + group["rules"]
    return yaml.safe_dump(rules, sort_keys=False, width=1000)


def rules_for_test(manifest_text: str, timing: ChainTiming) -> str:
    """The PrometheusRule manifest(s) as a plain Prometheus rule file with the test timing (see module doc)."""
    substitutions: list[tuple[str, str | Callable[[re.Match[str]], str]]] = [
        (r"\[1m\]", f"[{timing.rate_window}]"),
        (r"(?m)^(\s+)for: (\d+)(ms|s|m|h)\s*$", lambda m: _scaled_for(m, timing.for_divisor)),
        (r"(?m)^(\s+)interval: \S+\s*$", lambda m: f"{m.group(1)}interval: {timing.group_interval}"),
    ]
    text = manifest_text
    for pattern, replacement in substitutions:
        text, count = re.subn(pattern, replacement, text)
        if not count:
            raise ValueError(f"test override {pattern!r} matched nothing: did the shipped rules change shape?")
    groups = [g for doc in yaml.safe_load_all(text) if doc for g in doc["spec"]["groups"]]
    return yaml.safe_dump({"groups": groups}, sort_keys=False)


def prometheus_config(
    *, demos: Sequence[DemoApp], alertmanager_address: str, rule_file: Path, timing: ChainTiming
) -> dict:
    """One scrape target per demo app, labelled with its namespace and app (as a ServiceMonitor would)."""
    return {
        "global": {
            "scrape_interval": timing.scrape_interval,
            "scrape_timeout": timing.scrape_interval,
            "evaluation_interval": timing.group_interval,
        },
        "rule_files": [str(rule_file)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_address]}]}]},
        "scrape_configs": [
            {
                "job_name": "demo",
                "static_configs": [{"targets": [demo.address], "labels": demo.target_labels} for demo in demos],
            }
        ],
    }


def alertmanager_config(
    example: dict, *, webhook_url: str, credentials_file: Path, timing: ChainTiming
) -> dict[str, Any]:
    """The shipped Alertmanager example, pointed at the test receiver with 1s grouping (see module doc)."""
    config = yaml.safe_load(yaml.safe_dump(example))  # deep copy
    receiver = next(r for r in config["receivers"] if r["name"] == RESPONDER_RECEIVER)
    for webhook in receiver["webhook_configs"]:
        webhook["url"] = webhook_url
        webhook["http_config"]["authorization"]["credentials_file"] = str(credentials_file)
    routes = [r for r in _walk_routes(config["route"]) if r.get("receiver") == RESPONDER_RECEIVER]
    if not routes:
        raise ValueError(f"no route to receiver {RESPONDER_RECEIVER!r} in the Alertmanager example")
    for route in routes:
        route["group_wait"] = timing.alertmanager_group_wait
        route["group_interval"] = timing.alertmanager_group_interval
        if timing.alertmanager_repeat_interval is not None:
            route["repeat_interval"] = timing.alertmanager_repeat_interval
    return config


def _walk_routes(route: dict) -> list[dict]:
    return [route, *(r for child in route.get("routes", []) for r in _walk_routes(child))]


# ---------------------------------------------------------------------------------------------- processes


class ManagedProcess:
    """A child process whose output goes to a log file; `stop()` always ends it (TERM, then KILL)."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
            )

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def stop(self, *, grace: float = 10.0) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


async def wait_ready(session: aiohttp.ClientSession, url: str, process: ManagedProcess, *, timeout: float) -> None:
    """Poll `url` until it answers 200; fail early, with the log, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"{process.name} exited ({process.returncode}):\n{process.log_tail()}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{process.name} not ready at {url} after {timeout}s:\n{process.log_tail()}")


# ---------------------------------------------------------------------------------------------- the chain


@dataclass
class Chain:
    """A running demo app(s) -> Prometheus -> Alertmanager -> webhook chain; `demo` is the first demo app."""

    demo: DemoApp
    demos: list[DemoApp]
    prometheus_url: str
    alertmanager_url: str
    session: aiohttp.ClientSession
    processes: list[ManagedProcess] = field(default_factory=list)

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query against the test Prometheus; the result vector."""
        async with self.session.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}) as response:
            response.raise_for_status()
            payload = await response.json()
        return list(payload["data"]["result"])

    async def value(self, promql: str) -> float | None:
        """The single value of a query, or None when it returns nothing."""
        result = await self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def logs(self) -> str:
        return "\n\n".join(f"----- {p.name} ({p.log_path})\n{p.log_tail()}" for p in self.processes)


@contextlib.asynccontextmanager
async def run_chain(
    *,
    workdir: Path,
    webhook_url: str,
    token: str,
    demo: DemoApp | Sequence[DemoApp],
    binaries: Binaries,
    timing: ChainTiming | None = None,
    on_start: Callable[[Chain], None] | None = None,
    rules_source: str = "app",
) -> AsyncIterator[Chain]:
    """Start Alertmanager and Prometheus for `demo` (started here too), delivering to `webhook_url`.

    `demo` may be several demo apps (distinct `app` labels): each is one scrape target, so one Prometheus and
    one Alertmanager serve several independent canaries. `rules_source` picks the metrics source's recording rules
    (alert-rules/sources/); the demo apps must then emit that source's metrics (tests/e2e/exporters.py).

    Everything started here is stopped on exit, also when the body or the start-up fails. `on_start` gets the
    chain as soon as its processes exist, so a caller can show their logs if something fails later.
    """
    timing = timing or ChainTiming()
    token_file = workdir / "webhook-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    am_port, prom_port = free_port(), free_port()
    demos = [demo] if isinstance(demo, DemoApp) else list(demo)
    if not demos or len({(d.namespace, d.app) for d in demos}) != len(demos):
        raise ValueError("run_chain needs at least one demo app, each with its own namespace/app labels")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        chain = Chain(
            demo=demos[0],
            demos=demos,
            prometheus_url=f"http://127.0.0.1:{prom_port}",
            alertmanager_url=f"http://127.0.0.1:{am_port}",
            session=session,
        )
        started: list[DemoApp] = []
        try:
            for each in demos:
                started.append(each)
                await each.start()
            alertmanager = alertmanager_process(
                binaries, workdir, port=am_port, webhook_url=webhook_url, token_file=token_file, timing=timing
            )
            prometheus = _prometheus_process(
                binaries,
                workdir,
                port=prom_port,
                demos=demos,
                alertmanager_port=am_port,
                timing=timing,
                rules_source=rules_source,
            )
            chain.processes += [prometheus, alertmanager]
            if on_start is not None:
                on_start(chain)
            await alertmanager.start()
            await wait_ready(session, f"{chain.alertmanager_url}/-/ready", alertmanager, timeout=20)
            await prometheus.start()
            await wait_ready(session, f"{chain.prometheus_url}/-/ready", prometheus, timeout=20)
            yield chain
        finally:
            # Prometheus first, so that it does not keep sending to a stopped Alertmanager.
            for process in chain.processes:
                await process.stop()
            for each in started:
                await each.stop()


def alertmanager_process(
    binaries: Binaries, workdir: Path, *, port: int, webhook_url: str, token_file: Path, timing: ChainTiming
) -> ManagedProcess:
    """The real Alertmanager with the shipped configuration, routed to ``webhook_url`` with ``timing``."""
    example = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    config = alertmanager_config(example, webhook_url=webhook_url, credentials_file=token_file, timing=timing)
    config_file = workdir / "alertmanager.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    storage = workdir / "alertmanager-data"
    storage.mkdir()
    argv = [
        binaries.alertmanager,
        f"--config.file={config_file}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # empty: no HA gossip, nothing listens beyond loopback
        "--log.level=debug",
    ]
    return ManagedProcess("alertmanager", argv, workdir / "alertmanager.log")


def _prometheus_process(
    binaries: Binaries,
    workdir: Path,
    *,
    port: int,
    demos: Sequence[DemoApp],
    alertmanager_port: int,
    timing: ChainTiming,
    rules_source: str = "app",
) -> ManagedProcess:
    rule_file = workdir / "canary-rules.yaml"
    rule_file.write_text(rules_for_test(shipped_rules(rules_source), timing))
    config = prometheus_config(
        demos=demos,
        alertmanager_address=f"127.0.0.1:{alertmanager_port}",
        rule_file=rule_file,
        timing=timing,
    )
    config_file = workdir / "prometheus.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    storage = workdir / "prometheus-data"
    storage.mkdir()
    argv = [
        binaries.prometheus,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return ManagedProcess("prometheus", argv, workdir / "prometheus.log")


def parse_timestamp(value: str) -> float:
    """An Alertmanager RFC 3339 timestamp (up to 9 fractional digits) as seconds since the epoch."""
    return datetime.fromisoformat(value).timestamp()

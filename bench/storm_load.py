"""The storm load generator used by bench/bench_storm.py (a separate process, so that it gets its own core).

It behaves like three Alertmanager HA peers under an alert storm: every notification group is posted once by
each peer (same alerts, different ``externalURL``), and every 503 or transport error is retried with backoff
until it is accepted, like Alertmanager does. The mix of groups:

- other teams' alerts (no ``action`` label: no policy matches, so they only notify);
- notify-only canary warnings (``action=notify``) for configured apps;
- alerts for unconfigured targets (``action=rollback`` in a namespace no target rule maps);
- resolutions of alerts fired earlier, and repeat notifications of still-firing alerts (repeat_interval);
- critical canary alerts (``action=rollback``) for the 50 configured targets, spread over the run; the time of
  the first peer's first attempt is recorded for the latency figure.

Run by bench_storm.py; writes a JSON result file.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

PEERS = ("http://alertmanager-0:9093", "http://alertmanager-1:9093", "http://alertmanager-2:9093")
RETRY_CAP_S = 2.0


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def make_alert(labels: dict[str, str], starts: str, *, resolved: bool = False) -> dict[str, Any]:
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} on {labels.get('namespace')}/{labels.get('app')}"},
        "startsAt": starts,
        "endsAt": rfc3339(datetime.now(UTC)) if resolved else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=storm",
        "fingerprint": fingerprint(labels),
    }


def group(alerts: list[dict[str, Any]], peer: str, key: str) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "canary\\.responder",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": peer,
        "alerts": alerts,
    }


class Mix:
    """Builds the background storm's notification groups (each is then posted by all three peers)."""

    def __init__(self, seed: int, apps: int) -> None:
        self.rng = random.Random(seed)
        self.apps = apps
        self.counter = 0
        self.active: collections.deque[tuple[dict[str, str], str]] = collections.deque(maxlen=20_000)
        self.kinds: collections.Counter[str] = collections.Counter()

    def _new(self, kind: str) -> tuple[dict[str, str], str]:
        self.counter += 1
        n = self.counter
        if kind == "other_team":
            labels = {
                "alertname": self.rng.choice(["KubePodCrashLooping", "HighCPU", "DiskFilling", "CertExpiring"]),
                "namespace": self.rng.choice(["search", "billing", "infra"]),
                "team": "others",
                "pod": f"pod-{n}",
                "severity": "warning",
            }
        elif kind == "notify":
            labels = {
                "alertname": "CanaryLowTraffic",
                "namespace": "shop",
                "app": f"app{self.rng.randrange(self.apps):02d}",
                "action": "notify",
                "severity": "info",
                "instance": f"i-{n}",
            }
        else:  # unconfigured target: acting policy, but no target rule maps this namespace
            labels = {
                "alertname": "CanaryHighErrorRate",
                "namespace": "legacy",
                "app": f"old-{n % 500}",
                "action": "rollback",
                "severity": "critical",
                "instance": f"i-{n}",
            }
        starts = rfc3339(datetime.now(UTC) - timedelta(seconds=self.rng.randrange(60)))
        self.active.append((labels, starts))
        return labels, starts

    def next_group(self) -> tuple[list[dict[str, Any]], str]:
        kind = self.rng.choices(
            ["other_team", "notify", "unconfigured", "resolved", "repeat"], weights=[30, 15, 15, 20, 20]
        )[0]
        if kind in ("resolved", "repeat") and len(self.active) < 10:
            kind = "other_team"
        self.kinds[kind] += 1
        size = self.rng.randint(1, 4)
        if kind == "resolved":
            picked = [self.active.popleft() for _ in range(min(size, len(self.active)))]
            alerts = [make_alert(labels, starts, resolved=True) for labels, starts in picked]
        elif kind == "repeat":
            picked = [self.active[self.rng.randrange(len(self.active))] for _ in range(size)]
            alerts = [make_alert(labels, starts) for labels, starts in picked]
        else:
            alerts = [make_alert(*self._new(kind)) for _ in range(size)]
        return alerts, f'{{}}:{{kind="{kind}",n="{self.counter}"}}'


class Stats:
    def __init__(self) -> None:
        self.attempts = 0
        self.accepted = 0
        self.accepted_events = 0
        self.accepted_ids: list[int] = []
        self.unavailable = 0  # 503 answers (each retried)
        self.transport_errors = 0  # connection errors / client timeouts (each retried)
        self.other: collections.Counter[int] = collections.Counter()
        self.per_second: collections.Counter[int] = collections.Counter()  # accepted per second of the run
        self.retried_then_accepted = 0
        self.critical_first_attempt: dict[str, float] = {}
        self.critical_accepted_at: dict[str, float] = {}
        self.latencies_ms: list[float] = []


async def post_until_accepted(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, stats: Stats, t0: float
) -> float:
    """POST until a 200 (503s and transport errors are retried with capped backoff); return the accept time."""
    delay = 0.05
    tries = 0
    while True:
        tries += 1
        stats.attempts += 1
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            stats.transport_errors += 1
            status = 0
        if status == 200:
            done = time.time()
            info = orjson.loads(payload)
            stats.accepted += 1
            stats.accepted_events += int(info["events"])
            stats.accepted_ids.append(int(info["notification_id"]))
            stats.per_second[int(done - t0)] += 1
            stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            if tries > 1:
                stats.retried_then_accepted += 1
            return done
        if status == 503:
            stats.unavailable += 1
        elif status != 0:
            stats.other[status] += 1
            raise RuntimeError(f"unexpected HTTP {status}: {payload[:300]!r}")
        await asyncio.sleep(delay * (0.5 + random.random() / 2))
        delay = min(RETRY_CAP_S, delay * 2)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = f"{args.url}/api/v1/alerts"
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    stats = Stats()
    mix = Mix(args.seed, args.apps)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=args.connections + 16, force_close=False)
    queue: collections.deque[bytes] = collections.deque()  # the other peers' copies, sent next
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.time()
        end = t0 + args.seconds
        interval = args.connections / args.rate

        def next_body() -> bytes:
            if not queue:
                alerts, key = mix.next_group()
                for peer in PEERS:
                    queue.append(orjson.dumps(group(alerts, peer, key)))
            return queue.popleft()

        async def worker(index: int) -> None:
            due = t0 + index * interval / args.connections
            while True:
                now = time.time()
                if now >= end:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                due += interval
                await post_until_accepted(session, url, headers, next_body(), stats, t0)

        async def critical(index: int, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.time()))
            app = f"app{index:02d}"
            labels = {
                "alertname": "CanaryHighErrorRate",
                "namespace": "shop",
                "app": app,
                "action": "rollback",
                "severity": "critical",
            }
            alerts = [make_alert(labels, rfc3339(datetime.now(UTC)))]
            key = f'{{}}:{{alertname="CanaryHighErrorRate",app="{app}"}}'
            stats.critical_first_attempt[app] = time.time()
            first = post_until_accepted(session, url, headers, orjson.dumps(group(alerts, PEERS[0], key)), stats, t0)
            task = asyncio.ensure_future(first)
            await asyncio.sleep(0.005)  # the other peers follow a few milliseconds later
            others = [
                post_until_accepted(session, url, headers, orjson.dumps(group(alerts, peer, key)), stats, t0)
                for peer in PEERS[1:]
            ]
            stats.critical_accepted_at[app] = await task
            await asyncio.gather(*others)

        spacing = (args.seconds - 3.0) / args.apps
        criticals = [critical(i, t0 + 1.5 + i * spacing) for i in range(args.apps)]
        await asyncio.gather(*(worker(i) for i in range(args.connections)), *criticals)
        while queue:  # finish the group in hand: every group goes out from all three peers
            await post_until_accepted(session, url, headers, queue.popleft(), stats, t0)
        elapsed = time.time() - t0
    lat = sorted(stats.latencies_ms)
    return {
        "t0": t0,
        "elapsed_s": elapsed,
        "seconds": args.seconds,
        "target_rate": args.rate,
        "connections": args.connections,
        "attempts": stats.attempts,
        "accepted": stats.accepted,
        "accepted_events": stats.accepted_events,
        "accepted_ids": stats.accepted_ids,
        "unavailable_503": stats.unavailable,
        "transport_errors": stats.transport_errors,
        "retried_then_accepted": stats.retried_then_accepted,
        "other_statuses": dict(stats.other),
        "per_second": [stats.per_second.get(s, 0) for s in range(int(elapsed) + 1)],
        "groups_by_kind": dict(mix.kinds),
        "critical_first_attempt": stats.critical_first_attempt,
        "critical_accepted_at": stats.critical_accepted_at,
        "http_p50_ms": lat[len(lat) // 2] if lat else None,
        "http_p99_ms": lat[int(len(lat) * 0.99)] if lat else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=1200.0, help="notifications (HTTP POSTs) per second")
    parser.add_argument("--connections", type=int, default=48, help="concurrent keep-alive client tasks")
    parser.add_argument("--apps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    try:  # a faster event loop for the client when installed (the server is what is measured)
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args))
    args.out.write_bytes(orjson.dumps(result))


if __name__ == "__main__":
    main()

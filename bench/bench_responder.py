"""Figures for the responder core, measured side by side in one run on this machine.

1. Latency: webhook sent -> canary Ingress patched, and -> canary scaled to zero, over N rollbacks of distinct
   targets (the real server process, the real kubernetes_asyncio client, the Kubernetes API emulator on loopback;
   times are taken by the emulator when each PATCH arrives).
2. Ingest: accepted webhooks per second, the responder (durable SQLite inbox + audit) vs a bare aiohttp handler
   that answers 200, both driven by the same wrk load, for two loads: one new distinct alert per request (every
   request stored and decided), and the same notification byte for byte every time (the exact repeats Alertmanager
   sends every repeat_interval and on retries: audited as repeats, see responder/engine/repeats.py).
3. Memory: the responder's RSS idle, after 10,000 distinct alerts, and after the ingest load.

With ``--backend both`` every figure is taken for the SQLite store and for the shared PostgreSQL store (a
throwaway server from Debian's binaries, as the tests start it), one after the other in the same run.

Run: .venv/bin/python bench/bench_responder.py [--backend sqlite|postgres|both]   (needs wrk: apt-get install wrk)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from common import cpu_seconds, free_port, percentile, rss_mb, start_postgres, wait_healthy, write_config

from responder.testing.emulator import Emulator, run_emulator, sample_canary_objects

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token-0123456789"


def alert_payload(
    app: str, alertname: str = "CanaryHighErrorRate", action: str = "rollback", fingerprint: str | None = None
) -> dict[str, Any]:
    labels = {"alertname": alertname, "namespace": "shop", "app": app, "action": action, "severity": "critical"}
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "bench"},
        "startsAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090",
        "fingerprint": fingerprint or f"{abs(hash(app)):016x}",
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "bench",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am-0:9093",
        "alerts": list(alerts),
    }


async def measure_latency(
    session: aiohttp.ClientSession, url: str, emulator: Emulator, apps: list[str], gap_s: float
) -> tuple[list[float], list[float]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sent: dict[str, float] = {}
    for app in apps:
        sent[f"{app}-canary"] = time.time()
        async with session.post(
            f"{url}/api/v1/alerts", json=notification(alert_payload(app)), headers=headers
        ) as response:
            assert response.status == 200, await response.text()
        await asyncio.sleep(gap_s)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        scaled = {m.name for m in emulator.mutations if m.ok and m.subresource == "scale"}
        if len(scaled) >= len(apps):
            break
        await asyncio.sleep(0.05)
    traffic = {m.name: m.at for m in emulator.mutations if m.ok and m.kind == "Ingress"}
    scale = {m.name: m.at for m in emulator.mutations if m.ok and m.subresource == "scale"}
    return (
        [(traffic[n] - t) * 1000 for n, t in sent.items() if n in traffic],
        [(scale[n] - t) * 1000 for n, t in sent.items() if n in scale],
    )


async def send_distinct_alerts(session: aiohttp.ClientSession, url: str, total: int, per_notification: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    semaphore = asyncio.Semaphore(16)

    async def one(batch: int) -> None:
        alerts = [
            alert_payload(f"mem-{batch}-{i}", "CanaryHighMemory", "notify", f"{batch:08x}{i:08x}")
            for i in range(per_notification)
        ]
        async with (
            semaphore,
            session.post(f"{url}/api/v1/alerts", json=notification(*alerts), headers=headers) as response,
        ):
            assert response.status == 200, await response.text()

    await asyncio.gather(*(one(b) for b in range(total // per_notification)))


@dataclass
class Round:
    """One wrk run against one server: its rate, the 503s, and the server's CPU time per request (all threads,
    from /proc: a figure the other work on the shared cores disturbs far less than the rate)."""

    rps: float
    non2xx: int
    cpu_us: float


WORKLOADS = {  # name -> (wrk script, what it is)
    "distinct": ("distinct_alerts.lua", "one new distinct alert per request"),
    "repeated": ("repeated_notification.lua", "the same 1.4 KB notification every time (exact repeats)"),
}


def run_wrk(port: int, seconds: int, connections: int, pid: int, script: str) -> Round:
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(HERE / script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_TOKEN": TOKEN},
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu_before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Round(rps, int(non2xx.group(1)) if non2xx else 0, 1e6 * cpu / max(1, requests))


@dataclass
class Figures:
    traffic: list[float]
    scaled: list[float]
    rounds: dict[str, list[tuple[Round, Round]]]  # workload -> (bare aiohttp, responder) per round
    rss: tuple[float, float, float]


async def measure(args: argparse.Namespace, dsn: str | None) -> Figures:
    apps = [f"app{i:03d}" for i in range(args.rollbacks)]
    objects = [obj for app in apps for obj in sample_canary_objects("shop", app)]
    workdir = Path(tempfile.mkdtemp(prefix="bench-responder-"))
    port, bare_port = free_port(), free_port()
    async with run_emulator(objects) as (emulator, kube_url), aiohttp.ClientSession() as session:
        config = write_config(workdir, kube_url, port, token=TOKEN, dsn=dsn)
        log = (workdir / "server.log").open("wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "responder", "serve", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=log
        )
        bare = subprocess.Popen([sys.executable, str(HERE / "bare_server.py"), str(bare_port)])
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_healthy(session, url)
            await wait_healthy(session, f"http://127.0.0.1:{bare_port}")
            await asyncio.sleep(0.5)
            rss_idle = rss_mb(server.pid)
            traffic, scaled = await measure_latency(session, url, emulator, apps, args.gap)
            await send_distinct_alerts(session, url, 10_000, 10)
            await asyncio.sleep(1.0)
            rss_10k = rss_mb(server.pid)
            rounds: dict[str, list[tuple[Round, Round]]] = {name: [] for name in WORKLOADS}
            for _ in range(args.rounds):
                for name, (script, _) in WORKLOADS.items():
                    wrk = (args.seconds, args.connections)
                    bare_round = await asyncio.to_thread(run_wrk, bare_port, *wrk, bare.pid, script)
                    resp_round = await asyncio.to_thread(run_wrk, port, *wrk, server.pid, script)
                    rounds[name].append((bare_round, resp_round))
            rss_after_load = rss_mb(server.pid)
        finally:
            for process in (server, bare):
                process.terminate()
                process.wait(timeout=10)
            log.close()
    return Figures(traffic, scaled, rounds, (rss_idle, rss_10k, rss_after_load))


async def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed for the ingest figures: apt-get install wrk")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, Figures] = {}
    server = None
    try:
        for backend in backends:
            dsn = None
            if backend == "postgres":
                server = server or start_postgres()
                dsn = server.dsn(server.create_database())
            results[backend] = await measure(args, dsn)
    finally:
        if server is not None:
            server.destroy()
    print(f"canary-responder core benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)")
    print(f"   command: {' '.join([sys.executable, *sys.argv])}")
    print(f"   machine load average (1 min) after the run {os.getloadavg()[0]:.2f} (the 2 cores are shared)")
    gap_ms = args.gap * 1000
    for backend, figures in results.items():
        print(f"\n== store: {backend}")
        count = len(figures.traffic)
        print(f"1. webhook sent -> step done, {count} rollbacks of distinct targets, one every {gap_ms:.0f} ms")
        for label, values in (
            ("traffic off (Ingress patched)", figures.traffic),
            ("scaled to zero (/scale patched)", figures.scaled),
        ):
            print(
                f"   {label:<34} p50 {statistics.median(values):7.2f} ms   p99 {percentile(values, 0.99):7.2f} ms"
                f"   max {max(values):7.2f} ms"
            )
        print(f"2. ingest, wrk -t1 -c{args.connections} -d{args.seconds}s, the same script against both servers")
        for name, rounds in figures.rounds.items():
            print_ingest(name, rounds)
        idle, after_10k, after_load = figures.rss
        print("3. responder RSS")
        print(
            f"   idle {idle:.1f} MB   after {count} rollbacks + 10,000 distinct alerts {after_10k:.1f} MB"
            f"   after the ingest load {after_load:.1f} MB   (goal after 10,000 alerts <= 100 MB)"
        )
    if len(results) == 2:
        lite, pg = results["sqlite"], results["postgres"]
        print("\n== side by side (postgres / sqlite)")
        print(
            f"   traffic off p50 {statistics.median(pg.traffic) / statistics.median(lite.traffic):.2f}x"
            f"   p99 {percentile(pg.traffic, 0.99) / percentile(lite.traffic, 0.99):.2f}x"
        )
        for name in WORKLOADS:
            pg_rps = statistics.median(r[1].rps for r in pg.rounds[name])
            print(f"   ingest, {name}: {pg_rps / statistics.median(r[1].rps for r in lite.rounds[name]):.2f}x")


def print_ingest(name: str, rounds: list[tuple[Round, Round]]) -> None:
    print(f"   {name}: {WORKLOADS[name][1]}")
    for i, (bare_round, resp_round) in enumerate(rounds, 1):
        print(
            f"     round {i}: bare aiohttp {bare_round.rps:8.0f} req/s   responder {resp_round.rps:8.0f} req/s"
            f"   ratio {resp_round.rps / bare_round.rps:.2f}   (503s: {resp_round.non2xx})"
            f"   CPU per request: bare {bare_round.cpu_us:5.1f} us, responder {resp_round.cpu_us:6.1f} us"
        )
    ratios = [resp.rps / bare.rps for bare, resp in rounds]
    print(
        f"     ratio responder/bare: median {statistics.median(ratios):.2f}   min {min(ratios):.2f}"
        f"   max {max(ratios):.2f}   (goal >= 0.50)"
    )
    bare_cpu = statistics.median(bare.cpu_us for bare, _ in rounds)
    resp_cpu = statistics.median(resp.cpu_us for _, resp in rounds)
    print(
        f"     CPU per request (median): bare {bare_cpu:.1f} us, responder {resp_cpu:.1f} us"
        f" = {resp_cpu / bare_cpu:.1f}x (one core's worth at 100% caps the rate near 1e6 / CPU per request)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollbacks", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between rollback webhooks")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="sqlite")
    asyncio.run(main(parser.parse_args()))

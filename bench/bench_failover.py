"""Failover figures: three responder processes on one PostgreSQL (fsync on) and the Kubernetes API emulator, with
the chart's default election timings (lease 15 s, renew deadline 10 s, retry period 2 s).

For each trial the leader gets SIGKILL (it dies holding the Lease: the others must wait for it to expire) or
SIGTERM (it finishes, records, and releases the Lease), and at that instant a new alert is posted to a follower.
Measured from the signal: when another replica reports leading, and when the new alert's canary traffic is off
(the emulator's timestamp of the Ingress patch).

Run: .venv/bin/python bench/bench_failover.py [--trials 3] [--lease 15s --renew 10s --retry 2s]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from ha.harness import Replicas, replica_configs  # noqa: E402
from postgres import PostgresServer, find_bindir  # noqa: E402
from support import alert, notification  # noqa: E402

from responder.testing.emulator import run_emulator, sample_canary_objects  # noqa: E402


async def trial(server: PostgresServer, how: signal.Signals, args: argparse.Namespace, n: int) -> tuple[float, float]:
    apps = ["before", "after"]
    objects = [o for app in apps for o in sample_canary_objects("shop", app)]
    election = {"lease_duration": args.lease, "renew_deadline": args.renew, "retry_period": args.retry}
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-failover-{n}-"))
    async with run_emulator(objects) as (emulator, url), aiohttp.ClientSession() as session:
        dsn = server.dsn(server.create_database())
        names = ["r0", "r1", "r2"]
        members = replica_configs(
            workdir, names, kube_url=url, dsn=dsn, election={name: election for name in names}, log_level="WARNING"
        )
        replicas = Replicas(emulator, session, members)
        try:
            await replicas.start()
            leader = await replicas.leader(within=60)
            follower = next(r for r in replicas if r is not leader)
            status, _ = await replicas.post(follower, notification(alert(app="before")))
            assert status == 200
            signalled = time.time()
            started = time.monotonic()
            leader.signal(how)
            status, _ = await replicas.post(follower, notification(alert(app="after")))
            assert status == 200, "a follower must take webhooks during the failover"
            await replicas.leader(besides=[leader], within=60)
            new_leader = time.monotonic() - started
            deadline = time.monotonic() + 60
            while True:
                landed = [m for m in emulator.mutations if m.name == "after-canary" and m.kind == "Ingress" and m.ok]
                if landed:
                    acted = landed[0].at - signalled
                    break
                if time.monotonic() > deadline:
                    raise AssertionError("the next leader never acted")
                await asyncio.sleep(0.01)
            return new_leader, acted
        finally:
            replicas.stop()


async def main(args: argparse.Namespace) -> None:
    bindir = find_bindir()
    if bindir is None:
        sys.exit("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    server = PostgresServer(bindir, durable=True).init()
    server.start()
    results: dict[str, list[tuple[float, float]]] = {"SIGKILL": [], "SIGTERM": []}
    try:
        for n in range(args.trials):
            for how in (signal.SIGKILL, signal.SIGTERM):
                results[how.name].append(await trial(server, how, args, n))
    finally:
        server.destroy()
    print(f"canary-responder failover benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)")
    print(f"3 replicas, PostgreSQL (fsync on), lease {args.lease}, renew deadline {args.renew}, retry {args.retry}")
    for how, values in results.items():
        leaders, acted = [v[0] for v in values], [v[1] for v in values]
        print(
            f"   {how:<8} -> another replica leads: p50 {statistics.median(leaders):6.2f} s  max {max(leaders):6.2f} s"
            f"   -> a new alert's canary traffic off: p50 {statistics.median(acted):6.2f} s  max {max(acted):6.2f} s"
            f"   ({len(values)} trials)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--lease", default="15s")
    parser.add_argument("--renew", default="10s")
    parser.add_argument("--retry", default="2s")
    asyncio.run(main(parser.parse_args()))

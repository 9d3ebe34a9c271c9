"""Delegate figures (issue 15): how long after Alertmanager's webhook the responder has aborted an Argo Rollout, and
has its Flagger rollback gate answering "roll back", next to each controller's own polling delay.

One responder process in this interpreter (SQLite, the Kubernetes API emulator on loopback), one alert per trial
for a fresh canary. Argo: webhook sent -> the emulator's timestamp of the landed ``rollouts/status`` patch.
Flagger: webhook sent -> the first gate call that answers 200, polling the gate every 5 ms (Flagger itself asks once
per analysis interval, so its delay adds up to one interval to this figure).

Run: .venv/bin/python bench/bench_delegates.py [--trials 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support import GATE_TOKEN, alert, bearer, notification, running_responder, write_config  # noqa: E402

from responder.testing.emulator import run_emulator  # noqa: E402
from responder.testing.seeds import SeedObject  # noqa: E402

GATE = "/api/v1/gates/flagger/rollback"
ROLLOUTS = "argoproj.io/v1alpha1/rollouts"
TARGETS = [
    {"name": "argo", "match": {"namespace": "shop"}, "deployment": "{app}", "delegate": "argo-rollouts"},
    {"name": "flagger", "match": {"namespace": "pay"}, "deployment": "{app}", "delegate": "flagger"},
]


def rollout(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": "shop", "annotations": {"rollout.argoproj.io/revision": "2"}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"example/{name}:2"}]}}},
        "status": {"currentPodHash": "6f7d8c9b5", "stableRS": "5d4c3b2a1", "currentStepIndex": 1},
    }


def quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):7.1f} ms   p99 {p99:7.1f} ms   max {ordered[-1]:7.1f} ms"


async def post_alert(session: aiohttp.ClientSession, url: str, app: str, namespace: str) -> None:
    body = notification(alert(app=app, namespace=namespace))
    async with session.post(f"{url}/api/v1/alerts", json=body, headers=bearer()) as answer:
        assert answer.status == 200


async def main(trials: int) -> None:
    names = [f"app{i}" for i in range(trials)]
    objects = [SeedObject(ROLLOUTS, "shop", name, rollout(name)) for name in names]
    argo_ms: list[float] = []
    gate_ms: list[float] = []
    async with run_emulator(objects) as (emulator, url):
        config = write_config(
            Path(tempfile.mkdtemp(prefix="bench-delegates-")),
            kube_url=url,
            targets=TARGETS,
            rollback_cap={"max": 1000, "window": "1m"},
        )
        async with running_responder(config) as running, aiohttp.ClientSession() as session:
            for name in names:
                sent = time.time()
                await post_alert(session, running.url, name, "shop")
                while not [m for m in emulator.mutations if m.kind == "Rollout" and m.name == name and m.ok]:
                    await asyncio.sleep(0.001)
                landed = next(m for m in emulator.mutations if m.kind == "Rollout" and m.name == name)
                argo_ms.append(1000 * (landed.at - sent))

                started = time.monotonic()
                await post_alert(session, running.url, name, "pay")
                call = {"name": name, "namespace": "pay", "phase": "Progressing", "metadata": {"token": GATE_TOKEN}}
                while True:
                    async with session.post(f"{running.url}{GATE}", json=call) as gate:
                        if gate.status == 200:
                            break
                    await asyncio.sleep(0.005)
                gate_ms.append(1000 * (time.monotonic() - started))
    print(f"{trials} trials, one alert each, SQLite store, emulator on loopback")
    print(f"  webhook -> Argo Rollout aborted (status patch landed): {quantiles(argo_ms)}")
    print(f"  webhook -> Flagger gate answers roll back:            {quantiles(gate_ms)}")
    print("  for comparison, the controllers' own polling in their documented examples:")
    print(
        "    Argo Rollouts analysis: interval 5m, failureLimit 3 -> aborts ~15 min after the first failed measurement"
    )
    print("    Flagger analysis: interval 1m, threshold 5 -> rolls back ~5 min after the first failed check;")
    print("    with the gate: at its next interval (<= 1 min) after the figure above")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50)
    asyncio.run(main(parser.parse_args().trials))

"""``canary-responder emulator --kubeconfig FILE``: the Kubernetes API emulator the demo and the tests use, on its
own, for trying the responder by hand. It serves stable and canary Deployments (each with an NGINX Ingress, the
canary one at weight 10) for a few apps, writes a kubeconfig that points at it, says how to point ``serve`` at it,
and runs until Ctrl-C or SIGTERM. It needs the demo extra (kmock)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import yaml

from responder.testing.emulator import run_emulator, sample_canary_objects

CONTEXT = "canary-responder-emulator"


def kubeconfig(url: str) -> str:
    """A kubeconfig for the emulator: plain HTTP on loopback, no credentials (it takes none)."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": "emulator-takes-any-token"}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
        "current-context": CONTEXT,
    }
    return yaml.safe_dump(document, sort_keys=False)


async def run(*, kubeconfig_path: Path, host: str, port: int, namespace: str, apps: list[str]) -> int:
    objects = [obj for app in apps for obj in sample_canary_objects(namespace, app)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_emulator(objects, host=host, port=port) as (_, url):
        await asyncio.to_thread(kubeconfig_path.write_text, kubeconfig(url), encoding="utf-8")
        print(f"Kubernetes API emulator on {url}", flush=True)
        for app in apps:
            print(
                f"  {namespace}/{app} (stable, 4 replicas) and {namespace}/{app}-canary (2 replicas, version=canary),"
            )
            print(f"    Ingresses {app} and {app}-canary (NGINX canary, weight 10)")
        print(f"kubeconfig: {kubeconfig_path} (context {CONTEXT})")
        print("Point the responder at it with, in its configuration:")
        print(f"  kubernetes: {{mode: kubeconfig, kubeconfig: {kubeconfig_path}}}")
        print(f"  (or kubernetes: {{mode: url, url: {url}}})")
        print(f"  safety: {{allowed_namespaces: [{namespace}]}}")
        print("then: canary-responder check-config CONFIG --probe && canary-responder serve CONFIG")
        print("Ctrl-C stops it.", flush=True)
        await stop.wait()
    print("emulator stopped", flush=True)
    return 0

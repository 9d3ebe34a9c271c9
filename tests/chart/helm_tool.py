"""Render and lint the Helm chart with the real Helm library, offline. Runs in the chart tool venv (Python >= 3.12).

There is no helm binary here and helm-sdkpy has no `template`: rendering is an `Install` against a kmock
Kubernetes API emulator on loopback with Helm's in-memory release storage. The emulator knows every kind the
chart can render (Helm maps each manifest to a resource through API discovery) and stores what Helm creates;
the release's `manifest` is the rendered YAML.

The Go runtime inside helm-sdkpy reads its environment once, when the library loads, so HELM_DRIVER and HOME
must be in the environment of the process when it starts: run this script as a subprocess with them set
(tests/chart/conftest.py does), never import it into a process that has already loaded helm-sdkpy.

Usage (prints one JSON object on stdout):
    python helm_tool.py render CHART [--values FILE] [--namespace NS] [--release NAME]
        -> {"ok": true, "manifest": "...", "notes": "..."} or {"ok": false, "error": "..."}
    python helm_tool.py lint CHART
        -> {"ok": true, "result": {...}} or {"ok": false, "error": "..."}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

# (group/version/plural) -> (kind, namespaced): everything the chart may render, plus what Helm itself reads.
RESOURCES: dict[str, tuple[str, bool]] = {
    "v1/configmaps": ("ConfigMap", True),
    "v1/secrets": ("Secret", True),
    "v1/services": ("Service", True),
    "v1/serviceaccounts": ("ServiceAccount", True),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "v1/namespaces": ("Namespace", False),
    "apps/v1/deployments": ("Deployment", True),
    "apps/v1/statefulsets": ("StatefulSet", True),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False),
    "monitoring.coreos.com/v1/prometheusrules": ("PrometheusRule", True),
    "monitoring.coreos.com/v1/servicemonitors": ("ServiceMonitor", True),
    "monitoring.coreos.com/v1alpha1/alertmanagerconfigs": ("AlertmanagerConfig", True),
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


def _start_emulator() -> tuple[str, asyncio.AbstractEventLoop, asyncio.Event]:
    import kmock

    class Emulator(kmock.KubernetesEmulator):  # type: ignore[misc]
        async def _serve_version(self, request: Any) -> Any:
            payload = await super()._serve_version(request)
            if request.resource.group == "":
                payload["groupVersion"] = "v1"  # kmock says "/v1"; client-go rejects that
            return payload

    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        emulator = Emulator()
        for key, (kind, namespaced) in RESOURCES.items():
            emulator.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=set(VERBS))
        async with emulator, kmock.Server(emulator) as server:
            box.update(url=server.url, loop=asyncio.get_running_loop(), stop=asyncio.Event())
            started.set()
            await box["stop"].wait()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    if not started.wait(30):
        raise RuntimeError("the Kubernetes API emulator did not start within 30 s")
    return str(box["url"]), box["loop"], box["stop"]


def _kubeconfig(url: str, namespace: str) -> str:
    import yaml

    # YAML, not JSON: helm-sdkpy tells a kubeconfig text from a file path by its YAML look.
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": url}}],
            "users": [{"name": "tester", "user": {"token": "not-checked"}}],
            "contexts": [
                {"name": "emulator", "context": {"cluster": "emulator", "user": "tester", "namespace": namespace}}
            ],
            "current-context": "emulator",
        }
    )


def _load_values(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    import yaml

    loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return loaded or None


def render(chart: str, values_file: str | None, namespace: str, release: str) -> dict[str, Any]:
    import helm_sdkpy

    url, loop, stop = _start_emulator()
    try:
        config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=_kubeconfig(url, namespace))
        install = helm_sdkpy.Install(config)
        try:
            result = asyncio.run(install.run(release, chart, values=_load_values(values_file), wait=False, timeout=60))
        except helm_sdkpy.HelmError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "manifest": result.get("manifest", ""), "notes": result.get("info", {}).get("notes", "")}
    finally:
        loop.call_soon_threadsafe(stop.set)


def lint(chart: str) -> dict[str, Any]:
    import helm_sdkpy

    # Lint needs no cluster, but the Configuration wants a kubeconfig to parse.
    config = helm_sdkpy.Configuration(namespace="default", kubeconfig=_kubeconfig("http://127.0.0.1:9", "default"))
    try:
        result = asyncio.run(helm_sdkpy.Lint(config).run(chart))
    except helm_sdkpy.HelmError as exc:
        return {"ok": False, "error": str(exc) or "lint failed (helm-sdkpy loses the message text)"}
    return {"ok": True, "result": result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rend = sub.add_parser("render")
    rend.add_argument("chart")
    rend.add_argument("--values")
    rend.add_argument("--namespace", default="canary-responder")
    rend.add_argument("--release", default="canary-responder")
    lnt = sub.add_parser("lint")
    lnt.add_argument("chart")
    args = parser.parse_args(argv)
    if os.environ.get("HELM_DRIVER") != "memory":
        print(json.dumps({"ok": False, "error": "run with HELM_DRIVER=memory (and a scratch HOME) in the environment"}))
        return 2
    if args.command == "render":
        out = render(args.chart, args.values, args.namespace, args.release)
    else:
        out = lint(args.chart)
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

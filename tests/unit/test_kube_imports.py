"""The Kubernetes adapters load only the parts of ``kubernetes_asyncio`` they use.

``kubernetes_asyncio.client``'s own ``__init__`` imports every API class and every model module (about 70 MB of
RSS); ``responder.adapters.kube_imports`` puts lazy packages in their place. Each check runs in a fresh interpreter,
so what this test process imported before does not decide the outcome.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Names the adapters (and the library's own config, watch and leader-election helpers) take from the package.
RESOLVE = textwrap.dedent(
    """
    import asyncio, json, sys, types

    from kubernetes_asyncio import client
    from kubernetes_asyncio.client import api, models
    from kubernetes_asyncio.client.api.apps_v1_api import AppsV1Api
    from kubernetes_asyncio.client.api.coordination_v1_api import CoordinationV1Api
    from kubernetes_asyncio.client.api_client import ApiClient
    from kubernetes_asyncio.client.configuration import Configuration
    from kubernetes_asyncio.client.models.core_v1_event import CoreV1Event
    from kubernetes_asyncio.client.models.v1_deployment import V1Deployment
    from kubernetes_asyncio.client.models.v1_scale import V1Scale
    import kubernetes_asyncio

    same = {
        "client.V1Deployment": client.V1Deployment is V1Deployment,
        "models.V1Deployment": models.V1Deployment is V1Deployment,
        "client.CoreV1Event": client.CoreV1Event is CoreV1Event,
        "models.V1Scale": models.V1Scale is V1Scale,
        "client.AppsV1Api": client.AppsV1Api is AppsV1Api,
        "api.AppsV1Api": api.AppsV1Api is AppsV1Api,
        "client.CoordinationV1Api": client.CoordinationV1Api is CoordinationV1Api,
        "client.ApiClient": client.ApiClient is ApiClient,
        "client.Configuration": client.Configuration is Configuration,
        "client.models": client.models is models,
        "client.api": client.api is api,
        "package.client": kubernetes_asyncio.client is client,
        "package.client.models": kubernetes_asyncio.client.models is models,
    }
    try:
        from kubernetes_asyncio.client import NoSuchModel  # noqa: F401
        unknown = "imported"
    except ImportError:
        unknown = "ImportError"

    BODY = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "checkout-canary", "namespace": "shop", "resourceVersion": "7"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {"spec": {"containers": [{"name": "app", "image": "checkout:2"}]}},
        },
        "status": {"readyReplicas": 1, "conditions": [{"type": "Available", "status": "True"}]},
    }

    async def deserialize():
        async with client.ApiClient() as api_client:
            response = types.SimpleNamespace(data=json.dumps(BODY))
            return api_client.deserialize(response, "V1Deployment")

    found = asyncio.run(deserialize())
    container = found.spec.template.spec.containers[0]
    print(json.dumps({
        "loaded": LOADED,
        "same": same,
        "unknown": unknown,
        "hasattr_unknown": hasattr(client, "NoSuchModel"),
        "in_dir": "V1Deployment" in dir(client) and "V1Scale" in dir(models),
        "deserialized": [
            type(found).__name__ == "V1Deployment" and type(found) is V1Deployment,
            type(container) is models.V1Container,
            container.image,
            found.metadata.resource_version,
            found.status.conditions[0].type,
        ],
    }))
    """
)

COUNT = textwrap.dedent(
    """
    import sys
    LOADED = {
        "models": sorted(n for n in sys.modules if n.startswith("kubernetes_asyncio.client.models.")),
        "api": sorted(n for n in sys.modules if n.startswith("kubernetes_asyncio.client.api.")),
    }
    """
)


def run(prelude: str) -> dict[str, Any]:
    script = prelude + COUNT + RESOLVE
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def assert_everything_resolves(result: dict[str, Any]) -> None:
    assert result["same"] == {name: True for name in result["same"]}
    assert result["unknown"] == "ImportError" and result["hasattr_unknown"] is False
    assert result["in_dir"] is True
    assert result["deserialized"] == [True, True, "checkout:2", "7", "Available"]


def test_the_adapters_load_only_the_models_and_apis_they_use() -> None:
    result = run("import responder.adapters.kube, responder.adapters.leader\n")
    models, apis = result["loaded"]["models"], result["loaded"]["api"]
    assert len(models) < 60, models
    assert len(apis) < 10, apis
    assert_everything_resolves(result)


def test_the_lazy_packages_step_aside_when_the_real_client_came_first() -> None:
    result = run("import kubernetes_asyncio.client\nimport responder.adapters.kube, responder.adapters.leader\n")
    assert len(result["loaded"]["models"]) > 500  # the real package, as imported
    assert_everything_resolves(result)


def test_an_init_that_is_not_python_source_leaves_the_library_to_load_as_usual(tmp_path: Path) -> None:
    from responder.adapters.kube_imports import _read_init

    compiled = tmp_path / "__init__.pyc"
    compiled.write_bytes(b"\xa7\r\r\n\0\0\0\0" + bytes(range(256)))  # bytecode where the source was expected
    assert _read_init(compiled, "kubernetes_asyncio.client") is None
    assert _read_init(tmp_path / "missing.py", "kubernetes_asyncio.client") is None
    source = tmp_path / "__init__.py"
    source.write_text('"""doc"""\nfrom .api_client import ApiClient as Client\n__version__ = "1"\n')
    assert _read_init(source, "kubernetes_asyncio.client") == (
        {"Client": ("kubernetes_asyncio.client.api_client", "ApiClient")},
        {"__version__": "1"},
    )

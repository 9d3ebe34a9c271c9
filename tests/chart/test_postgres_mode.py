"""The chart's PostgreSQL mode (storage.backend=postgres) and the limits of the SQLite one.

With PostgreSQL every replica commits webhooks to the shared database and is ready, only the Lease holder decides
and acts, and followers forward operator requests to the leader's pod IP. So: a Deployment with a rolling update
(maxUnavailable 0, maxSurge 1) and no PVC, the connection string mounted from the user's Secret and referenced as
{file: ...}, leader election on (even with one replica: a rolling update overlaps two pods), POD_IP from the
downward API, a PodDisruptionBudget that never blocks a drain, and NetworkPolicy rules between the replicas and to
PostgreSQL. SQLite keeps one replica: more fail the render, pointing at storage.backend=postgres.

Rendered: tests/chart/values-ha.yaml (three replicas, every option of the mode) and small values files written here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import HERE, NAMESPACE, HelmFailed, Rendered

pytestmark = pytest.mark.slow

HA = HERE / "values-ha.yaml"
SECRETS = "/etc/canary-responder/secrets"
SELECTOR = {"app.kubernetes.io/name": "canary-responder", "app.kubernetes.io/instance": "canary-responder"}
ROLLING = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


@pytest.fixture
def render_values(render: Callable[..., Rendered], tmp_path: Path) -> Callable[[dict[str, Any]], Rendered]:
    """Render values given as a dict (one file per call: renders are cached by path)."""

    def _render(values: dict[str, Any]) -> Rendered:
        path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(values))
        return render(path)

    return _render


def _postgres(replicas: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "replicaCount": replicas,
        "storage": {"backend": "postgres", "postgres": {"existingSecret": "responder-db"}},
        **extra,
    }


def _config(rendered: Rendered) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(rendered.one("ConfigMap", "canary-responder")["data"]["config.yaml"])
    return config


def _pod(rendered: Rendered) -> dict[str, Any]:
    pod: dict[str, Any] = rendered.one("Deployment")["spec"]["template"]["spec"]
    return pod


def _env(rendered: Rendered) -> dict[str, Any]:
    (container,) = _pod(rendered)["containers"]
    return {e["name"]: e for e in container["env"]}


# --- the workload --------------------------------------------------------------------------------------------


def test_postgres_is_a_rolling_deployment_without_a_database_volume(render: Callable[..., Rendered]) -> None:
    ha = render(HA)
    deployment = ha.one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == ROLLING
    assert not ha.of_kind("StatefulSet")
    # persistence.enabled is still true (its default): with PostgreSQL it is ignored, no claim at all.
    assert not ha.of_kind("PersistentVolumeClaim")
    pod = _pod(ha)
    assert "data" not in {v["name"] for v in pod["volumes"]}
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    (container,) = pod["containers"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/etc/canary-responder/config.yaml",
        SECRETS,
        "/tmp",
    }
    assert [s["metadata"]["name"] for s in ha.of_kind("Service")] == ["canary-responder"]
    # Readiness is /readyz: every replica is ready once a write commits to PostgreSQL.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_one_postgres_replica_also_rolls(render_values: Callable[[dict[str, Any]], Rendered]) -> None:
    single = render_values(_postgres(1))
    assert single.one("Deployment")["spec"]["strategy"] == ROLLING
    assert not single.of_kind("PersistentVolumeClaim")


def test_the_dsn_secret_is_mounted_and_referenced(render: Callable[..., Rendered]) -> None:
    ha = render(HA)
    storage = _config(ha)["storage"]
    assert storage == {
        "backend": "postgres",
        "postgres": {
            "dsn": {"file": f"{SECRETS}/postgres/dsn"},
            "connect_timeout": "3s",
            "statement_timeout": "4s",
            "poll_interval": "1s",
        },
    }
    (volume,) = [v for v in _pod(ha)["volumes"] if v["name"] == "secrets"]
    sources = [s["secret"] for s in volume["projected"]["sources"]]
    (db,) = [s for s in sources if s["name"] == "responder-db-app"]
    assert db["items"] == [{"key": "uri", "path": "postgres/dsn"}]
    # The user's Secret (e.g. CloudNativePG's <cluster>-app): never created, never inlined.
    assert "responder-db-app" not in {s["metadata"]["name"] for s in ha.of_kind("Secret")}
    assert "postgresql://" not in ha.manifest


def test_sqlite_config_is_unchanged(render: Callable[..., Rendered]) -> None:
    default = render(None)
    config = _config(default)
    assert config["storage"] == {"path": "/var/lib/canary-responder/responder.db"}
    assert "leader_election" not in config
    assert "POD_IP" not in _env(default)
    (container,) = _pod(default)["containers"]
    assert {"name": "data", "mountPath": "/var/lib/canary-responder"} in container["volumeMounts"]
    assert default.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert default.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_postgres_config_passes_check_config(
    render_values: Callable[[dict[str, Any]], Rendered], responder_cli: Path, tmp_path: Path
) -> None:
    for replicas in (1, 2):
        text = render_values(_postgres(replicas)).one("ConfigMap", "canary-responder")["data"]["config.yaml"]
        path = tmp_path / f"config-{replicas}.yaml"
        path.write_text(text)
        proc = subprocess.run(
            [str(responder_cli), "check-config", "--skip-secrets", str(path)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr


def test_postgres_objects_pass_kubernetes_validate_strict(
    render_values: Callable[[dict[str, Any]], Rendered], kube_validate: Callable[..., Any]
) -> None:
    """values-ha.yaml is validated with the other value files; one replica with the default policy here."""
    single = render_values(_postgres(1, networkPolicy={"enabled": True}))
    result = kube_validate(single.manifest)
    assert result.returncode == 0, result.stdout + result.stderr


# --- leader election -----------------------------------------------------------------------------------------


def test_leader_election_is_on_with_the_shared_store(
    render: Callable[..., Rendered], render_values: Callable[[dict[str, Any]], Rendered]
) -> None:
    ha = render(HA)
    assert _config(ha)["leader_election"] == {
        "enabled": True,
        "lease_name": "canary-responder-leader",
        "namespace": NAMESPACE,
    }
    # One replica too: the rolling update runs the old and the new pod together, and only one may act.
    assert _config(render_values(_postgres(1)))["leader_election"]["enabled"] is True
    (lease_role,) = [r for r in ha.of_kind("Role") if r["metadata"]["name"].endswith("-leader-election")]
    named = [rule for rule in lease_role["rules"] if "resourceNames" in rule]
    assert named == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["canary-responder-leader"],
            "verbs": ["get", "update"],
        }
    ]


def test_pod_ip_comes_from_the_downward_api(render: Callable[..., Rendered]) -> None:
    env = _env(render(HA))
    # advertise_url defaults to http://$POD_IP:<listen.port>; the identity is $POD_NAME.
    assert env["POD_IP"] == {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "advertise_url" not in _config(render(HA))["leader_election"]


# --- PodDisruptionBudget -------------------------------------------------------------------------------------


def _allows_an_eviction(pdb: dict[str, Any], replicas: int) -> bool:
    """Whether the budget lets at least one healthy pod of `replicas` be evicted (integer budgets only)."""
    spec = pdb["spec"]
    if "minAvailable" in spec:
        return bool(spec["minAvailable"] < replicas)
    return bool(spec["maxUnavailable"] >= 1)


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_pdb_never_blocks_a_drain(render_values: Callable[[dict[str, Any]], Rendered], replicas: int) -> None:
    pdb = render_values(_postgres(replicas)).one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == SELECTOR
    assert _allows_an_eviction(pdb, replicas)
    if replicas == 1:
        # minAvailable 1 on the only replica would block every drain: maxUnavailable instead.
        assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}
    else:
        assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
        # Not-ready pods (all of them while PostgreSQL is down) must not hold a drain back.
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_pdb_that_would_block_drains_is_refused(render_values: Callable[[dict[str, Any]], Rendered]) -> None:
    with pytest.raises(HelmFailed, match=r"podDisruptionBudget.minAvailable=3 with replicaCount=3: .* Use at most 2"):
        render_values(_postgres(3, podDisruptionBudget={"minAvailable": 3}))
    assert not render_values(_postgres(3, podDisruptionBudget={"enabled": False})).of_kind("PodDisruptionBudget")
    kept = render_values(_postgres(3, podDisruptionBudget={"minAvailable": 2})).one("PodDisruptionBudget")
    assert kept["spec"]["minAvailable"] == 2


# --- NetworkPolicy -------------------------------------------------------------------------------------------


def test_network_policy_lets_replicas_talk_and_reach_postgres(render: Callable[..., Rendered]) -> None:
    policy = render(HA).one("NetworkPolicy")["spec"]
    monitoring, replicas = policy["ingress"]
    assert "namespaceSelector" in monitoring["from"][0]
    # A follower forwards operator requests to the leader: ingress from the release's own pods, HTTP port only.
    assert replicas == {
        "from": [{"podSelector": {"matchLabels": SELECTOR}}],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }
    dns, api, peers, postgres = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53} and {p["port"] for p in api["ports"]} == {443, 6443}
    assert peers == {
        "to": [{"podSelector": {"matchLabels": SELECTOR}}],
        "ports": [{"port": 8080, "protocol": "TCP"}],
    }
    assert postgres["ports"] == [{"port": 5432, "protocol": "TCP"}]
    # The CIDR is one peer; the namespace and pod selectors together are another (both must match).
    assert postgres["to"] == [
        {"ipBlock": {"cidr": "10.20.0.0/16"}},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "databases"}},
            "podSelector": {"matchLabels": {"cnpg.io/cluster": "responder-db"}},
        },
    ]


def test_postgres_egress_defaults_to_any_address_on_the_port(
    render_values: Callable[[dict[str, Any]], Rendered],
) -> None:
    policy = render_values(_postgres(2, networkPolicy={"enabled": True})).one("NetworkPolicy")["spec"]
    postgres = policy["egress"][-1]
    assert postgres == {"ports": [{"port": 5432, "protocol": "TCP"}]}
    bouncer = {"enabled": True, "postgres": {"port": 6432, "podSelector": {"matchLabels": {"app": "pgbouncer"}}}}
    policy = render_values(_postgres(2, networkPolicy=bouncer, service={"port": 9090})).one("NetworkPolicy")["spec"]
    peers, postgres = policy["egress"][-2:]
    assert peers["ports"] == [{"port": 9090, "protocol": "TCP"}]
    # podSelector alone: pods of the release namespace.
    assert postgres == {
        "ports": [{"port": 6432, "protocol": "TCP"}],
        "to": [{"podSelector": {"matchLabels": {"app": "pgbouncer"}}}],
    }


# --- SQLite stays one replica --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 2},
        {"replicaCount": 3, "persistence": {"enabled": False}},
        {"replicaCount": 2, "storage": {"backend": "sqlite"}},
    ],
    ids=["persisted", "ephemeral", "explicit-sqlite"],
)
def test_sqlite_with_several_replicas_fails(
    render_values: Callable[[dict[str, Any]], Rendered], values: dict[str, Any]
) -> None:
    with pytest.raises(HelmFailed) as failure:
        render_values(values)
    message = str(failure.value)
    assert f"replicaCount={values['replicaCount']} needs storage.backend=postgres" in message
    assert "splits the audit history" in message


def test_the_statefulset_mode_is_refused(render_values: Callable[[dict[str, Any]], Rendered]) -> None:
    with pytest.raises(HelmFailed, match="workload=statefulset was removed.*storage.backend=postgres"):
        render_values({"workload": "statefulset"})
    # Old values files that name the Deployment still install.
    assert render_values({"workload": "auto"}).one("Deployment")["spec"]["replicas"] == 1


# --- NOTES ---------------------------------------------------------------------------------------------------


def test_notes_say_which_mode_and_how_to_find_the_leader(render: Callable[..., Rendered]) -> None:
    notes = render(HA).notes
    assert "Storage: PostgreSQL (storage.backend=postgres)" in notes
    assert "Secret responder-db-app, key uri" in notes
    assert f"kubectl -n {NAMESPACE} get lease canary-responder-leader -o jsonpath='{{.spec.holderIdentity}}" in notes
    assert "every replica 1/1 ready" in notes and "helm upgrade --wait" in notes
    assert "WARNING: persistence.enabled is false" not in notes
    default = render(None).notes
    assert "Storage: SQLite" in default and "get lease" not in default

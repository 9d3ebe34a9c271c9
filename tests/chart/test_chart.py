"""The Helm chart, rendered by the real Helm library (helm-sdkpy) and checked object by object.

Rendered: the default values, tests/chart/values-all.yaml (every option on, SQLite) and values-ha.yaml (three
replicas on PostgreSQL; that mode's own facts are in test_postgres_mode.py). Checked: kubernetes-validate --strict
on every object, least-privilege RBAC, the pod's security settings, config and secrets as files (and the config
passes `canary-responder check-config --skip-secrets`), the packaged PrometheusRule equals alert-rules/, the
dashboard, NOTES, lint, and bad values rejected by values.schema.json.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CHART, HERE, NAMESPACE, ROOT, HelmFailed, Rendered

pytestmark = pytest.mark.slow

VALUE_FILES = {
    "default": None,
    "all": HERE / "values-all.yaml",
    "ha": HERE / "values-ha.yaml",
}
BAD_VALUES = sorted((HERE / "bad").glob("*.yaml"))

# The only rights the responder gets in an allowed namespace: (apiGroup, resource) -> verbs.
# deployments/scale is read too: the responder takes the resourceVersion precondition for its scale patch from it.
ROLLBACK_RIGHTS = {
    ("apps", "deployments"): {"get"},
    ("apps", "deployments/scale"): {"get", "patch"},
    ("networking.k8s.io", "ingresses"): {"get", "patch"},
    ("", "events"): {"create"},
}
# Evidence capture (config.evidence.enabled, on by default): reads of the canary pods, their logs and Events.
EVIDENCE_RIGHTS = {("", "pods"): {"list"}, ("", "pods/log"): {"get"}, ("", "events"): {"create", "list"}}
DEFAULT_RIGHTS = {**ROLLBACK_RIGHTS, **EVIDENCE_RIGHTS}
LEASE_RIGHTS = {("coordination.k8s.io", "leases"): {"get", "create", "update"}}


def _rollback_rights(values: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """ROLLBACK_RIGHTS plus what configuration turns on: httproutes get/patch for the Gateway API step,
    deployments patch for GitOps annotations; never more."""
    rights = {key: set(verbs) for key, verbs in ROLLBACK_RIGHTS.items()}
    config = values["config"]
    if values.get("gatewayAPI", {}).get("enabled") or any(t.get("httproute") for t in config["targets"]):
        rights[("gateway.networking.k8s.io", "httproutes")] = {"get", "patch"}
    if (config.get("gitops") or {}).get("annotate"):
        rights[("apps", "deployments")] = {"get", "patch"}
    if (config.get("evidence") or {}).get("enabled", True):
        rights.update({key: set(verbs) for key, verbs in EVIDENCE_RIGHTS.items()})
    if values.get("argoRollouts", {}).get("enabled") or any(
        t.get("delegate") == "argo-rollouts" for t in config["targets"]
    ):
        rights[("argoproj.io", "rollouts")] = {"get", "patch"}
        rights[("argoproj.io", "rollouts/status")] = {"patch"}
    return rights


@pytest.fixture(scope="module", params=sorted(VALUE_FILES))
def rendered(request: pytest.FixtureRequest, render: Callable[..., Rendered]) -> Rendered:
    return render(VALUE_FILES[request.param])


def _values(name: str) -> dict[str, Any]:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    path = VALUE_FILES[name]
    overrides = yaml.safe_load(path.read_text()) if path else {}
    return _merge(defaults, overrides)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _rules_by_resource(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    rights: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                rights.setdefault((group, resource), set()).update(rule["verbs"])
    return rights


# --- every object is valid -----------------------------------------------------------------------------------


def test_every_object_passes_kubernetes_validate_strict(rendered: Rendered, kube_validate: Callable[..., Any]) -> None:
    result = kube_validate(rendered.manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    # Custom resources only warn ("couldn't find schema"); everything built in must have been validated.
    for obj in rendered.objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        assert f"couldn't find schema for kind {obj['kind']}" not in (result.stdout + result.stderr).lower()


def test_objects_live_in_the_release_namespace_or_an_allowed_one(rendered: Rendered) -> None:
    allowed = set(_values_for(rendered)["config"]["safety"]["allowed_namespaces"])
    dashboard_ns = _values_for(rendered)["dashboard"]["namespace"] or NAMESPACE
    for obj in rendered.objects:
        ns = obj["metadata"].get("namespace")
        assert ns, f"{obj['kind']} {obj['metadata']['name']} has no namespace"
        if obj["kind"] in ("Role", "RoleBinding") and obj["metadata"]["name"].endswith("-rollback"):
            assert ns in allowed
        elif obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-dashboard"):
            assert ns == dashboard_ns
        else:
            assert ns == NAMESPACE, f"{obj['kind']} {obj['metadata']['name']} in {ns}"


def _workload(rendered: Rendered) -> dict[str, Any]:
    """The one workload running the responder: always a Deployment (the SQLite StatefulSet mode was removed)."""
    assert not rendered.of_kind("StatefulSet")
    return rendered.one("Deployment")


def _values_for(rendered: Rendered) -> dict[str, Any]:
    workload = _workload(rendered)
    replicas = workload["spec"]["replicas"]
    name = "ha" if replicas > 1 else ("all" if workload["metadata"]["name"] == "responder" else "default")
    return _values(name)


# --- RBAC ----------------------------------------------------------------------------------------------------


def test_rbac_is_namespaced_exact_and_never_touches_secrets(rendered: Rendered) -> None:
    kinds = {o["kind"] for o in rendered.objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    values = _values_for(rendered)
    allowed = values["config"]["safety"]["allowed_namespaces"]
    roles = rendered.of_kind("Role")
    for role in roles:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"wildcard in {role['metadata']['name']}: {rule}"
            assert "secrets" not in rule["resources"]
            assert not rule.get("nonResourceURLs")
    rollback = [r for r in roles if r["metadata"]["name"].endswith("-rollback")]
    assert sorted(r["metadata"]["namespace"] for r in rollback) == sorted(allowed)
    for role in rollback:
        assert _rules_by_resource(role) == _rollback_rights(values)
    (lease,) = [r for r in roles if r["metadata"]["name"].endswith("-leader-election")]
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert _rules_by_resource(lease) == LEASE_RIGHTS
    # get/update only on the one Lease by name (create cannot be limited by name).
    lease_name = values["leaderElection"]["leaseName"] or _workload(rendered)["metadata"]["name"]
    for rule in lease["rules"]:
        if set(rule["verbs"]) & {"get", "update"}:
            assert rule["resourceNames"] == [lease_name]


def test_every_role_is_bound_to_the_responders_service_account_only(rendered: Rendered) -> None:
    sa_name = _workload(rendered)["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in rendered.of_kind("Role")}
    bindings = rendered.of_kind("RoleBinding")
    assert len(bindings) == len(roles)
    for binding in bindings:
        ns = binding["metadata"]["namespace"]
        assert binding["roleRef"]["kind"] == "Role"
        assert (ns, binding["roleRef"]["name"]) in roles
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}]
    if rendered.of_kind("ServiceAccount"):
        assert rendered.one("ServiceAccount")["metadata"]["name"] == sa_name


# --- the pod -------------------------------------------------------------------------------------------------


def test_pod_runs_locked_down(rendered: Rendered) -> None:
    pod = _workload(rendered)["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert [container["command"], container["args"]] == [
        ["canary-responder"],
        ["serve", "--config", "/etc/canary-responder/config.yaml"],
    ]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    # Every writable path is a volume: the data directory and /tmp.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/canary-responder/config.yaml"]["readOnly"] is True
    assert mounts["/etc/canary-responder/secrets"]["readOnly"] is True
    assert "/tmp" in mounts


def test_service_and_probes_use_the_configured_port(rendered: Rendered) -> None:
    config = _config_of(rendered)
    (container,) = _workload(rendered)["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == config["listen"]["port"]
    service = rendered.one("Service", _workload(rendered)["metadata"]["name"])
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["targetPort"] == "http" == port["name"]
    assert service["spec"]["selector"] == _workload(rendered)["spec"]["selector"]["matchLabels"]
    # Alertmanager's Service: a normal ClusterIP Service, so it reaches only ready pods (the leader).
    assert service["spec"].get("clusterIP") != "None" and not service["spec"].get("publishNotReadyAddresses")


# --- config and secrets --------------------------------------------------------------------------------------


def _config_of(rendered: Rendered) -> dict[str, Any]:
    name = _workload(rendered)["metadata"]["name"]
    document: dict[str, Any] = yaml.safe_load(rendered.one("ConfigMap", name)["data"]["config.yaml"])
    return document


def _secret_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        if set(node) == {"file"}:
            return [node["file"]]
        return [ref for value in node.values() for ref in _secret_refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _secret_refs(item)]
    return []


def test_rendered_config_passes_check_config(rendered: Rendered, responder_cli: Path, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(rendered.one("ConfigMap", _workload(rendered)["metadata"]["name"])["data"]["config.yaml"])
    command = [str(responder_cli), "check-config", "--skip-secrets", str(path)]
    proc = subprocess.run(command, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "allowed namespaces:" in proc.stdout


def test_secrets_are_files_from_mounted_secrets_never_inline(rendered: Rendered) -> None:
    config = _config_of(rendered)
    refs = _secret_refs(config["auth"]) + _secret_refs(config["storage"])
    assert refs, "the config references no secret files"
    pod = _workload(rendered)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    mounted = {
        f"/etc/canary-responder/secrets/{item['path']}": (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    extra = {f"/etc/canary-responder/secrets/extra/{e['path']}" for e in _values_for(rendered)["extraSecretFiles"]}
    assert sorted(refs) == sorted(set(mounted) - extra), "every secret file the config names is mounted"
    assert extra <= set(mounted), "extraSecretFiles are mounted for config sections the chart does not own"
    created = {s["metadata"]["name"]: s for s in rendered.of_kind("Secret")}
    values = _values_for(rendered)
    existing = {
        values["auth"][part]["existingSecret"]
        for part in ("webhook", "admin", "flaggerGate", "auditHmac")
        if values["auth"][part]
    } - {""}
    existing |= {e["secret"] for e in values["extraSecretFiles"]}
    if values["storage"]["backend"] == "postgres":
        existing.add(values["storage"]["postgres"]["existingSecret"])  # brought by the user, never created
    for name, key in mounted.values():
        assert name in existing or key in created[name]["data"], f"{name}/{key} neither created nor existing"
    # Nothing secret in the ConfigMap: no value of a created Secret appears in it.
    import base64

    text = rendered.one("ConfigMap", _workload(rendered)["metadata"]["name"])["data"]["config.yaml"]
    for secret in created.values():
        for value in secret["data"].values():
            assert base64.b64decode(value).decode() not in text


def test_chart_owned_config_keys(render: Callable[..., Rendered]) -> None:
    default, everything, ha = (render(VALUE_FILES[n]) for n in ("default", "all", "ha"))
    cfg = _config_of(everything)
    assert cfg["listen"] == {"host": "0.0.0.0", "port": 9090, "body_limit_bytes": 2097152, "body_timeout": "10s"}
    assert cfg["kubernetes"] == {"mode": "in_cluster", "request_timeout": "3s"}
    hmac_file = "/etc/canary-responder/secrets/audit/hmac-key"
    assert cfg["storage"] == {"path": "/data/responder.db", "audit_hmac_key": {"file": hmac_file}}
    assert len(cfg["auth"]["webhook"]["bearer_tokens"]) == 2 and cfg["auth"]["webhook"]["basic"]["username"]
    assert cfg["auth"]["gate_token"] == {"file": "/etc/canary-responder/secrets/flagger-gate/token"}
    assert "gate_token" not in _config_of(default)["auth"]  # the gate is off unless asked for
    assert cfg["dry_run"] is True and cfg["safety"]["canary_marker"] == "track=canary"
    assert "leader_election" not in cfg and "leader_election" not in _config_of(default)
    assert _config_of(default)["storage"] == {"path": "/var/lib/canary-responder/responder.db"}
    assert _config_of(ha)["storage"]["backend"] == "postgres" and "path" not in _config_of(ha)["storage"]
    assert _config_of(ha)["leader_election"] == {
        "enabled": True,
        "lease_name": "canary-responder-leader",
        "namespace": NAMESPACE,
    }


def test_generated_tokens_and_given_ones(render: Callable[..., Rendered]) -> None:
    import base64

    default = render(None)
    for name in ("canary-responder-webhook", "canary-responder-admin"):
        token = base64.b64decode(default.one("Secret", name)["data"]["token"]).decode()
        assert re.fullmatch(r"[A-Za-z0-9]{48}", token)
    everything = render(VALUE_FILES["all"])
    webhook = everything.one("Secret", "responder-webhook")["data"]
    assert base64.b64decode(webhook["token"]).decode() == "webhook-token-from-values"
    assert set(webhook) == {"token", "token-next", "password"}
    assert not [s for s in everything.of_kind("Secret") if s["metadata"]["name"] == "responder-admin"]
    gate = everything.one("Secret", "responder-flagger-gate")["data"]
    assert base64.b64decode(gate["token"]).decode() == "gate-token-from-values"
    assert not [s for s in default.of_kind("Secret") if s["metadata"]["name"].endswith("-flagger-gate")]


# --- storage -------------------------------------------------------------------------------------------------


def test_persistence_pvc_or_emptydir_with_warning(render: Callable[..., Rendered], tmp_path: Path) -> None:
    default = render(None)
    pvc = default.one("PersistentVolumeClaim")
    pod = default.one("Deployment")["spec"]["template"]["spec"]
    (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert default.one("Deployment")["spec"]["strategy"]["type"] == "Recreate"
    assert "WARNING: persistence.enabled is false" not in default.notes
    path = tmp_path / "ephemeral.yaml"
    path.write_text("persistence: {enabled: false}\n")
    ephemeral = render(path)
    assert not ephemeral.of_kind("PersistentVolumeClaim")
    (data,) = [v for v in ephemeral.one("Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "emptyDir": {}}
    assert "WARNING: persistence.enabled is false" in ephemeral.notes and "LOST" in ephemeral.notes
    # No file to hand over, but still one actor at a time: two pods with separate inboxes would both act.
    assert ephemeral.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_single_replica_is_a_deployment_with_its_pvc(render: Callable[..., Rendered], tmp_path: Path) -> None:
    default = render(None)
    assert not default.of_kind("StatefulSet")
    assert [s["metadata"]["name"] for s in default.of_kind("Service")] == ["canary-responder"]
    pvc = default.one("PersistentVolumeClaim", "canary-responder-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "Storage: SQLite (storage.backend=sqlite), on PVC canary-responder-data" in default.notes
    everything = render(VALUE_FILES["all"])  # replicaCount 1, persistence with every PVC option
    assert everything.one("Deployment")["spec"]["strategy"]["type"] == "Recreate"
    assert everything.one("PersistentVolumeClaim")["spec"]["storageClassName"] == "fast-ssd"
    path = tmp_path / "existing-claim.yaml"
    path.write_text("persistence: {enabled: true, existingClaim: audit}\n")
    existing = render(path)
    assert not existing.of_kind("PersistentVolumeClaim")
    volumes = existing.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "audit"}} in volumes


# --- monitoring ----------------------------------------------------------------------------------------------


def test_prometheus_rule_is_the_tested_one(render: Callable[..., Rendered]) -> None:
    source = yaml.safe_load((ROOT / "alert-rules" / "canary-rules.yaml").read_text())
    app = yaml.safe_load((ROOT / "alert-rules" / "sources" / "app.yaml").read_text())
    copy, original = CHART / "files" / "canary-rules.yaml", ROOT / "alert-rules" / "canary-rules.yaml"
    assert copy.read_bytes() == original.read_bytes(), (
        "helm-chart/files/canary-rules.yaml differs from alert-rules/: run bash scripts/chart-check.sh --sync"
    )
    rule = render(None).one("PrometheusRule")
    # The default rules.source (app) goes first into the alert group; every source: test_rules_sources.py.
    [group] = source["spec"]["groups"]
    assert rule["spec"] == {"groups": [{**group, "rules": app["spec"]["groups"][0]["rules"] + group["rules"]}]}
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # With base URLs set, only the hosts of the annotation links change.
    templated = render(VALUE_FILES["all"]).one("PrometheusRule")["spec"]
    text = json.dumps(templated)
    assert "example.com" not in text
    assert "https://runbooks.shop.example/canary#canaryhigherrorrate" in text
    assert "https://grafana.shop.example/d/canary-responder/" in text


def test_service_monitor_scrapes_the_service(rendered: Rendered) -> None:
    monitors = rendered.of_kind("ServiceMonitor")
    if not monitors:
        return
    (monitor,) = monitors
    svc = rendered.one("Service", _workload(rendered)["metadata"]["name"])
    selector = monitor["spec"]["selector"]
    assert _selects(selector, svc["metadata"]["labels"])
    # Only that Service: another Service with the same pods would have them scraped twice.
    assert [
        s["metadata"]["name"] for s in rendered.of_kind("Service") if _selects(selector, s["metadata"]["labels"])
    ] == [svc["metadata"]["name"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == svc["spec"]["ports"][0]["name"] and endpoint["path"] == "/metrics"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels, and the In/NotIn/Exists/DoesNotExist matchExpressions) against labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def test_alertmanager_config_routes_action_alerts_with_bearer_from_the_webhook_secret(
    render: Callable[..., Rendered],
) -> None:
    assert not render(None).of_kind("AlertmanagerConfig")
    everything = render(VALUE_FILES["all"])
    amc = everything.one("AlertmanagerConfig")
    assert amc["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    route = amc["spec"]["route"]
    assert route["matchers"] == [{"name": "action", "matchType": "=~", "value": "rollback|rollback-if-persists|notify"}]
    (receiver,) = amc["spec"]["receivers"]
    assert receiver["name"] == route["receiver"]
    (hook,) = receiver["webhookConfigs"]
    assert hook["url"] == f"http://responder.{NAMESPACE}.svc:9090/api/v1/alerts"
    assert hook["sendResolved"] is True
    auth = hook["httpConfig"]["authorization"]
    assert auth == {"type": "Bearer", "credentials": {"name": "responder-webhook", "key": "token"}}
    assert "token" in everything.one("Secret", "responder-webhook")["data"]


def test_network_policy(render: Callable[..., Rendered]) -> None:
    assert not render(None).of_kind("NetworkPolicy")
    everything = render(VALUE_FILES["all"])
    policy = everything.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    (source,) = ingress["from"]
    assert sorted(source["namespaceSelector"]["matchExpressions"][0]["values"]) == ["monitoring", "prometheus"]
    # SQLite: no replica-to-replica and no PostgreSQL rules (test_postgres_mode.py has those).
    dns, api, extra = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [b["ipBlock"]["cidr"] for b in api["to"]] == ["10.0.0.1/32", "172.20.0.10/32"]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert extra["ports"] == [{"port": 443, "protocol": "TCP"}]


def test_pdb_selects_the_pods(rendered: Rendered) -> None:
    pdb = rendered.one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == _workload(rendered)["spec"]["selector"]["matchLabels"]


def test_dashboard(render: Callable[..., Rendered]) -> None:
    everything = render(VALUE_FILES["all"])
    cm = everything.one("ConfigMap", "responder-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1" and cm["metadata"]["namespace"] == "grafana"
    dashboard = json.loads(cm["data"]["canary-deployment-comparison.json"])
    assert dashboard["title"] == "Canary Deployment Comparison"
    assert dashboard["uid"] == "canary-responder"  # the alerts' dashboard_url: /d/canary-responder/...
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in ("Request rate", "Error rate (5xx ratio)", "P95 latency", "P99 latency", "Memory (working set)"):
        assert wanted in titles
    assert {"CPU", "Canary traffic share", "Rollback steps", "Rollbacks", "Webhook receipt to step done"} <= titles
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    text = "\n".join(exprs)
    for metric in (
        "canary_responder_actions_total",
        "canary_responder_rollbacks_total",
        "canary_responder_action_latency_seconds_bucket",
    ):
        assert metric in text
    # Every recording rule the dashboard reads exists in the shipped rules.
    recorded = {
        r["record"]
        for path in (ROOT / "alert-rules" / "canary-rules.yaml", ROOT / "alert-rules" / "sources" / "app.yaml")
        for g in yaml.safe_load(path.read_text())["spec"]["groups"]
        for r in g["rules"]
        if "record" in r
    }
    used = set(re.findall(r"\b[a-z_]+:[a-z_0-9]+:[a-z_0-9]+\b", text))
    assert used and used <= recorded, used - recorded
    assert {a["name"] for a in dashboard["annotations"]["list"]} == {"Rollbacks", "Canary alerts"}
    assert render(None).one("ConfigMap", "canary-responder-dashboard")["metadata"]["namespace"] == NAMESPACE


def test_notes_tell_how_to_point_alertmanager_at_the_service(render: Callable[..., Rendered]) -> None:
    notes = render(None).notes
    assert f"url: http://canary-responder.{NAMESPACE}.svc:8080/api/v1/alerts" in notes
    assert "credentials_file: /etc/alertmanager/secrets/canary-responder-webhook/token" in notes
    assert "type: Bearer" in notes
    assert "AlertmanagerConfig responder routes" in render(VALUE_FILES["all"]).notes


# --- lint and schema -----------------------------------------------------------------------------------------


def test_lint_passes(lint: Callable[[], dict[str, Any]]) -> None:
    result = lint()
    assert result["ok"], result.get("error")
    assert not result["result"].get("Errors")
    # Severity 1 is INFO (e.g. "icon is recommended"); nothing at warning (2) or error (3+).
    assert all(m["Severity"] <= 1 for m in result["result"]["Messages"]), result["result"]["Messages"]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[p.stem for p in BAD_VALUES])
def test_bad_values_are_rejected_by_the_schema(render: Callable[..., Rendered], bad: Path) -> None:
    with pytest.raises(HelmFailed) as failure:
        render(bad)
    message = str(failure.value)
    assert "values don't meet the specifications of the schema" in message, message
    # Each bad file names the value path the message must point at (first line: "# expect: PATH").
    expected = bad.read_text().splitlines()[0].removeprefix("# expect: ").strip()
    assert f"at '{expected.strip(chr(39))}'" in message, message


def test_validator_rejects_an_unknown_field(render: Callable[..., Rendered], kube_validate: Callable[..., Any]) -> None:
    """Guard against a validator that passes everything: a misplaced field must fail --strict."""
    deployment = render(None).one("Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True  # misspelt on purpose
    result = kube_validate(yaml.safe_dump(broken))
    assert result.returncode != 0 and "readOnlyRootFilesytem" in result.stdout + result.stderr


def test_gateway_and_gitops_rights_only_when_configured(render: Callable[..., Rendered], tmp_path: Path) -> None:
    def rights(values: dict[str, Any] | None) -> dict[tuple[str, str], set[str]]:
        path = None
        if values is not None:  # one file per call: renders are cached by path
            path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
            path.write_text(yaml.safe_dump(values))
        rollback = [r for r in render(path).of_kind("Role") if r["metadata"]["name"].endswith("-rollback")]
        return _rules_by_resource(rollback[0])

    assert rights(None) == DEFAULT_RIGHTS  # the defaults: no httproutes, no Deployment patch
    target = {
        "name": "gw",
        "deployment": "{app}-canary",
        "ingress": None,
        "httproute": "{app}",
        "canary_backend": "{app}-canary",
    }
    by_target = rights({"config": {"targets": [target]}})
    assert by_target[("gateway.networking.k8s.io", "httproutes")] == {"get", "patch"}
    assert by_target[("apps", "deployments")] == {"get"}
    assert ("gateway.networking.k8s.io", "httproutes") in rights({"gatewayAPI": {"enabled": True}})
    annotate = rights({"config": {"gitops": {"annotate": True}}})
    assert annotate[("apps", "deployments")] == {"get", "patch"}
    assert ("gateway.networking.k8s.io", "httproutes") not in annotate
    argo = {"name": "argo", "deployment": "{app}", "delegate": "argo-rollouts"}
    for granted in (rights({"config": {"targets": [argo]}}), rights({"argoRollouts": {"enabled": True}})):
        assert granted[("argoproj.io", "rollouts")] == {"get", "patch"}
        assert granted[("argoproj.io", "rollouts/status")] == {"patch"}
    assert not [key for key in annotate if key[0] == "argoproj.io"]  # only when asked for
    flagger = rights({"config": {"targets": [{"name": "f", "deployment": "{app}", "delegate": "flagger"}]}})
    assert not [key for key in flagger if key[0] in ("argoproj.io", "networking.k8s.io")]  # Flagger's own objects


def test_pod_and_log_reads_only_while_evidence_capture_is_on(render: Callable[..., Rendered], tmp_path: Path) -> None:
    def rights(evidence: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
        path = tmp_path / f"evidence-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump({"config": {"evidence": evidence}}))
        rollback = [r for r in render(path).of_kind("Role") if r["metadata"]["name"].endswith("-rollback")]
        return _rules_by_resource(rollback[0])

    off = rights({"enabled": False})
    assert off == ROLLBACK_RIGHTS  # no pods, no pods/log, events only created
    assert not [key for key in off if key[1].startswith("pods")] and off[("", "events")] == {"create"}
    on = rights({"enabled": True, "log_lines": 50, "budget": "1500ms"})
    assert on == DEFAULT_RIGHTS and on[("", "pods")] == {"list"} and on[("", "pods/log")] == {"get"}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    from responder.config.settings import EvidenceSettings

    assert values["config"]["evidence"]["enabled"] is EvidenceSettings().enabled  # the chart's default is the config's


def test_traffic_rights_follow_the_kinds_the_targets_use(render: Callable[..., Rendered], tmp_path: Path) -> None:
    def rights(values: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
        path = tmp_path / f"traffic-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(values))
        rollback = [r for r in render(path).of_kind("Role") if r["metadata"]["name"].endswith("-rollback")]
        return _rules_by_resource(rollback[0])

    route_only = {"name": "gw", "traffic": [{"kind": "httproute", "name": "{app}", "canary_backend": "{app}-canary"}]}
    granted = rights({"config": {"targets": [route_only]}})
    assert granted[("gateway.networking.k8s.io", "httproutes")] == {"get", "patch"}
    assert ("networking.k8s.io", "ingresses") not in granted  # least privilege: no kind the targets do not use
    toggled = rights({"config": {"targets": [route_only]}, "trafficSwitches": {"nginx": True}})
    assert toggled[("networking.k8s.io", "ingresses")] == {"get", "patch"}


def test_the_charts_switch_apis_are_the_registered_switches() -> None:
    """files/traffic-switches.yaml (what RBAC grants) and responder.traffic (what the responder patches) agree."""
    from responder.traffic import kinds

    declared = yaml.safe_load((CHART / "files" / "traffic-switches.yaml").read_text())
    registered = {kind: {"group": cls.api.group, "resource": cls.api.plural} for kind, cls in kinds().items()}
    assert declared == registered

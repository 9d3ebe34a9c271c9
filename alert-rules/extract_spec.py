"""Turn the PrometheusRule manifests into plain rule files that promtool can read, and check the contract.

promtool reads `groups:` files, not the PrometheusRule custom resource, so this writes each manifest's
`.spec` (all PrometheusRule documents of a file merged) to OUT_DIR under the manifest's file name.

It also checks what promtool cannot: every alert carries the labels and annotations the responder and the
on-call people rely on, every rollback alert is gated on the minimum canary traffic, and every alert has at
least one promtool unit test. Exit status 1 with one line per problem.

usage: extract_spec.py OUT_DIR TESTS_DIR MANIFEST...
"""

from __future__ import annotations

import pathlib
import sys

import yaml

ACTIONS = {"rollback", "rollback-if-persists", "notify"}
SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = ("summary", "description", "runbook_url", "dashboard_url")
TRAFFIC_GATE = "namespace_app:canary_traffic_sufficient:rate1m"


def spec_of(path: pathlib.Path) -> dict:
    groups = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        if doc.get("apiVersion") != "monitoring.coreos.com/v1" or doc.get("kind") != "PrometheusRule":
            raise SystemExit(f"{path}: not a monitoring.coreos.com/v1 PrometheusRule")
        groups.extend(doc["spec"]["groups"])
    return {"groups": groups}


def contract_problems(spec: dict, tested: str) -> list[str]:
    problems = []
    for group in spec["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert")
            if name is None:
                continue
            labels = rule.get("labels", {})
            annotations = rule.get("annotations", {})
            if labels.get("action") not in ACTIONS:
                problems.append(f"{name}: label action must be one of {sorted(ACTIONS)}")
            if labels.get("severity") not in SEVERITIES:
                problems.append(f"{name}: label severity must be one of {sorted(SEVERITIES)}")
            problems += [f"{name}: annotation {a} missing" for a in ANNOTATIONS if not annotations.get(a)]
            if "{{ $value" not in annotations.get("description", ""):
                problems.append(f"{name}: description must show the observed value")
            if "by (namespace, app)" not in rule["expr"] and "on (namespace, app)" not in rule["expr"]:
                problems.append(f"{name}: expression must keep the namespace and app labels")
            if labels.get("action", "").startswith("rollback") and TRAFFIC_GATE not in rule["expr"]:
                problems.append(f"{name}: rollback alerts must require {TRAFFIC_GATE}")
            if f"alertname: {name}\n" not in tested:
                problems.append(f"{name}: no promtool unit test (alertname: {name})")
    return problems


def main(argv: list[str]) -> int:
    out_dir, tests_dir, manifests = pathlib.Path(argv[1]), pathlib.Path(argv[2]), argv[3:]
    tested = "".join(p.read_text() for p in sorted(tests_dir.glob("*.yaml")))
    problems = []
    for manifest in map(pathlib.Path, manifests):
        spec = spec_of(manifest)
        (out_dir / manifest.name).write_text(yaml.safe_dump(spec, sort_keys=False))
        problems += [f"{manifest}: {p}" for p in contract_problems(spec, tested)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

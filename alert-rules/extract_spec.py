"""Turn the PrometheusRule manifests into plain rule files that promtool can read, and check the contract.

promtool reads `groups:` files, not the PrometheusRule custom resource. The alert rules (canary-rules.yaml)
read only the normalised `namespace_app_track:*` series; each file in sources/ records them from one metrics
source. What is deployed, and so what must be tested, is their combination: the source's recording rules at
the top of the `canary-responder` group (`combined_spec`, the same thing the Helm chart renders for
`rules.source`). For every source this writes OUT_DIR/<source>.yaml (the combination) and
OUT_DIR/sources/<source>.yaml (the source file on its own, for `promtool check rules`).

It also checks what promtool cannot: every alert carries the labels and annotations the responder and the
on-call people rely on, every rollback alert is gated on the minimum canary traffic, every alert has at
least one promtool unit test, and every source records exactly the normalised series for both tracks.
Exit status 1 with one line per problem.

usage: extract_spec.py OUT_DIR TESTS_DIR RULES_MANIFEST SOURCE_MANIFEST...
"""

from __future__ import annotations

import copy
import pathlib
import sys

import yaml

ACTIONS = {"rollback", "rollback-if-persists", "notify"}
SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = ("summary", "description", "runbook_url", "dashboard_url")
TRAFFIC_GATE = "namespace_app:canary_traffic_sufficient:rate1m"
ALERT_GROUP = "canary-responder"
# What every source records, per namespace, app and track (sources/app.yaml says what each means).
SOURCE_SERIES = (
    "namespace_app_track:http_requests:rate1m",
    "namespace_app_track:http_requests_5xx:rate1m",
    "namespace_app_track_le:http_request_duration_seconds_bucket:rate1m",
)
TRACKS = ("canary", "stable")


def spec_of(path: pathlib.Path) -> dict:
    groups = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        if doc.get("apiVersion") != "monitoring.coreos.com/v1" or doc.get("kind") != "PrometheusRule":
            raise SystemExit(f"{path}: not a monitoring.coreos.com/v1 PrometheusRule")
        groups.extend(doc["spec"]["groups"])
    return {"groups": groups}


def source_rules(source_spec: dict) -> list[dict]:
    """The recording rules of a source file (one group)."""
    (group,) = source_spec["groups"]
    return list(group["rules"])


def combined_spec(rules_spec: dict, recording_rules: list[dict]) -> dict:
    """The alert rules with a source's recording rules first in the alert group (what the chart renders)."""
    spec = copy.deepcopy(rules_spec)
    (group,) = [g for g in spec["groups"] if g["name"] == ALERT_GROUP]
    group["rules"] = copy.deepcopy(recording_rules) + group["rules"]
    return spec


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


def source_problems(spec: dict) -> list[str]:
    """A source records each normalised series once per track, and nothing else."""
    if len(spec["groups"]) != 1:
        return ["a source file has exactly one group"]
    seen = []
    problems = []
    for rule in source_rules(spec):
        if "record" not in rule:
            problems.append(f"alert {rule.get('alert')}: a source file holds recording rules only")
            continue
        seen.append((rule["record"], rule.get("labels", {}).get("track")))
    wanted = [(series, track) for series in SOURCE_SERIES for track in TRACKS]
    if sorted(seen) != sorted(wanted):
        problems.append(f"records {sorted(seen)}, must record exactly {wanted}")
    return problems


def main(argv: list[str]) -> int:
    out_dir, tests_dir = pathlib.Path(argv[1]), pathlib.Path(argv[2])
    rules_manifest, source_manifests = pathlib.Path(argv[3]), [pathlib.Path(p) for p in argv[4:]]
    tested = "".join(p.read_text() for p in sorted(tests_dir.glob("**/*.yaml")))
    rules = spec_of(rules_manifest)
    problems = [f"{rules_manifest}: {p}" for p in contract_problems(rules, tested)]
    problems += [f"{rules_manifest}: records {r['record']}: only sources/ may" for r in _records(rules, SOURCE_SERIES)]
    (out_dir / "sources").mkdir(parents=True, exist_ok=True)
    for manifest in source_manifests:
        source = spec_of(manifest)
        problems += [f"{manifest}: {p}" for p in source_problems(source)]
        (out_dir / "sources" / manifest.name).write_text(yaml.safe_dump(source, sort_keys=False))
        combined = combined_spec(rules, source_rules(source))
        (out_dir / manifest.name).write_text(yaml.safe_dump(combined, sort_keys=False))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _records(spec: dict, names: tuple[str, ...]) -> list[dict]:
    return [r for g in spec["groups"] for r in g["rules"] if r.get("record") in names]


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Check the Grafana dashboard's queries: every one parses as PromQL, and every recorded series it reads exists.

Grafana fills in variables before it sends a query, so promtool cannot read the panel expressions as they
stand. This replaces each variable by a value of the right kind ($namespace by "shop", $app by "checkout",
$__rate_interval and $__interval by a duration, $__range by a duration), writes every expression as a recording
rule of a group of its own to OUT_FILE (for `promtool check rules`, and for the promtool unit tests in
tests/app/dashboard.yaml, which evaluate panels by their record names), and fails when an expression reads a
`level:metric:operations` series that none of the given rule files records.

usage: check_dashboard.py DASHBOARD_JSON OUT_FILE RULE_FILE...
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

import yaml

VARIABLES = {
    r"\$__rate_interval\b": "1m",
    r"\$__interval\b": "15s",
    r"\$__range\b": "1h",
    r"\$\{?namespace\}?": "shop",
    r"\$\{?app\}?": "checkout",
}
RECORDED = re.compile(r"\b[a-z_]+:[a-z_0-9]+:[a-z_0-9]+\b")


def expressions(dashboard: dict) -> list[tuple[str, str, str]]:
    """(where, record name, expr) for every panel target, annotation and variable query, nested rows included.

    The record names are stable (`dashboard:panel<id>:<refId>`, `dashboard:annotation:<name>`,
    `dashboard:variable:<name>`), so promtool unit tests can evaluate a panel's query by name
    (tests/app/dashboard.yaml).
    """
    found = []
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        found += [
            (f"panel {panel.get('title')!r}", f"dashboard:panel{panel['id']}:{t['refId']}", t["expr"])
            for t in panel.get("targets", [])
            if t.get("expr")
        ]
    found += [
        (f"annotation {a['name']!r}", f"dashboard:annotation:{_slug(a['name'])}", a["expr"])
        for a in dashboard["annotations"]["list"]
        if a.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query or "")
        if match:
            found.append(
                (f"variable {variable['name']!r}", f"dashboard:variable:{_slug(variable['name'])}", match.group(1))
            )
    return found


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")


def substituted(expr: str) -> str:
    for pattern, value in VARIABLES.items():
        expr = re.sub(pattern, value, expr)
    if "$" in expr.replace("$1", "").replace("$2", ""):
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def main(argv: list[str]) -> int:
    dashboard = json.loads(pathlib.Path(argv[1]).read_text())
    recorded = {
        r["record"]
        for path in argv[3:]
        for g in yaml.safe_load(pathlib.Path(path).read_text())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    problems, rules = [], []
    for where, record, expr in expressions(dashboard):
        try:
            rules.append({"record": record, "expr": substituted(expr)})
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
        problems += [f"{where}: reads {name}, which no rule records" for name in set(RECORDED.findall(expr)) - recorded]
    if not rules:
        problems.append("the dashboard has no queries")
    pathlib.Path(argv[2]).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    for problem in problems:
        print(f"{argv[1]}: {problem}", file=sys.stderr)
    print(f"check_dashboard: {len(rules)} queries")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

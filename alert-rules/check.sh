#!/usr/bin/env bash
# Check the canary alert rules, every metrics source, the dashboard's queries and the Alertmanager example.
#
#   1. extract `.spec` of canary-rules.yaml and of every sources/<source>.yaml (promtool reads plain rule files
#      only), write canary-rules.yaml combined with each source (the source's recording rules first in the
#      alert group, as the Helm chart renders `rules.source`) to <tmp>/rules/<source>.yaml, and check the alert
#      contract (labels, annotations, traffic gate, a test per alert, the series each source records);
#   2. write the per-source tests that tests/source_tests.py generates (ingress-nginx, istio, contour: the same
#      scenarios in each source's own metric names and label sets) to <tmp>/tests/<source>/;
#   3. promtool check rules   (syntax, PromQL, templates) on every combination and every source file;
#   4. the Grafana dashboard's queries (check_dashboard.py): each written as a recording rule to
#      <tmp>/dashboard.yaml and parsed by promtool, and every recorded series they read is recorded by the rules;
#   5. promtool test rules    per source: the generated tests and tests/<source>/*.yaml against
#      <tmp>/rules/<source>.yaml (the tests name it ../../rules/<source>.yaml, where step 1 puts it;
#      tests/app/dashboard.yaml also loads ../../dashboard.yaml and evaluates panels by name);
#   6. amtool check-config examples/alertmanager.yaml.
#
# Usage: bash alert-rules/check.sh     (PYTHON selects an interpreter with PyYAML; default python3)
# Env:   PROMTOOL, AMTOOL override the binaries (default: from PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
promtool="${PROMTOOL:-promtool}"
amtool="${AMTOOL:-amtool}"

for tool in "$python" "$promtool" "$amtool"; do
    command -v "$tool" >/dev/null || { echo "check.sh: $tool not found" >&2; exit 2; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rules" "$work/tests"

shopt -s nullglob
sources=("$here"/sources/*.yaml)
(( ${#sources[@]} )) || { echo "check.sh: no sources in $here/sources" >&2; exit 1; }

echo "== extract .spec, combine with each source, check the alert contract"
"$python" "$here/extract_spec.py" "$work/rules" "$here/tests" "$here/canary-rules.yaml" "${sources[@]}"

echo "== generate the per-source tests"
"$python" "$here/tests/source_tests.py" "$work/tests"

echo "== promtool check rules"
"$promtool" check rules "$work"/rules/*.yaml "$work"/rules/sources/*.yaml

echo "== dashboard queries"
"$python" "$here/check_dashboard.py" "$root/helm-chart/files/canary-dashboard.json" "$work/dashboard.yaml" "$work"/rules/*.yaml
"$promtool" check rules "$work/dashboard.yaml"

echo "== promtool test rules (per source)"
for source in "${sources[@]}"; do
    name="$(basename "$source" .yaml)"
    mkdir -p "$work/tests/$name"
    tests=("$here/tests/$name"/*.yaml)
    (( ${#tests[@]} )) && cp "${tests[@]}" "$work/tests/$name/"
    generated=("$work/tests/$name"/*.yaml)
    (( ${#generated[@]} )) || { echo "check.sh: no tests for source $name" >&2; exit 1; }
    echo "-- $name"
    (cd "$work/tests/$name" && "$promtool" test rules ./*.yaml)
done

echo "== amtool check-config"
"$amtool" check-config "$root/examples/alertmanager.yaml"

echo "check.sh: all checks passed"

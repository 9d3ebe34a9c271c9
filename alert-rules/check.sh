#!/usr/bin/env bash
# Check the canary alert rules and the Alertmanager example.
#
#   1. extract `.spec` of every PrometheusRule manifest in alert-rules/ into a temp dir (promtool reads plain
#      rule files only) and check the alert contract (labels, annotations, traffic gate, a test per alert);
#   2. promtool check rules   (syntax, PromQL, templates);
#   3. promtool test rules    (alert-rules/tests/*.yaml, run against the extracted files: the tests name
#      their rule files as ../rules/<manifest>.yaml, which is where step 1 puts them);
#   4. amtool check-config examples/alertmanager.yaml.
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
manifests=("$here"/*.yaml)
tests=("$here"/tests/*.yaml)
(( ${#manifests[@]} )) || { echo "check.sh: no manifests in $here" >&2; exit 1; }
(( ${#tests[@]} )) || { echo "check.sh: no tests in $here/tests" >&2; exit 1; }

echo "== extract .spec and check the alert contract"
"$python" "$here/extract_spec.py" "$work/rules" "$here/tests" "${manifests[@]}"
cp "${tests[@]}" "$work/tests/"

echo "== promtool check rules"
"$promtool" check rules "$work"/rules/*.yaml

echo "== promtool test rules"
(cd "$work/tests" && "$promtool" test rules ./*.yaml)

echo "== amtool check-config"
"$amtool" check-config "$root/examples/alertmanager.yaml"

echo "check.sh: all checks passed"

#!/usr/bin/env bash
# Helm chart and packaging checks.
#
#   bash scripts/chart-check.sh            # rules copy check, tool venv, then pytest tests/chart tests/packaging
#   bash scripts/chart-check.sh --setup    # only create/refresh the tool venv (idempotent)
#   bash scripts/chart-check.sh --prepare  # rules copy check + tool venv, no tests (for a pytest run of all tests)
#   bash scripts/chart-check.sh --sync     # copy alert-rules/canary-rules.yaml and alert-rules/sources/ into the chart
#   extra arguments go to pytest, e.g.  bash scripts/chart-check.sh -k rbac
#
# The chart tools need Python >= 3.12 (helm-sdkpy) and live in their own venv, .tool-venv/, apart from the
# project's .venv (Python 3.11). The venv is rebuilt only when tests/chart/tool-requirements.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOL_VENV=${TOOL_VENV:-.tool-venv}
REQS=tests/chart/tool-requirements.txt
# The chart ships copies of the tested rules: canary-rules.yaml and every metrics source (rules.source picks one).
RULES_SRC=alert-rules
RULES_COPY=helm-chart/files

find_python312() {
  local candidate
  for candidate in "${TOOL_PYTHON:-}" python3.14 python3.13 python3.12; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  # pyenv installs that are not on PATH (the shim refuses versions that are not selected).
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
    if [ -x "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

setup_tool_venv() {
  local want have python
  want=$(sha256sum "$REQS" | cut -d' ' -f1)
  have=$(cat "$TOOL_VENV/.requirements.sha256" 2>/dev/null || true)
  if [ -x "$TOOL_VENV/bin/python" ] && [ "$want" = "$have" ]; then
    return 0
  fi
  if ! python=$(find_python312); then
    echo "chart-check: no Python >= 3.12 found (set TOOL_PYTHON); helm-sdkpy needs one" >&2
    return 1
  fi
  echo "chart-check: creating $TOOL_VENV with $python" >&2
  rm -rf "$TOOL_VENV"
  "$python" -m venv "$TOOL_VENV"
  "$TOOL_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
  echo "$want" > "$TOOL_VENV/.requirements.sha256"
}

rule_files() {
  (cd "$RULES_SRC" && ls canary-rules.yaml sources/*.yaml)
}

check_rules_copy() {
  local file failed=0 extra
  for file in $(rule_files); do
    if ! cmp -s "$RULES_SRC/$file" "$RULES_COPY/$file"; then
      echo "chart-check: $RULES_COPY/$file differs from $RULES_SRC/$file (the chart must ship the tested rules)." >&2
      diff -u "$RULES_SRC/$file" "$RULES_COPY/$file" 2>&1 | head -40 >&2 || true
      failed=1
    fi
  done
  # A source the chart offers but alert-rules/ no longer tests.
  for extra in "$RULES_COPY"/sources/*.yaml; do
    [ -e "$extra" ] || continue
    if [ ! -e "$RULES_SRC/sources/$(basename "$extra")" ]; then
      echo "chart-check: $extra has no counterpart in $RULES_SRC/sources/" >&2
      failed=1
    fi
  done
  if [ "$failed" != 0 ]; then
    echo "             Run: bash scripts/chart-check.sh --sync" >&2
    return 1
  fi
  echo "chart-check: the chart's rules are identical to $RULES_SRC/ ($(rule_files | tr '\n' ' '))"
}

sync_rules() {
  local file
  mkdir -p "$RULES_COPY/sources"
  rm -f "$RULES_COPY"/sources/*.yaml
  for file in $(rule_files); do
    cp "$RULES_SRC/$file" "$RULES_COPY/$file"
    echo "copied $RULES_SRC/$file -> $RULES_COPY/$file"
  done
}

case "${1:-}" in
  --setup) setup_tool_venv; exit 0 ;;
  --prepare) check_rules_copy; setup_tool_venv; exit 0 ;;
  --sync) sync_rules; exit 0 ;;
esac

check_rules_copy
setup_tool_venv
BIN=${BIN:-.venv/bin}
"$BIN/python" -m pytest tests/chart tests/packaging "$@"

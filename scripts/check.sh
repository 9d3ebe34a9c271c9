#!/usr/bin/env bash
# The one check command: lint, format, strict typing, layer contracts, alert rules.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
echo "== ruff";           "$BIN/ruff" check responder tests bench scripts
echo "== ruff format";    "$BIN/ruff" format --check responder tests bench scripts
echo "== mypy --strict";  "$BIN/mypy" responder
echo "== import-linter";  "$BIN/lint-imports"
echo "== structure";      "$BIN/python" scripts/check_structure.py
if [ -f alert-rules/check.sh ]; then
  echo "== alert rules";  PYTHON="$BIN/python" bash alert-rules/check.sh
fi

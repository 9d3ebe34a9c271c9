#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the checks and the whole test suite.
# Idempotent: re-running reuses the venv and skips installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Real Prometheus and Alertmanager for the rule tests and the end-to-end chain, PostgreSQL for the shared store's
# tests (Debian packages; tests/postgres.py starts its own throwaway server from /usr/lib/postgresql/*/bin), and
# Chromium for the incident pages' browser test (driven by Playwright, whose own browser download is not used).
if ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
  || ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager postgresql chromium >/dev/null
  else
    echo "note: promtool/prometheus-alertmanager/postgresql/chromium missing and not root; their tests need them" >&2
  fi
fi
# The PostgreSQL variants of the store, tamper, fault and SIGKILL tests must run here: without the server they
# fail instead of being skipped.
export REQUIRE_POSTGRES=1
# Likewise the browser test of the incident pages (tests/integration/test_incident_pages_browser.py).
export REQUIRE_BROWSER=1

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

bash scripts/check.sh
bash scripts/chart-check.sh --prepare  # chart's rules copy == alert-rules/; Helm tool venv (.tool-venv, Python 3.12)
.venv/bin/python -m pytest "$@"

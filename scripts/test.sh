#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run the checks and the whole test suite.
# Idempotent: re-running reuses the venv and skips installed packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Real Prometheus and Alertmanager for the rule tests and the end-to-end chain, and PostgreSQL for the shared store's
# tests (Debian packages; tests/postgres.py starts its own throwaway server from /usr/lib/postgresql/*/bin).
if ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
  || ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager postgresql >/dev/null
  else
    echo "note: promtool/prometheus-alertmanager/postgresql missing and not root; their tests need them" >&2
  fi
fi
# The PostgreSQL variants of the store, tamper, fault and SIGKILL tests must run here: without the server they
# fail instead of being skipped.
export REQUIRE_POSTGRES=1

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

bash scripts/check.sh
bash scripts/chart-check.sh --prepare  # chart's rules copy == alert-rules/; Helm tool venv (.tool-venv, Python 3.12)
.venv/bin/python -m pytest "$@"

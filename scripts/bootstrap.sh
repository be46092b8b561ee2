#!/usr/bin/env bash
# Make ./.venv hold everything speednet needs, from nothing but Python 3.11.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (a no-op when
# pyproject.toml has not changed since the last install).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$candidate"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "speednet needs Python 3.11 on PATH (or PYTHON=/path/to/python3.11)." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi

stamp=.venv/.speednet-installed
want="$(cat pyproject.toml | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing packages into .venv (first time takes a few minutes)"
  # torch==2.13.0 resolves to the CPU wheel on local disk; without the pin pip could pick a CUDA build.
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install --quiet "torch==2.13.0" -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, decord, prefect, duckdb, faiss, pyarrow" \
    || { echo "[setup] package install failed; see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export PREFECT_SERVER_ANALYTICS_ENABLED=false

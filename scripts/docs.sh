#!/usr/bin/env bash
# Build the documentation site (MkDocs, Material theme) into site/, strictly: a broken link, a missing page or an
# API object that does not exist is an error. Creates .venv-docs with docs/requirements.txt when they changed.
# `scripts/docs.sh serve` previews it at http://127.0.0.1:8000 instead; other arguments go to `mkdocs build`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv-docs/bin/python ]; then
  echo "[docs] creating .venv-docs with $($PY --version)"
  "$PY" -m venv .venv-docs
fi
stamp=.venv-docs/.requirements.sha256
want=$(sha256sum docs/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[docs] installing docs/requirements.txt into .venv-docs"
  .venv-docs/bin/python -m pip install --quiet --disable-pip-version-check -r docs/requirements.txt
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "serve" ]; then
  shift
  NO_MKDOCS_2_WARNING=1 exec .venv-docs/bin/python -m mkdocs serve "$@"
fi
export NO_MKDOCS_2_WARNING=1
exec .venv-docs/bin/python -m mkdocs build --strict "$@"

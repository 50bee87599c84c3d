#!/usr/bin/env bash
# Set up (venv, requirements, Fashion-MNIST) if needed, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --data
# Two workers, one test file each at a time (module fixtures are built once): the tests are single-threaded
# (tests/conftest.py), so on 2 cores this halves the wall time. PYTEST_WORKERS=0 runs in one process.
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"

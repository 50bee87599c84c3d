#!/usr/bin/env bash
# Set up (venv, requirements, Fashion-MNIST) if needed, then run the embedded demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --data
exec .venv/bin/python experiment.py "$@"

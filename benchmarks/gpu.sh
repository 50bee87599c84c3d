#!/usr/bin/env bash
# GPU benchmark (one CUDA GPU; under 8 minutes on an H200): ResNet20 epoch time at widths 1 and 16
# on CIFAR-shaped data (fake CIFAR-10, 50000/10000 images, real file format), eager and with
# torch.compile, then a tiny end-to-end run of both phases with `device: cuda`. Prints a table.
#
#   benchmarks/gpu.sh                       # everything
#   benchmarks/gpu.sh --no-compile          # eager only (faster)
#   benchmarks/gpu.sh --json out.json       # also write the numbers as JSON
#
# The Python part runs on CPU too: .venv/bin/python -m benchmarks.gpu_bench --device cpu --tiny
set -euo pipefail
cd "$(dirname "$0")/.."
# A GPU image often has PyTorch in its system Python and no package index: use that Python when it
# sees a GPU and no .venv exists; otherwise create .venv and install requirements.txt when needed.
PY=.venv/bin/python
if [ ! -x "$PY" ] && python3 -c 'import sys, torch, yaml, safetensors; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  PY=python3
else
  scripts/setup.sh
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu.sh: torch sees no CUDA GPU here; for a CPU smoke run use:" >&2
  echo "  .venv/bin/python -m benchmarks.gpu_bench --device cpu --tiny" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
# The script starts no item after 360 s; timeout is the hard stop just under 8 minutes.
exec timeout 470 "$PY" -m benchmarks.gpu_bench --device cuda --budget-s 360 "$@"

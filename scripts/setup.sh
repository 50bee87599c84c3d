#!/usr/bin/env bash
# Create .venv and install the pinned requirements when they changed; with
# --data, also make sure Fashion-MNIST is on disk (Debian package where apt is
# usable, torchvision's download otherwise). Idempotent and quiet when done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing requirements.txt into .venv (torch is large: a few minutes the first time)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--data" ]; then
  debian=/usr/share/datasets/fashion-mnist
  if [ ! -f "$debian/train-images-idx3-ubyte.gz" ] && [ ! -d datasets/FashionMNIST/raw ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo -n"
    if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$sudo" ]; }; then
      echo "[setup] installing Debian's dataset-fashion-mnist"
      $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
        || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; } \
        || echo "[setup] apt-get could not install dataset-fashion-mnist"
    fi
    if [ ! -f "$debian/train-images-idx3-ubyte.gz" ]; then
      echo "[setup] downloading Fashion-MNIST with torchvision into datasets/"
      .venv/bin/python -c "import torchvision; [torchvision.datasets.FashionMNIST('datasets', train=t, download=True) for t in (True, False)]"
    fi
  fi
fi

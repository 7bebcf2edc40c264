#!/usr/bin/env bash
# The test command: sets up .venv/ if needed (tests/setup_env.sh), then runs pytest.
# Extra arguments go to pytest, e.g. `bash tests/run.sh -k parity`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tests/setup_env.sh"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "$ROOT/.venv/bin/python" -m pytest tests "$@"

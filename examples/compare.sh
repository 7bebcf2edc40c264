#!/usr/bin/env bash
# Issue 6, the comparison: six systems trained on the same data with the same update budget,
# decoded with the same settings and scored with the same scorer, side by side.
#
#   1. random      unilm_seq2seq, random init (MiniLM's sizes), pseudo-masked fine-tuning
#   2. causal      unilm_seq2seq from MiniLM, --ft-method causal
#   3. masked      unilm_seq2seq from MiniLM, --ft-method masked
#   4. pseudo      unilm_seq2seq from MiniLM, --ft-method pseudo_masked
#   5. bert2bert   Rothe et al. BERT2BERT from MiniLM (--ft-method causal)
#   6. bertshare   Rothe et al. BERTShare (bert2bert --share-encoder-decoder) from MiniLM
#
# Data: WordNet definition modelling ("word : example" -> definition, Debian wordnet-base, as in
# examples/quickstart.sh): every system sees the same shuffled training batches (same seed) and is
# decoded on the first TEST_N pairs of the test split. Scores: s2sft-score ROUGE-1/2/L F1 (stemmed)
# and sacreBLEU. Output: $RESULTS/comparison.md (ending with SAMPLES seeded random test examples:
# source, reference and every system's output), $RESULTS/comparison.png, one JSON per system in
# $RESULTS/systems/ and the hypotheses in $RESULTS/hyps/.
#
#   bash examples/compare.sh                        # default budget: <= ~60 min on 2 CPU cores
#   UPDATES=3 TEST_N=16 MINUTES=1 RESULTS=/tmp/cmp bash examples/compare.sh   # smoke test
#   DEVICE=gpu UPDATES=5000 BATCH=64 MINUTES=60 TEST_N=2333 bash examples/compare.sh
#
# Settings (environment):
#   UPDATES   max updates per system (the shared budget)                          [560]
#   MINUTES   per-system training time cap (--stop-time-hours); if it triggers
#             before UPDATES, the updates actually reached are in the table       [9]
#   BATCH     sentences per update                                                [32]
#   TEST_N    decode the first TEST_N test pairs (0 = all 2,333)                  [400]
#   MAX_EXAMPLES  optional: WordNet subset size for the converter (--max-examples) [all]
#   BEAM LENPEN MIN_LEN MAX_LEN_B NO_REPEAT  decoding settings              [5 1.0 1 40 3]
#   LR        peak learning rate (polynomial decay, 10% warmup)                   [2e-4]
#   DEVICE    cpu | gpu (gpu drops --cpu); FP16=1 adds --fp16 on a GPU            [cpu]
#   TRAIN_PRECISION   cpu: fp32 | bf16 (--amp --cpu: bf16 autocast, fp32 weights)        [bf16]
#   DECODE_PRECISION  cpu: fp32 | bf16 | int8 (--decode-precision)                       [bf16]
#             (bf16 for both: the fastest precision that kept quality, README "Reduced precision on the
#             CPU"; the budget of 560 updates is the 400 of the fp32 comparison times the quickstart's
#             bf16 training speed-up, 1.4x, in about the same wall clock; DEVICE=gpu: fp32 / FP16=1)
#   SYSTEMS   which systems, in order         [random causal masked pseudo bert2bert bertshare]
#   SAMPLES   test examples shown with every system's output in the report (seed 1)            [8]
#   RESULTS   output directory                                           [examples/results]
#   WORK      data, checkpoints and logs                              [examples/work/compare]
#   FORCE=1   redo systems whose results JSON exists (default: reuse them)
#
# Idempotent: a system whose $RESULTS/systems/<name>.json exists for the same settings is
# skipped; finished training / decoding stages of an unfinished system are reused. A system
# that fails is reported and left out; the others still run and the report is still written
# (the script then exits non-zero).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULTS="$(mkdir -p "${RESULTS:-$ROOT/examples/results}" && cd "${RESULTS:-$ROOT/examples/results}" && pwd)"
WORK="$(mkdir -p "${WORK:-$ROOT/examples/work/compare}" && cd "${WORK:-$ROOT/examples/work/compare}" && pwd)"
UPDATES="${UPDATES:-560}"
MINUTES="${MINUTES:-9}"
BATCH="${BATCH:-32}"
TEST_N="${TEST_N:-400}"
MAX_EXAMPLES="${MAX_EXAMPLES:-}"
BEAM="${BEAM:-5}"; LENPEN="${LENPEN:-1.0}"; MIN_LEN="${MIN_LEN:-1}"; MAX_LEN_B="${MAX_LEN_B:-40}"
NO_REPEAT="${NO_REPEAT:-3}"
LR="${LR:-2e-4}"
DEVICE="${DEVICE:-cpu}"
FP16="${FP16:-0}"
if [ "${DEVICE:-cpu}" = cpu ]; then
  TRAIN_PRECISION="${TRAIN_PRECISION:-bf16}"; DECODE_PRECISION="${DECODE_PRECISION:-bf16}"
else
  TRAIN_PRECISION="${TRAIN_PRECISION:-fp32}"; DECODE_PRECISION="${DECODE_PRECISION:-fp32}"
fi
SYSTEMS="${SYSTEMS:-random causal masked pseudo bert2bert bertshare}"
FORCE="${FORCE:-0}"
SAMPLES="${SAMPLES:-8}"
SEED=1
GEN_BATCH="${GEN_BATCH:-64}"
MAX_SRC=64; MAX_TGT=40
WARMUP=$(( UPDATES / 10 )); [ "$WARMUP" -ge 1 ] || WARMUP=1
LOG_INTERVAL=$(( UPDATES / 15 )); [ "$LOG_INTERVAL" -ge 1 ] || LOG_INTERVAL=1
STOP_HOURS="$(awk -v m="$MINUTES" 'BEGIN{printf "%.6f", m/60}')"
case "$DEVICE" in
  cpu) DEV_ARGS=(--cpu) ;;
  gpu) DEV_ARGS=(); [ "$FP16" = 1 ] && DEV_ARGS=(--fp16) ;;
  *) echo "DEVICE must be cpu or gpu, got $DEVICE" >&2; exit 2 ;;
esac
TRAIN_PREC_ARGS=(); GEN_PREC_ARGS=()
case "$TRAIN_PRECISION" in
  fp32) ;;
  bf16) TRAIN_PREC_ARGS=(--amp) ;;
  *) echo "TRAIN_PRECISION must be fp32 or bf16, got $TRAIN_PRECISION" >&2; exit 2 ;;
esac
case "$DECODE_PRECISION" in
  fp32) ;;
  bf16|int8) GEN_PREC_ARGS=(--decode-precision "$DECODE_PRECISION") ;;
  *) echo "DECODE_PRECISION must be fp32, bf16 or int8, got $DECODE_PRECISION" >&2; exit 2 ;;
esac
if [ "$DEVICE" != cpu ] && [ "$TRAIN_PRECISION$DECODE_PRECISION" != fp32fp32 ]; then
  echo "TRAIN_PRECISION / DECODE_PRECISION are CPU settings (DEVICE=gpu: FP16=1)" >&2; exit 2
fi
PREC_SIG=""; PREC_CMD=""
[ "$TRAIN_PRECISION" = fp32 ] || { PREC_SIG+="_train${TRAIN_PRECISION}"; PREC_CMD+=" TRAIN_PRECISION=$TRAIN_PRECISION"; }
[ "$DECODE_PRECISION" = fp32 ] || { PREC_SIG+="_decode${DECODE_PRECISION}"; PREC_CMD+=" DECODE_PRECISION=$DECODE_PRECISION"; }
# The settings a results JSON must match to be reused.
SIG="u${UPDATES}_b${BATCH}_m${MINUTES}_n${TEST_N}_x${MAX_EXAMPLES:-all}_lr${LR}_beam${BEAM}_lp${LENPEN}_min${MIN_LEN}_max${MAX_LEN_B}_nr${NO_REPEAT}_${DEVICE}$([ "$FP16" = 1 ] && echo _fp16 || true)${PREC_SIG}"
COMMAND="UPDATES=$UPDATES MINUTES=$MINUTES BATCH=$BATCH TEST_N=$TEST_N${MAX_EXAMPLES:+ MAX_EXAMPLES=$MAX_EXAMPLES} DEVICE=$DEVICE$([ "$FP16" = 1 ] && echo ' FP16=1' || true)$PREC_CMD bash examples/compare.sh"

t0=$(date +%s)
stamp() { echo "[compare $(date +%H:%M:%S) +$(( $(date +%s) - t0 ))s] $*"; }

stamp "setup (venv, torch, fairseq, MiniLM weights, apt data packages)"
DEFAULT_THREADS="$(nproc)" source "$ROOT/examples/setup.sh"
REPORT="$ROOT/examples/compare_report.py"
stamp "settings: $SIG (OMP_NUM_THREADS=$OMP_NUM_THREADS); results -> $RESULTS, work -> $WORK"

# ---------------------------------------------------------------- data (shared by all systems)
RAW="$WORK/raw${MAX_EXAMPLES:+-x$MAX_EXAMPLES}"
BIN_DIR="$WORK/bin${MAX_EXAMPLES:+-x$MAX_EXAMPLES}"
TEST_DIR="$WORK/test${MAX_EXAMPLES:+-x$MAX_EXAMPLES}-n$TEST_N"
if [ ! -f "$RAW/.done" ]; then
  stamp "data: WordNet -> 'word : example' -> definition pairs ($RAW)"
  rm -rf "$RAW"
  "$PY" -m s2sft_preprocess.wordnet --out "$RAW" ${MAX_EXAMPLES:+--max-examples "$MAX_EXAMPLES"}
  touch "$RAW/.done"
fi
if [ ! -f "$BIN_DIR/.done" ]; then
  stamp "data: tokenize + binarize train/valid with the MiniLM tokenizer (s2sft-prepare)"
  rm -rf "$BIN_DIR"
  "$BIN/s2sft-prepare" --pretrained "$MINILM" --trainpref "$RAW/train" --validpref "$RAW/valid" \
    --destdir "$BIN_DIR" --workers 2 2>&1 | grep -v "^\s*$" | tail -n 3
  touch "$BIN_DIR/.done"
fi
if [ ! -f "$TEST_DIR/.done" ]; then
  n_test=$(wc -l < "$RAW/test.src")
  take=$TEST_N; { [ "$take" -le 0 ] || [ "$take" -gt "$n_test" ]; } && take=$n_test
  stamp "data: the first $take of $n_test test pairs -> $TEST_DIR"
  rm -rf "$TEST_DIR"; mkdir -p "$TEST_DIR/raw"
  head -n "$take" "$RAW/test.src" > "$TEST_DIR/raw/test.src"
  head -n "$take" "$RAW/test.tgt" > "$TEST_DIR/raw/test.tgt"
  "$BIN/s2sft-prepare" --pretrained "$MINILM" --testpref "$TEST_DIR/raw/test" --destdir "$TEST_DIR" \
    --workers 1 2>&1 | grep -v "^\s*$" | tail -n 2
  touch "$TEST_DIR/.done"
fi
REF="$TEST_DIR/raw/test.tgt"
mkdir -p "$RESULTS/systems" "$RESULTS/hyps"
cp "$REF" "$RESULTS/hyps/reference.txt"

# ---------------------------------------------------------------- systems
system_args() {  # the model-specific fairseq-train flags of a system
  case "$1" in
    random)    echo "--arch unilm_seq2seq --ft-method pseudo_masked --hidden-size 384 --num-layers 6 --num-heads 12 --intermediate-size 1536" ;;
    causal)    echo "--arch unilm_seq2seq --ft-method causal --pretrained-checkpoint $MINILM" ;;
    masked)    echo "--arch unilm_seq2seq --ft-method masked --pretrained-checkpoint $MINILM" ;;
    pseudo)    echo "--arch unilm_seq2seq --ft-method pseudo_masked --pretrained-checkpoint $MINILM" ;;
    bert2bert) echo "--arch bert2bert --ft-method causal --pretrained-checkpoint $MINILM" ;;
    bertshare) echo "--arch bert2bert --ft-method causal --share-encoder-decoder --pretrained-checkpoint $MINILM" ;;
    *) return 1 ;;
  esac
}

show_progress() {  # keep the full log in the file, show the informative lines
  tee "$1" | { grep --line-buffered -E "train_inner|\| train \||num\. shared model params|Stopping training|done training|Translated|Error|error:|Traceback" || true; }
}

run_system() {
  local sys="$1" dir="$WORK/runs/$SIG/$1" args
  args="$(system_args "$sys")" || { echo "unknown system $sys (choose from: random causal masked pseudo bert2bert bertshare)"; return 1; }
  mkdir -p "$dir"
  # --- train
  if [ -f "$dir/train.done" ] && [ -f "$dir/ckpt/checkpoint_last.pt" ]; then
    stamp "[$sys] training: reusing $dir/ckpt/checkpoint_last.pt"
  else
    stamp "[$sys] training: up to $UPDATES updates x $BATCH sentences or $MINUTES min ($args)"
    rm -rf "$dir/ckpt" "$dir/train.done" "$dir/generate.done"
    local ts; ts=$(date +%s)
    # shellcheck disable=SC2086
    "$BIN/fairseq-train" "$BIN_DIR" --user-dir "$ROOT/s2sft_fairseq" --task pseudo_masked_lm $args \
      --criterion s2s_label_smoothed_cross_entropy --label-smoothing 0.1 --target-mask-prob 0.5 \
      --max-source-positions $MAX_SRC --max-target-positions $MAX_TGT \
      --optimizer adam --adam-betas '(0.9,0.999)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 1.0 \
      --lr "$LR" --lr-scheduler polynomial_decay --warmup-updates "$WARMUP" --total-num-update "$UPDATES" \
      --batch-size "$BATCH" --max-update "$UPDATES" --stop-time-hours "$STOP_HOURS" \
      "${DEV_ARGS[@]}" "${TRAIN_PREC_ARGS[@]}" --num-workers 0 --log-format json --log-interval "$LOG_INTERVAL" --disable-validation \
      --save-dir "$dir/ckpt" --no-epoch-checkpoints --save-interval-updates 0 --no-save-optimizer-state \
      --seed "$SEED" 2>&1 | show_progress "$dir/train.log"
    [ "${PIPESTATUS[0]}" = 0 ] || { echo "[$sys] fairseq-train failed; log: $dir/train.log"; tail -n 15 "$dir/train.log"; return 1; }
    [ -f "$dir/ckpt/checkpoint_last.pt" ] || { echo "[$sys] no checkpoint written; log: $dir/train.log"; return 1; }
    echo "$(( $(date +%s) - ts ))" > "$dir/train.done"
  fi
  # --- decode
  if [ -f "$dir/generate.done" ]; then
    stamp "[$sys] decoding: reusing $dir/generate.txt"
  else
    stamp "[$sys] decoding $TEST_DIR (beam $BEAM, lenpen $LENPEN, min-len $MIN_LEN, max-len-b $MAX_LEN_B, no-repeat-ngram $NO_REPEAT)"
    local ts; ts=$(date +%s)
    "$BIN/fairseq-generate" "$TEST_DIR" --user-dir "$ROOT/s2sft_fairseq" --task pseudo_masked_lm \
      --path "$dir/ckpt/checkpoint_last.pt" --gen-subset test --beam "$BEAM" --lenpen "$LENPEN" \
      --min-len "$MIN_LEN" --max-len-a 0 --max-len-b "$MAX_LEN_B" --no-repeat-ngram-size "$NO_REPEAT" \
      --batch-size "$GEN_BATCH" --required-batch-size-multiple 1 --num-workers 0 "${DEV_ARGS[@]}" "${GEN_PREC_ARGS[@]}" \
      --max-source-positions $MAX_SRC --max-target-positions $MAX_TGT \
      2>&1 >"$dir/generate.txt" | show_progress "$dir/generate.log"
    [ "${PIPESTATUS[0]}" = 0 ] || { echo "[$sys] fairseq-generate failed; log: $dir/generate.log"; tail -n 15 "$dir/generate.log"; return 1; }
    echo "$(( $(date +%s) - ts ))" > "$dir/generate.done"
  fi
  # --- score and record
  stamp "[$sys] scoring (s2sft-score: ROUGE-1/2/L F1 stemmed, sacreBLEU)"
  "$BIN/s2sft-score" --task summarization --generate-output "$dir/generate.txt" --ref "$REF" --json \
    > "$dir/rouge.json" 2> "$dir/score.log" || { cat "$dir/score.log"; return 1; }
  "$BIN/s2sft-score" --task bleu --generate-output "$dir/generate.txt" --ref "$REF" --json \
    > "$dir/bleu.json" 2>> "$dir/score.log" || { cat "$dir/score.log"; return 1; }
  "$PY" "$REPORT" collect --system "$sys" --dir "$dir" --train-data "$BIN_DIR" --max-target-positions $MAX_TGT \
    --args "$args" --sig "$SIG" --out "$RESULTS/systems/$sys.json" --hyps "$RESULTS/hyps/$sys.txt" \
    2> "$dir/collect.log" || { cat "$dir/collect.log"; return 1; }
}

failed=()
for sys in $SYSTEMS; do
  json="$RESULTS/systems/$sys.json"
  if [ "$FORCE" != 1 ] && [ -f "$json" ] && "$PY" "$REPORT" matches --json "$json" --sig "$SIG"; then
    stamp "[$sys] done already ($json; FORCE=1 redoes it)"
    continue
  fi
  [ "$FORCE" = 1 ] && rm -rf "$WORK/runs/$SIG/$sys"
  rm -f "$json"
  if run_system "$sys"; then
    stamp "[$sys] $("$PY" "$REPORT" summary --json "$json")"
  else
    stamp "[$sys] FAILED (left out of the report; re-run to retry)"
    failed+=("$sys")
  fi
done

stamp "report -> $RESULTS/comparison.md, $RESULTS/comparison.png"
"$PY" "$REPORT" report --results "$RESULTS" --systems "$SYSTEMS" --sig "$SIG" --command "$COMMAND" \
  --updates "$UPDATES" --batch "$BATCH" --minutes "$MINUTES" --lr "$LR" --warmup "$WARMUP" \
  --decode "beam $BEAM, lenpen $LENPEN, min-len $MIN_LEN, max-len-a 0, max-len-b $MAX_LEN_B, no-repeat-ngram-size $NO_REPEAT, batch $GEN_BATCH, decode precision $DECODE_PRECISION" \
  --raw "$RAW" --test-dir "$TEST_DIR" --device "$DEVICE" --elapsed "$(( $(date +%s) - t0 ))" --samples "$SAMPLES"
cat "$RESULTS/comparison.md"
if [ "${#failed[@]}" -gt 0 ]; then
  stamp "done with failures: ${failed[*]}"
  exit 1
fi
stamp "done"

#!/usr/bin/env bash
# The main job, from a fresh machine: set up, fine-tune the real MiniLM (all-MiniLM-L6-v2) with
# s2s-ft pseudo-masked fine-tuning on WordNet definition modelling ("word : example" ->
# definition, Debian wordnet-base), decode with beam search and the key/value cache, score, and
# print the results beside trivial baselines, a few test examples and where the loss curve is.
# Budget: <= 20 minutes on 2 CPU cores incl. setup.
#
#   bash examples/quickstart.sh               # defaults below
#   TRAIN_MINUTES=30 BEAM=5 bash examples/quickstart.sh   # or, after a 9-minute run: 21 minutes more
#   TRAIN_MINUTES=2 MAX_UPDATE=30 LOG_INTERVAL=5 VALID_EVERY=10 TEST_N=50 WORK=/tmp/qs bash examples/quickstart.sh  # smoke test
#
# Settings (environment):
#   WORK           data, checkpoints, logs and results                    [examples/work/quickstart]
#   TRAIN_MINUTES  training budget, all runs together (--stop-time-hours; validation counts)    [9]
#   MAX_UPDATE     update budget (and the end of the learning-rate decay)                   [3000]
#   METHOD         pseudo_masked | masked | causal                                   [pseudo_masked]
#   VALID_N        size of the fixed validation subset (evenly spaced valid pairs)              [300]
#   VALID_EVERY    validate every VALID_EVERY updates (0 = no validation)                      [100]
#   LOG_INTERVAL   log the train loss every LOG_INTERVAL updates                                [50]
#   BEAM           beam size                                                                     [5]
#   TEST_N         decode the first TEST_N test pairs (0 = all 2,333)                            [0]
#   SAMPLES        test examples shown under the scores (a seeded random sample)                 [8]
#   TRAIN_PRECISION  fp32 | bf16 (--amp --cpu: bf16 autocast, fp32 weights)                      [bf16]
#   DECODE_PRECISION fp32 | bf16 | int8 (--decode-precision)                                     [bf16]
#                  (bf16 for both: in the same 9 minutes it trains ~1.4x the updates and scores higher,
#                  and bf16 decoding keeps fp32's ROUGE-L / BLEU within 0.05: README "Reduced precision on
#                  the CPU"; TRAIN_PRECISION=fp32 DECODE_PRECISION=fp32 is the all-fp32 run)
#
# Outputs in $WORK: results.md (scores, training and validation time, samples), loss_curve.png,
# checkpoints/train.log (fairseq-train's log), checkpoints/tensorboard/ (open with
# `.venv/bin/tensorboard --logdir $WORK/checkpoints/tensorboard`), generate-test.txt.
#
# Re-running reuses the data and *continues* training from $WORK/checkpoints/checkpoint_last.pt
# (fairseq's resume; the log and the curve continue too). The time budget is cumulative: the
# checkpoint remembers the training time so far, so a re-run trains until TRAIN_MINUTES in total
# (TRAIN_MINUTES=20 after a 9-minute run trains ~11 minutes more), up to MAX_UPDATE. Delete that
# folder to start over.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-$ROOT/examples/work/quickstart}"
TRAIN_MINUTES="${TRAIN_MINUTES:-9}"
MAX_UPDATE="${MAX_UPDATE:-3000}"
BEAM="${BEAM:-5}"
METHOD="${METHOD:-pseudo_masked}"
VALID_N="${VALID_N:-300}"
VALID_EVERY="${VALID_EVERY:-100}"
LOG_INTERVAL="${LOG_INTERVAL:-50}"
TEST_N="${TEST_N:-0}"
TRAIN_PRECISION="${TRAIN_PRECISION:-bf16}"
DECODE_PRECISION="${DECODE_PRECISION:-bf16}"
SAMPLES="${SAMPLES:-8}"
t0=$(date +%s)
stamp() { echo "[quickstart +$(( $(date +%s) - t0 ))s] $*"; }

stamp "setup (venv, torch, fairseq, MiniLM weights, apt data packages)"
source "$ROOT/examples/setup.sh"
mkdir -p "$WORK"

if [ ! -f "$WORK/raw/test.tgt" ]; then
  stamp "WordNet -> word : example -> definition pairs"
  "$PY" -m s2sft_preprocess.wordnet --out "$WORK/raw"
fi
if [ ! -f "$WORK/bin/test.src-tgt.tgt.bin" ]; then
  stamp "tokenize with the MiniLM tokenizer and binarize (s2sft-prepare)"
  "$BIN/s2sft-prepare" --pretrained "$MINILM" --trainpref "$WORK/raw/train" --validpref "$WORK/raw/valid" \
    --testpref "$WORK/raw/test" --destdir "$WORK/bin" --workers 2
fi

# A fixed validation subset, binarized beside the splits as "valid_n$VALID_N": VALID_N pairs
# spread evenly over the valid split (which is ordered by part of speech and synset).
VALID_ARGS=(--disable-validation)
if [ "$VALID_EVERY" -gt 0 ] && [ "$VALID_N" -gt 0 ]; then
  VALID_SPLIT="valid_n$VALID_N"
  if [ ! -f "$WORK/bin/$VALID_SPLIT.src-tgt.tgt.bin" ]; then
    stamp "fixed validation subset: $VALID_N evenly spaced pairs of the valid split -> $VALID_SPLIT"
    n_valid=$(wc -l < "$WORK/raw/valid.src")
    for side in src tgt; do
      awk -v n="$n_valid" -v k="$VALID_N" 'int(NR * k / n) > int((NR - 1) * k / n)' \
        "$WORK/raw/valid.$side" > "$WORK/raw/$VALID_SPLIT.$side"
    done
    tmp="$WORK/bin-$VALID_SPLIT.tmp"
    rm -rf "$tmp"
    "$BIN/s2sft-prepare" --pretrained "$MINILM" --validpref "$WORK/raw/$VALID_SPLIT" --destdir "$tmp" --workers 1
    for f in "$tmp"/valid.src-tgt.*; do
      b="$(basename "$f")"; mv "$f" "$WORK/bin/$VALID_SPLIT.${b#valid.}"
    done
    rm -rf "$tmp"
  fi
  VALID_ARGS=(--valid-subset "$VALID_SPLIT" --validate-interval-updates "$VALID_EVERY")
fi

# The test pairs to decode: all of them, or the first TEST_N (binarized on their own).
n_test=$(wc -l < "$WORK/raw/test.src")
TEST_DIR="$WORK/bin"; TEST_RAW="$WORK/raw/test"
if [ "$TEST_N" -gt 0 ] && [ "$TEST_N" -lt "$n_test" ]; then
  TEST_DIR="$WORK/test-n$TEST_N"; TEST_RAW="$TEST_DIR/raw/test"
  if [ ! -f "$TEST_DIR/.done" ]; then
    stamp "the first $TEST_N of $n_test test pairs -> $TEST_DIR"
    rm -rf "$TEST_DIR"; mkdir -p "$TEST_DIR/raw"
    head -n "$TEST_N" "$WORK/raw/test.src" > "$TEST_RAW.src"
    head -n "$TEST_N" "$WORK/raw/test.tgt" > "$TEST_RAW.tgt"
    "$BIN/s2sft-prepare" --pretrained "$MINILM" --testpref "$TEST_RAW" --destdir "$TEST_DIR" --workers 1
    touch "$TEST_DIR/.done"
  fi
fi

AMP_ARGS=()
case "$TRAIN_PRECISION" in
  fp32) ;;
  bf16) AMP_ARGS=(--amp) ;;
  *) echo "TRAIN_PRECISION=$TRAIN_PRECISION: expected fp32 or bf16" >&2; exit 2 ;;
esac

stamp "fine-tune ($METHOD, $TRAIN_PRECISION, up to $MAX_UPDATE updates or $TRAIN_MINUTES minutes; log: $WORK/checkpoints/train.log)"
mkdir -p "$WORK/checkpoints"
"$BIN/fairseq-train" "$WORK/bin" --user-dir "$ROOT/s2sft_fairseq" \
  --task pseudo_masked_lm --arch unilm_seq2seq --criterion s2s_label_smoothed_cross_entropy \
  --ft-method "$METHOD" --target-mask-prob 0.5 --label-smoothing 0.1 \
  --pretrained-checkpoint "$MINILM" --max-source-positions 64 --max-target-positions 40 \
  --optimizer torch_adamw --adam-betas '(0.9,0.999)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 1.0 \
  --lr 2e-4 --lr-scheduler polynomial_decay --warmup-updates 150 --total-num-update "$MAX_UPDATE" \
  --batch-size 48 --max-update "$MAX_UPDATE" --stop-time-hours "$(awk -v m="$TRAIN_MINUTES" 'BEGIN{print m/60}')" \
  --cpu "${AMP_ARGS[@]}" --num-workers 0 --log-format simple --log-interval "$LOG_INTERVAL" "${VALID_ARGS[@]}" \
  --tensorboard-logdir "$WORK/checkpoints/tensorboard" \
  --save-dir "$WORK/checkpoints" --no-epoch-checkpoints --save-interval-updates 500 --keep-interval-updates 1 \
  --seed 1 2>&1 | tee -a "$WORK/checkpoints/train.log"

stamp "decode $TEST_DIR (test, beam $BEAM, cached incremental decoding, $DECODE_PRECISION)"
"$BIN/fairseq-generate" "$TEST_DIR" --user-dir "$ROOT/s2sft_fairseq" --task pseudo_masked_lm \
  --path "$WORK/checkpoints/checkpoint_last.pt" --gen-subset test --beam "$BEAM" --lenpen 1.0 \
  --max-len-b 40 --no-repeat-ngram-size 3 --batch-size 64 --cpu --decode-precision "$DECODE_PRECISION" \
  --max-source-positions 64 --max-target-positions 40 > "$WORK/generate-test.txt"
tail -n 2 "$WORK/generate-test.txt"

stamp "score (ROUGE F1 with stemming, sacreBLEU) beside trivial baselines; loss curve; samples"
"$PY" "$ROOT/examples/quickstart_report.py" quickstart --work "$WORK" --log "$WORK/checkpoints/train.log" \
  --generate-output "$WORK/generate-test.txt" --source "$TEST_RAW.src" --reference "$TEST_RAW.tgt" \
  --test-total "$n_test" --label "s2s-ft MiniLM ($METHOD)" --samples "$SAMPLES" \
  --title "MiniLM, $METHOD fine-tuning on WordNet definitions (batch 48, lr 2e-4)"
stamp "done; $WORK/results.md, $WORK/loss_curve.png"

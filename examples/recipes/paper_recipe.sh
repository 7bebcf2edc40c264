#!/usr/bin/env bash
# s2s-ft paper recipes (Bao et al., Tables 7-8) for a user with the public data, a downloaded
# checkpoint and a GPU:
#
#   bash examples/recipes/paper_recipe.sh TASK RAW_DIR CHECKPOINT_DIR OUT_DIR [extra fairseq-train flags]
#
# TASK: cnndm | xsum | squad_qg | gigaword_fr | gigaword_zh | webqa_zh
# RAW_DIR: {train,valid,test}.{src,tgt} written by the converters in preprocess/ (see README).
# CHECKPOINT_DIR: e.g. a Hugging Face bert-base-uncased, roberta-base or xlm-roberta-base
#   directory (multilingual tasks: XLM-R). Downloading it is up to you; nothing here downloads.
# Table 7 (all tasks): batch 64, label smoothing 0.1, Adam eps 1e-6 betas (0.9, 0.999), linear
# schedule with 1000 warm-up steps, clip 1.0, dropout 0.1, weight decay 0.01; grid over lr
# (base 5e-5/7e-5/1e-4), epochs (10-30) and target mask prob (0.4-0.7): set LR, EPOCHS, MASK_PROB.
# Decoding is the public s2s-ft code's (--reference-beam-search: its beam rule, GNMT length penalty
# with alpha = LENPEN and none at 0, --max-len-b = its --max_tgt_length, steps incl. the end token),
# with its trigram blocking that lets "." repeat (--forbid_duplicate_ngrams --forbid_ignore_word ".").
# DECODING=paper (default): beam / length penalty / min length of the paper's Table 8.
# DECODING=readme: the reference README's decode commands where it has one: xsum beam 5, lenpen 0
#   (unilm1.2-base-uncased, minilm-l12-h384-uncased; unilm2-base-uncased: BEAM=8 LENPEN=0.9),
#   cnndm beam 5, lenpen 0, min 48 (unilm1.2-base-uncased; unilm1-base-cased: MINLEN=1).
# BEAM, LENPEN, MINLEN set in the environment override either.
set -euo pipefail
TASK="$1"; RAW="$2"; CKPT="$3"; OUT="$4"; shift 4
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LR="${LR:-7e-5}"; EPOCHS="${EPOCHS:-10}"; MASK_PROB="${MASK_PROB:-0.5}"; METHOD="${METHOD:-pseudo_masked}"
MAX_TOKENS_PER_GPU="${MAX_TOKENS_PER_GPU:-}"; UPDATE_FREQ="${UPDATE_FREQ:-1}"; BATCH="${BATCH:-64}"
DECODING="${DECODING:-paper}"
case "$TASK" in   # Table 8: max input / max output tokens, beam, length penalty, min output tokens
  cnndm)       SRC=608; TGT=160; T8="5 0.9 48"; README="5 0 48"; SCORE="summarization" ;;
  xsum)        SRC=720; TGT=48;  T8="8 0.7 1";  README="5 0 1";  SCORE="summarization" ;;
  squad_qg)    SRC=384; TGT=32;  T8="8 1.3 5";  README="";       SCORE="qg" ;;
  webqa_zh)    SRC=384; TGT=32;  T8="8 1.3 5";  README="";       SCORE="qg --lang zh" ;;
  gigaword_fr) SRC=96;  TGT=48;  T8="5 0.9 1";  README="";       SCORE="summarization --lang fr" ;;
  gigaword_zh) SRC=96;  TGT=48;  T8="5 0.9 1";  README="";       SCORE="summarization --lang zh" ;;
  *) echo "unknown task $TASK" >&2; exit 2 ;;
esac
case "$DECODING" in
  paper)  SETTINGS="$T8" ;;
  readme) [ -n "$README" ] || { echo "the reference README has no decoding command for $TASK (use DECODING=paper)" >&2; exit 2; }
          SETTINGS="$README" ;;
  *) echo "DECODING must be paper or readme, not $DECODING" >&2; exit 2 ;;
esac
read -r B L M <<< "$SETTINGS"
BEAM="${BEAM:-$B}"; LENPEN="${LENPEN:-$L}"; MINLEN="${MINLEN:-$M}"
mkdir -p "$OUT"
[ -f "$OUT/bin/dict.src.txt" ] || s2sft-prepare --pretrained "$CKPT" --trainpref "$RAW/train" \
    --validpref "$RAW/valid" --testpref "$RAW/test" --destdir "$OUT/bin" --workers 8
N_TRAIN=$(wc -l < "$RAW/train.src")
TOTAL=$(( N_TRAIN * EPOCHS / (BATCH * UPDATE_FREQ) ))
fairseq-train "$OUT/bin" --user-dir "$ROOT/s2sft_fairseq" --task pseudo_masked_lm --arch unilm_seq2seq \
  --criterion s2s_label_smoothed_cross_entropy --label-smoothing 0.1 --ft-method "$METHOD" \
  --target-mask-prob "$MASK_PROB" --pretrained-checkpoint "$CKPT" \
  --max-source-positions "$SRC" --max-target-positions "$TGT" \
  --optimizer torch_adamw --adam-betas '(0.9,0.999)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 1.0 \
  --lr "$LR" --lr-scheduler polynomial_decay --warmup-updates 1000 --total-num-update "$TOTAL" \
  --max-update "$TOTAL" --batch-size "$BATCH" --update-freq "$UPDATE_FREQ" ${MAX_TOKENS_PER_GPU:+--max-tokens $MAX_TOKENS_PER_GPU} \
  --dropout 0.1 --attention-dropout 0.1 --save-dir "$OUT/checkpoints" --no-epoch-checkpoints \
  --ddp-backend c10d --fp16 "$@"
fairseq-generate "$OUT/bin" --user-dir "$ROOT/s2sft_fairseq" --task pseudo_masked_lm \
  --path "$OUT/checkpoints/checkpoint_best.pt" --gen-subset test --reference-beam-search --beam "$BEAM" \
  --lenpen "$LENPEN" --min-len "$MINLEN" --no-repeat-ngram-size 3 --ngram-block-ignore "." \
  --max-source-positions "$SRC" --max-target-positions "$TGT" --max-len-a 0 --max-len-b "$TGT" --batch-size 32 \
  > "$OUT/generate-test.txt"
s2sft-score --task $SCORE --generate-output "$OUT/generate-test.txt" --ref "$RAW/test.tgt" | tee "$OUT/scores.txt"

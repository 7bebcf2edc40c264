#!/usr/bin/env bash
# The main job, from a fresh machine: set up, fine-tune the real MiniLM (all-MiniLM-L6-v2) with
# s2s-ft pseudo-masked fine-tuning on WordNet definition modelling ("word : example" ->
# definition, Debian wordnet-base), decode with beam search and the key/value cache, score, and
# print the results beside trivial baselines. Budget: <= 20 minutes on 2 CPU cores incl. setup.
#
#   bash examples/quickstart.sh               # defaults below
#   TRAIN_MINUTES=30 BEAM=5 bash examples/quickstart.sh
#
# Re-running reuses the data and *continues* training from $WORK/checkpoints/checkpoint_last.pt
# (fairseq's resume; another TRAIN_MINUTES of updates, up to MAX_UPDATE); delete that folder to
# start over.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-$ROOT/examples/work/quickstart}"
TRAIN_MINUTES="${TRAIN_MINUTES:-9}"
MAX_UPDATE="${MAX_UPDATE:-3000}"
BEAM="${BEAM:-5}"
METHOD="${METHOD:-pseudo_masked}"
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

stamp "fine-tune ($METHOD, up to $MAX_UPDATE updates or $TRAIN_MINUTES minutes)"
"$BIN/fairseq-train" "$WORK/bin" --user-dir "$ROOT/s2sft_fairseq" \
  --task pseudo_masked_lm --arch unilm_seq2seq --criterion s2s_label_smoothed_cross_entropy \
  --ft-method "$METHOD" --target-mask-prob 0.5 --label-smoothing 0.1 \
  --pretrained-checkpoint "$MINILM" --max-source-positions 64 --max-target-positions 40 \
  --optimizer torch_adamw --adam-betas '(0.9,0.999)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 1.0 \
  --lr 2e-4 --lr-scheduler polynomial_decay --warmup-updates 150 --total-num-update "$MAX_UPDATE" \
  --batch-size 48 --max-update "$MAX_UPDATE" --stop-time-hours "$(awk -v m="$TRAIN_MINUTES" 'BEGIN{print m/60}')" \
  --cpu --num-workers 0 --log-format simple --log-interval 50 --disable-validation \
  --save-dir "$WORK/checkpoints" --no-epoch-checkpoints --save-interval-updates 500 --keep-interval-updates 1 \
  --seed 1

stamp "decode the test split (beam $BEAM, cached incremental decoding)"
"$BIN/fairseq-generate" "$WORK/bin" --user-dir "$ROOT/s2sft_fairseq" --task pseudo_masked_lm \
  --path "$WORK/checkpoints/checkpoint_last.pt" --gen-subset test --beam "$BEAM" --lenpen 1.0 \
  --max-len-b 40 --no-repeat-ngram-size 3 --batch-size 64 --cpu \
  --max-source-positions 64 --max-target-positions 40 > "$WORK/generate-test.txt"
tail -n 2 "$WORK/generate-test.txt"

stamp "score (ROUGE F1 with stemming, sacreBLEU) beside trivial baselines"
"$PY" - "$WORK" <<'PY'
import json, subprocess, sys, os
work = sys.argv[1]
bin_ = os.path.join(os.path.dirname(sys.executable), "s2sft-score")
ref = os.path.join(work, "raw", "test.tgt")
src = [l.rstrip("\n") for l in open(os.path.join(work, "raw", "test.src"), encoding="utf-8")]
ref_lines = [l.rstrip("\n") for l in open(ref, encoding="utf-8")]
avg_len = round(sum(len(r.split()) for r in ref_lines) / len(ref_lines))
baselines = {
    "copy the source": src,
    "copy the example sentence": [s.split(" : ", 1)[-1] for s in src],
    f"first {avg_len} words of the example": [" ".join(s.split(" : ", 1)[-1].split()[:avg_len]) for s in src],
}
rows = []
def score(args):
    r = json.loads(subprocess.run([bin_, *args, "--json"], check=True, capture_output=True, text=True).stdout)
    return r
gen = os.path.join(work, "generate-test.txt")
rows.append(("s2s-ft MiniLM (" + os.environ.get("METHOD", "pseudo_masked") + ")",
             score(["--task", "summarization", "--generate-output", gen, "--ref", ref]),
             score(["--task", "bleu", "--generate-output", gen, "--ref", ref])))
for name, hyps in baselines.items():
    path = os.path.join(work, "baseline." + name.replace(" ", "_") + ".txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(hyps) + "\n")
    rows.append((name, score(["--task", "summarization", "--hyp", path, "--ref", ref]),
                 score(["--task", "bleu", "--hyp", path, "--ref", ref])))
lines = ["| system | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU |", "|---|---:|---:|---:|---:|"]
for name, r, b in rows:
    lines.append(f"| {name} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | {b['bleu']:.2f} |")
table = "\n".join(lines)
print(table)
with open(os.path.join(work, "results.md"), "w") as f:
    f.write(f"WordNet definition modelling, test split ({len(ref_lines)} pairs)\n\n{table}\n")
PY
stamp "done; table in $WORK/results.md"

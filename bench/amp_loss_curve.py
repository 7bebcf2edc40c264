#!/usr/bin/env python
"""bf16 mixed precision (``--amp --cpu``) against fp32: the loss curve of the quickstart recipe.

Trains the quickstart's model (the real MiniLM, pseudo-masked fine-tuning, WordNet definitions,
batch 48, lr 2e-4, the same seed and data order) twice for ``--updates`` updates, once in fp32 and
once with ``--amp`` (bf16 autocast on the CPU, ``s2sft_fairseq/precision.py``), logging the
training loss every ``--log-interval`` updates, and reports at every logged point the relative
difference of the bf16 loss to the fp32 loss (target: within 2 % everywhere), the wall time of
both runs, and a PNG of the two curves.

    .venv/bin/python bench/amp_loss_curve.py --data examples/work/quickstart/bin --work /tmp/amp-curve
    .venv/bin/python bench/amp_loss_curve.py --smoke --data DATA --work DIR   # 6 updates (tests)

The data directory is the quickstart's (``bash examples/quickstart.sh`` writes it; or
``python -m preprocess.wordnet`` + ``s2sft-prepare``).
"""
import argparse
import datetime
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "examples"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, minilm_path  # noqa: E402
from quickstart_report import read_training_log  # noqa: E402

BIN = os.path.dirname(sys.executable)


def train(data, save_dir, updates, log_interval, amp, threads):
    """One fairseq-train run of the quickstart recipe; returns (training log, wall seconds)."""
    os.makedirs(save_dir, exist_ok=True)
    log_path = os.path.join(save_dir, "train.log")
    args = [os.path.join(BIN, "fairseq-train"), data, "--user-dir", os.path.join(REPO, "s2sft_fairseq"),
            "--task", "pseudo_masked_lm", "--arch", "unilm_seq2seq", "--criterion", "s2s_label_smoothed_cross_entropy",
            "--ft-method", "pseudo_masked", "--target-mask-prob", "0.5", "--label-smoothing", "0.1",
            "--pretrained-checkpoint", minilm_path(), "--max-source-positions", "64", "--max-target-positions", "40",
            "--optimizer", "torch_adamw", "--adam-betas", "(0.9,0.999)", "--adam-eps", "1e-6", "--weight-decay", "0.01",
            "--clip-norm", "1.0", "--lr", "2e-4", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "150",
            "--total-num-update", "3000", "--batch-size", "48", "--max-update", str(updates), "--cpu",
            "--num-workers", "0", "--log-format", "simple", "--log-interval", str(log_interval),
            "--disable-validation", "--save-dir", save_dir, "--no-save", "--seed", "1"] + (["--amp"] if amp else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"fairseq-train ({'bf16' if amp else 'fp32'}) failed; see {log_path}")
    return read_training_log(log_path), seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the quickstart's binarized data directory")
    ap.add_argument("--work", required=True, help="where the runs and the figure go")
    ap.add_argument("--updates", type=int, default=300)
    ap.add_argument("--log-interval", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.02, help="relative difference allowed at every point")
    ap.add_argument("--smoke", action="store_true", help="6 updates, log every 2 (checks the script, measures nothing)")
    args = ap.parse_args()
    if args.smoke:
        args.updates, args.log_interval = 6, 2
    load0 = os.getloadavg()[0]
    started = datetime.datetime.now().astimezone()
    runs = {}
    for name, amp in (("fp32", False), ("bf16", True)):
        runs[name] = train(args.data, os.path.join(args.work, name), args.updates, args.log_interval, amp, args.threads)
    (fp32, t32), (bf16, t16) = runs["fp32"], runs["bf16"]
    points32, points16 = dict(fp32.train), dict(bf16.train)
    common = sorted(set(points32) & set(points16))
    if not common:
        raise SystemExit("no logged training loss in common between the two runs")
    rows, worst = [], 0.0
    for u in common:
        rel = abs(points16[u] - points32[u]) / abs(points32[u])
        worst = max(worst, rel)
        rows.append(f"| {u} | {points32[u]:.3f} | {points16[u]:.3f} | {100 * rel:.2f} % |")
    print(f"command: {' '.join(sys.argv)}")
    print(f"date: {started:%Y-%m-%d %H:%M %Z}; machine: {machine()}; load average {load0:.2f} before / "
          f"{os.getloadavg()[0]:.2f} after; {args.threads} threads")
    print(f"wall time for {args.updates} updates (model build included): fp32 {t32:.0f} s, bf16 {t16:.0f} s "
          f"({t32 / t16:.2f}x)")
    print(f"largest relative difference of the bf16 training loss to fp32's over {len(common)} logged points: "
          f"{100 * worst:.2f} % (tolerance {100 * args.tolerance:.0f} %)")
    print("\n| update | fp32 loss | bf16 loss | relative difference |\n|---:|---:|---:|---:|")
    print("\n".join(rows))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, log in (("fp32", fp32), ("bf16 autocast (--amp --cpu)", bf16)):
        ax.plot([u for u, _ in log.train], [v for _, v in log.train], label=name)
    ax.set_xlabel("update")
    ax.set_ylabel("training loss (bits)")
    ax.set_title(f"quickstart recipe: fp32 vs bf16, {args.updates} updates")
    ax.legend()
    fig.tight_layout()
    png = os.path.join(args.work, "amp_loss_curve.png")
    fig.savefig(png, dpi=110)
    print(f"figure: {png}")
    if worst > args.tolerance:
        sys.exit(1)


if __name__ == "__main__":
    main()

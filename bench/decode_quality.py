#!/usr/bin/env python
"""Reduced-precision decoding against fp32 on one trained checkpoint: quality and speed.

For each ``--precisions`` entry (fp32, bf16, int8: ``--decode-precision``), decodes the test split
with ``fairseq-generate`` exactly as the quickstart does (beam 5, cached), scores it with
``s2sft-score`` (ROUGE-1/2/L F1 with stemming, sacreBLEU) and counts the distinct outputs; and
measures the teacher-forced top-1 agreement with fp32 (the clean reference as the target block,
the argmax at every target slot, over the whole test split). Target: ROUGE-L and BLEU within 0.3
of fp32's.

    .venv/bin/python bench/decode_quality.py --checkpoint examples/work/quickstart/checkpoints/checkpoint_last.pt \\
        --data examples/work/quickstart/bin --reference examples/work/quickstart/raw/test.tgt
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")


def generate(checkpoint, data, precision, out, threads, beam, batch):
    args = [os.path.join(BIN, "fairseq-generate"), data, "--user-dir", os.path.join(REPO, "s2sft_fairseq"),
            "--task", "pseudo_masked_lm", "--path", checkpoint, "--gen-subset", "test", "--beam", str(beam),
            "--lenpen", "1.0", "--max-len-b", "40", "--no-repeat-ngram-size", "3", "--batch-size", str(batch),
            "--cpu", "--max-source-positions", "64", "--max-target-positions", "40",
            "--decode-precision", precision]
    t0 = time.perf_counter()
    with open(out, "w") as f:
        subprocess.run(args, stdout=f, stderr=subprocess.DEVNULL, env=dict(ENV, OMP_NUM_THREADS=str(threads)),
                       check=True)
    return time.perf_counter() - t0


def score(gen, reference):
    def run(task):
        proc = subprocess.run([os.path.join(BIN, "s2sft-score"), "--task", task, "--generate-output", gen,
                               "--ref", reference, "--json"], capture_output=True, text=True, env=ENV, check=True)
        return json.loads(proc.stdout)
    rouge, bleu = run("summarization"), run("bleu")
    hyps = [line.split("\t")[2] if line.count("\t") >= 2 else "" for line in open(gen, encoding="utf-8")
            if line.startswith("D-")]
    return {"rouge1": rouge["rouge1"], "rouge2": rouge["rouge2"], "rougeL": rouge["rougeL"], "bleu": bleu["bleu"],
            "distinct": len(set(hyps)), "n": len(hyps)}


def teacher_forced_top1(checkpoint, data, precisions):
    """Per precision, the argmax at every real target slot with the clean reference as the target block."""
    import torch
    from fairseq import checkpoint_utils
    import s2sft_fairseq  # noqa: F401
    from s2sft_fairseq.precision import prepare_for_decoding
    out = {}
    for precision in precisions:
        models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": data})
        model = models[0].eval()
        prepare_for_decoding(model, precision)
        task.load_dataset("test")
        ds = task.dataset("test")
        method, d = model.decoder.method, task.dictionary
        tops = []
        with torch.no_grad():
            for start in range(0, len(ds), 64):
                batch = ds.collater([ds[i] for i in range(start, min(len(ds), start + 64))])
                target = batch["target"]
                tgt_in = (torch.cat([torch.full_like(target[:, :1], method.start_token(d)), target[:, :-1]], dim=1)
                          if method.shifted_target else target)
                tgt_in = tgt_in.masked_fill(target.eq(d.pad()), d.pad())
                h = model.decoder.forward_packed(batch["net_input"]["src_tokens"], tgt_in)
                top = model.stack.lm_head.decode_logits(h).argmax(-1)
                tops += [t[target[i].ne(d.pad())] for i, t in enumerate(top)]
        out[precision] = torch.cat(tops)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="binarized data directory with the test split")
    ap.add_argument("--reference", required=True, help="the raw test targets (one per line)")
    ap.add_argument("--precisions", default="fp32,bf16,int8")
    ap.add_argument("--work", default="/tmp/s2sft-decode-quality")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    precisions = args.precisions.split(",")
    load0, started = os.getloadavg()[0], datetime.datetime.now().astimezone()
    rows = {}
    for p in precisions:
        gen = os.path.join(args.work, f"generate-{p}.txt")
        seconds = generate(args.checkpoint, args.data, p, gen, args.threads, args.beam, args.batch_size)
        rows[p] = dict(score(gen, args.reference), seconds=seconds)
    tops = teacher_forced_top1(args.checkpoint, args.data, precisions)
    print(f"command: {' '.join(sys.argv)}")
    print(f"date: {started:%Y-%m-%d %H:%M %Z}; machine: {machine()}; load average {load0:.2f} before / "
          f"{os.getloadavg()[0]:.2f} after; {args.threads} threads; beam {args.beam}, batch {args.batch_size}")
    ref = rows.get("fp32")
    print("\n| precision | sentences/s (whole fairseq-generate run) | × fp32 | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU "
          "| ΔROUGE-L | ΔBLEU | distinct outputs | teacher-forced top-1 = fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p, r in rows.items():
        speed = r["n"] / r["seconds"]
        agree = (tops[p] == tops["fp32"]).float().mean().item() if "fp32" in tops else float("nan")
        rel = f"{speed / (ref['n'] / ref['seconds']):.2f}×" if ref else "-"
        d_rl = f"{r['rougeL'] - ref['rougeL']:+.2f}" if ref else "-"
        d_b = f"{r['bleu'] - ref['bleu']:+.2f}" if ref else "-"
        print(f"| {p} | {speed:.2f} | {rel} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | {r['bleu']:.2f} "
              f"| {d_rl} | {d_b} | {r['distinct']}/{r['n']} | {100 * agree:.2f} % |")


if __name__ == "__main__":
    main()

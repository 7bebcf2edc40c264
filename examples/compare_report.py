"""Helper of ``examples/compare.sh``: collect one system's numbers, write the comparison report.

    python examples/compare_report.py collect --system pseudo --dir WORK/runs/SIG/pseudo ...
    python examples/compare_report.py matches --json RESULTS/systems/pseudo.json --sig SIG
    python examples/compare_report.py summary --json RESULTS/systems/pseudo.json
    python examples/compare_report.py report  --results RESULTS --systems "random causal ..." ...

``collect`` reads a system's fairseq-train log (``--log-format json``), fairseq-generate log and
``s2sft-score --json`` outputs and writes ``RESULTS/systems/<name>.json`` plus the detokenized
hypotheses. ``report`` turns the JSON files into ``comparison.md`` and ``comparison.png``,
checks the orders reported in the literature against the observed scores (ROUGE-L, with a
paired bootstrap over test sentences; BLEU alongside) and shows a seeded random sample of test
examples with every system's output beside the source and the reference.
"""
import argparse
import collections
import datetime
import json
import logging
import os
import platform
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quickstart_report import SAMPLE_SEED, sample_ids, samples_table  # noqa: E402

SYSTEMS = {  # name -> (table label, family, initialisation, fine-tuning)
    "random": ("random init (unilm, pseudo-masked)", "s2s-ft", "random, MiniLM sizes", "pseudo-masked"),
    "causal": ("s2s-ft causal", "s2s-ft", "MiniLM", "causal"),
    "masked": ("s2s-ft masked", "s2s-ft", "MiniLM", "masked"),
    "pseudo": ("s2s-ft pseudo-masked", "s2s-ft", "MiniLM", "pseudo-masked"),
    "bert2bert": ("BERT2BERT", "Rothe et al.", "MiniLM (enc + dec)", "causal (enc-dec)"),
    "bertshare": ("BERTShare", "Rothe et al.", "MiniLM (shared)", "causal (enc-dec)"),
}
SHORT = {"random": "random", "causal": "causal", "masked": "masked", "pseudo": "pseudo-masked",
         "bert2bert": "BERT2BERT", "bertshare": "BERTShare"}
MUCH_BETTER = 5.0  # ROUGE-L points that make "much better" (>>) in the Rothe et al. order
BOOTSTRAP = 1000


# --------------------------------------------------------------------------- log parsing
def parse_train_log(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    out = {}
    m = re.search(r"num\. shared model params: ([\d,]+) \(num\. trained: ([\d,]+)\)", text)
    if m:
        out["params"] = int(m.group(1).replace(",", ""))
        out["params_trained"] = int(m.group(2).replace(",", ""))
    m = re.search(r"bert2bert \(.*?\): ([\d,]+) parameters, ([\d,]+) of them in the new cross-attention", text)
    if m:
        out["params_cross_attention"] = int(m.group(2).replace(",", ""))
    epochs = []
    for line in text.splitlines():
        m = re.search(r"\| train \| (\{.*\})\s*$", line)
        if m:
            epochs.append(json.loads(m.group(1)))
    if not epochs:
        raise SystemExit(f"{path}: no final '| train |' record (did fairseq-train finish?)")
    prev_updates = 0
    sentences = loss_tokens = train_wall = 0.0
    for rec in epochs:
        n = int(float(rec["train_num_updates"])) - prev_updates
        prev_updates = int(float(rec["train_num_updates"]))
        sentences += float(rec["train_bsz"]) * n
        loss_tokens += float(rec["train_wpb"]) * n
        train_wall += float(rec["train_train_wall"])  # the "train" meters are reset every epoch
    out.update(updates=prev_updates, epochs_logged=len(epochs), sentences=sentences,
               loss_tokens=loss_tokens, train_wall=train_wall, wall=float(epochs[-1]["train_wall"]),
               final_loss=float(epochs[-1]["train_loss"]), final_nll_loss=float(epochs[-1]["train_nll_loss"]),
               last_epoch_wps=float(epochs[-1]["train_wps"]))
    if "cumulative_training_time" in text and "Stopping training due to cumulative_training_time" in text:
        out["stopped_by"] = "time"
    elif "Stopping training due to num_updates" in text:
        out["stopped_by"] = "max-update"
    else:
        out["stopped_by"] = "end of data"
    return out


def parse_generate_log(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    m = re.search(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s \(([\d.]+) sentences/s, "
                  r"([\d.]+) tokens/s\)", text)
    if not m:
        raise SystemExit(f"{path}: no 'Translated N sentences' line (did fairseq-generate finish?)")
    return {"sentences": int(m.group(1).replace(",", "")), "tokens": int(m.group(2).replace(",", "")),
            "seconds": float(m.group(3)), "sentences_per_s": float(m.group(4)), "tokens_per_s": float(m.group(5))}


def target_length_stats(data_dir, max_target_positions):
    """Mean target tokens per training example as the model sees them (incl. [SEP], truncated)."""
    import numpy as np
    from fairseq.data import data_utils
    out = {}
    for side in ("src", "tgt"):
        ds = data_utils.load_indexed_dataset(os.path.join(data_dir, f"train.src-tgt.{side}"), None)
        sizes = np.asarray(ds.sizes, dtype=np.int64)
        if side == "tgt":
            out["mean_target_tokens"] = float(np.minimum(sizes, max_target_positions).mean())
        else:
            out["mean_source_tokens"] = float((sizes + 1).mean())  # + [CLS]; eos is [SEP]
        out["train_examples"] = int(len(sizes))
    return out


# --------------------------------------------------------------------------- subcommands
def cmd_collect(a):
    sys.path.insert(0, ROOT)
    from s2sft_fairseq.scoring.inputs import parse_generate_output
    train = parse_train_log(os.path.join(a.dir, "train.log"))
    gen = parse_generate_log(os.path.join(a.dir, "generate.log"))
    data = target_length_stats(a.train_data, a.max_target_positions)
    rouge = json.load(open(os.path.join(a.dir, "rouge.json")))
    bleu = json.load(open(os.path.join(a.dir, "bleu.json")))
    hyps, _ = parse_generate_output(os.path.join(a.dir, "generate.txt"))
    with open(a.hyps, "w", encoding="utf-8") as f:
        f.write("".join(h + "\n" for h in hyps))
    target_tokens = train["sentences"] * data["mean_target_tokens"]

    def seconds(name):
        p = os.path.join(a.dir, name)
        return int(open(p).read().strip()) if os.path.exists(p) else None

    rec = {
        "system": a.system, "sig": a.sig, "train_args": a.args,
        "params": train.get("params"), "params_trained": train.get("params_trained"),
        "params_cross_attention": train.get("params_cross_attention"),
        "updates": train["updates"], "stopped_by": train["stopped_by"], "sentences_trained": train["sentences"],
        "train_wall_s": train["train_wall"], "train_process_s": seconds("train.done"),
        "final_train_loss": train["final_loss"], "final_train_nll_loss": train["final_nll_loss"],
        "target_tokens_est": target_tokens,
        "target_tokens_per_s": target_tokens / train["train_wall"] if train["train_wall"] else None,
        "loss_tokens": train["loss_tokens"],
        "loss_tokens_per_s": train["loss_tokens"] / train["train_wall"] if train["train_wall"] else None,
        "sentences_per_s_train": train["sentences"] / train["train_wall"] if train["train_wall"] else None,
        "decode": gen, "decode_process_s": seconds("generate.done"),
        "rouge": rouge, "bleu": bleu["bleu"], "n_test": len(hyps), "data": data,
        "loadavg_at_collect": list(os.getloadavg()),
        "collected": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "work_dir": a.dir,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(rec, f, indent=2)
        f.write("\n")


def cmd_matches(a):
    try:
        rec = json.load(open(a.json))
    except (OSError, ValueError):
        sys.exit(1)
    if rec.get("sig") != a.sig:
        print(f"[compare] {a.json} was made with other settings ({rec.get('sig')}); redoing it")
        sys.exit(1)


def cmd_summary(a):
    r = json.load(open(a.json))
    print(f"ROUGE-1/2/L {r['rouge']['rouge1']:.2f}/{r['rouge']['rouge2']:.2f}/{r['rouge']['rougeL']:.2f} "
          f"BLEU {r['bleu']:.2f} | {r['params']:,} params | {r['updates']} updates ({r['stopped_by']}) | "
          f"{r['target_tokens_per_s']:.0f} target tok/s train | {r['decode']['sentences_per_s']:.2f} sent/s decode")


# --------------------------------------------------------------------------- report
def per_sentence_rougeL(hyps, refs):
    """Per-sentence ROUGE-L F1 x100, computed exactly as s2sft-score --task summarization (en)."""
    from rouge_score import rouge_scorer
    sys.path.insert(0, ROOT)
    from s2sft_fairseq.scoring.metrics import split_sentence_marks
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [100.0 * scorer.score(split_sentence_marks(r), split_sentence_marks(h))["rougeL"].fmeasure
            for h, r in zip(hyps, refs)]


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def bootstrap_diff(a, b, n=BOOTSTRAP, seed=0):
    """Mean difference a - b and its 95% paired-bootstrap interval over sentences."""
    import numpy as np
    a, b = np.asarray(a), np.asarray(b)
    d = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n, len(d)))
    means = d[idx].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def judge(rel, x, y, recs, per_sent):
    """One sentence on the relation ``x rel y`` (rel in '>=', '>', '>>')."""
    sym = {">=": "≥", ">": ">", ">>": "≫"}[rel]
    name = f"{SHORT[x]} {sym} {SHORT[y]}"
    if x not in recs or y not in recs:
        missing = ", ".join(SHORT[s] for s in (x, y) if s not in recs)
        return name, "cannot be checked", f"no results for {missing}"
    d, lo, hi = bootstrap_diff(per_sent[x], per_sent[y])
    db = recs[x]["bleu"] - recs[y]["bleu"]
    sig = lo > 0 or hi < 0
    if rel == ">=":
        if abs(d) < 1e-9 and lo == hi:
            verdict = "holds (a tie)"
        elif d >= 0:
            verdict = "holds" + ("" if sig else " (difference within noise)")
        elif hi >= 0:
            verdict = "holds within noise (lower, but not significantly)"
        else:
            verdict = "does not hold (significantly lower)"
    else:
        if lo > 0:
            verdict = "holds"
            if rel == ">>" and d < MUCH_BETTER:
                verdict = f"only '>' holds (better, but by less than {MUCH_BETTER:g} ROUGE-L points)"
        elif hi < 0:
            verdict = "does not hold (reversed, significantly)"
        else:
            verdict = "not resolved (difference within noise)"
    sign = lambda v: (v > 1e-9) - (v < -1e-9)  # noqa: E731
    bleu_dir = ("no BLEU difference" if sign(db) == 0 else
                "BLEU decides while ROUGE-L ties" if sign(d) == 0 else
                "same direction" if sign(db) == sign(d) else "opposite direction")
    detail = (f"ROUGE-L {recs[x]['rouge']['rougeL']:.2f} vs {recs[y]['rouge']['rougeL']:.2f}, "
              f"difference {d:+.2f} (95% CI {lo:+.2f} .. {hi:+.2f}); BLEU {recs[x]['bleu']:.2f} vs "
              f"{recs[y]['bleu']:.2f} ({db:+.2f}, {bleu_dir})")
    return name, verdict, detail


def machine_info(device):
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = f"{os.cpu_count()} CPU cores (nproc), {cpu}"
    try:
        import torch
        info += f"; torch {torch.__version__}, {torch.get_num_threads()} threads"
        if device == "gpu" and torch.cuda.is_available():
            info += f"; GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return info


def fmt_int(x):
    return "–" if x is None else f"{int(round(x)):,}"


def fmt(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def cmd_report(a):
    names = a.systems.split()
    recs = {}
    stale = []
    for s in names:
        p = os.path.join(a.results, "systems", f"{s}.json")
        if os.path.exists(p):
            r = json.load(open(p))
            if r.get("sig") == a.sig:
                recs[s] = r
            else:
                stale.append(s)
    ref_path = os.path.join(a.results, "hyps", "reference.txt")
    refs = read_lines(ref_path)
    per_sent = {}
    outputs = {}  # system -> Counter of its hypotheses (how generic the outputs are)
    hyps_of = {}
    for s, r in recs.items():
        hyps = hyps_of[s] = read_lines(os.path.join(a.results, "hyps", f"{s}.txt"))
        if len(hyps) != len(refs):
            raise SystemExit(f"{s}: {len(hyps)} hypotheses but {len(refs)} references")
        per_sent[s] = per_sentence_rougeL(hyps, refs)
        outputs[s] = collections.Counter(hyps)
        mean = sum(per_sent[s]) / len(per_sent[s])
        if abs(mean - r["rouge"]["rougeL"]) > 0.01:
            raise SystemExit(f"{s}: per-sentence ROUGE-L mean {mean:.4f} != s2sft-score {r['rouge']['rougeL']:.4f}")

    n_lines = lambda p: sum(1 for _ in open(p, encoding="utf-8"))  # noqa: E731
    n_train, n_valid, n_test = (n_lines(os.path.join(a.raw, f"{sp}.src")) for sp in ("train", "valid", "test"))
    any_rec = next(iter(recs.values()), None)
    data = any_rec["data"] if any_rec else {}
    now = datetime.datetime.now(datetime.timezone.utc)
    updates_reached = sorted({r["updates"] for r in recs.values()})

    L = []
    L.append("# s2s-ft vs. Rothe et al. baselines: one budget, one data set, one scorer")
    L.append("")
    L.append(f"- **Date**: {now.strftime('%Y-%m-%d %H:%M UTC')}")
    L.append(f"- **Machine**: {machine_info(a.device)}; device {a.device}; load average (1/5/15 min) "
             f"when this report was written: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    L.append(f"- **Command** (from the repository root): `{a.command}`")
    L.append(f"- **Data**: WordNet 3.0 definition modelling (Debian `wordnet-base`; source `word : example`, "
             f"target the definition), converted with `python -m preprocess.wordnet`: {n_train:,} train / "
             f"{n_valid:,} valid / {n_test:,} test pairs. Tokenized with the MiniLM (uncased) tokenizer; "
             f"training targets average {data.get('mean_target_tokens', float('nan')):.1f} tokens incl. [SEP] "
             f"(max 40), sources {data.get('mean_source_tokens', float('nan')):.1f} (max 64). "
             f"Test: the first {len(refs):,} test pairs (ids 0..{len(refs) - 1}), scored against the raw "
             f"(cased) definitions.")
    L.append(f"- **Budget** (every system): at most {a.updates:,} updates of {a.batch} sentences "
             f"(= {a.updates * a.batch:,} sentences, {a.updates * a.batch / max(n_train, 1):.2g} epochs) "
             f"and at most {a.minutes} min of training each (`--stop-time-hours`), "
             + ("bf16 mixed precision (`--amp --cpu`: bf16 autocast, fp32 weights)" if "TRAIN_PRECISION=bf16" in a.command
                else "fp32") + f"; Adam, lr {a.lr} "
             f"(polynomial decay to 0 at {a.updates} updates, {a.warmup} warmup), label smoothing 0.1, "
             f"target mask probability 0.5 (masked / pseudo-masked), seed 1, so every system sees the same "
             f"batches. Updates reached: "
             + (", ".join(str(u) for u in updates_reached) if updates_reached else "–")
             + (" (the same for every system)." if len(updates_reached) == 1 else
                " — **not the same for every system** (the time cap stopped some; see the table)."))
    L.append(f"- **Decoding** (every system): fairseq-generate with the plugin's generator, {a.decode}, "
             f"key/value cache on.")
    L.append("- **Scores**: `s2sft-score --task summarization` (rouge-score F1, Porter stemming) and "
             "`s2sft-score --task bleu` (sacreBLEU, 13a tokenization, case-sensitive).")
    L.append("")
    head = ("| # | system | init | params | updates (stop) | train target tok/s | train loss tok/s "
            "| decode sent/s | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU | distinct outputs |")
    L.append(head)
    L.append("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, s in enumerate(names, 1):
        label, _, init, _ = SYSTEMS.get(s, (s, "", "", ""))
        r = recs.get(s)
        if r is None:
            L.append(f"| {i} | {label} | {init} | – | – | – | – | – | – | – | – | – | – |"
                     + (" <!-- stale -->" if s in stale else ""))
            continue
        L.append(f"| {i} | {label} | {init} | {fmt_int(r['params'])} | {r['updates']} ({r['stopped_by']}) | "
                 f"{fmt(r['target_tokens_per_s'], 0)} | {fmt(r['loss_tokens_per_s'], 0)} | "
                 f"{fmt(r['decode']['sentences_per_s'])} | {r['rouge']['rouge1']:.2f} | {r['rouge']['rouge2']:.2f} | "
                 f"{r['rouge']['rougeL']:.2f} | {r['bleu']:.2f} | {len(outputs[s])} / {len(refs)} |")
    L.append("")
    L.append("Columns: *params* = unique parameters (fairseq's \"num. shared model params\"; shared tensors "
             "counted once — BERTShare shares everything except cross-attention, BERT2BERT shares the word "
             "embeddings as in Rothe et al.). *train target tok/s* = target tokens processed (sentences "
             "trained × mean target length of the training split, incl. [SEP]) / fairseq's `train_wall` "
             "(forward + backward + optimizer time, summed over epochs). *train loss tok/s* = tokens that "
             "carry a loss / `train_wall`, which is what fairseq's `wps` counts: every target token for "
             "causal, pseudo-masked and the encoder-decoders, only the corrupted ~50 % for masked. "
             "*decode sent/s* = fairseq-generate's \"Translated N sentences … (X sentences/s)\" (generation "
             "time only, model loading excluded). *stop*: max-update = the update budget was reached, "
             "time = the per-system time cap stopped training first. *distinct outputs* = different "
             "hypotheses among the test sentences (a model that writes the same definition for every word "
             "scores ROUGE on function words alone; see the most frequent outputs below).")
    if recs:
        tr = [recs[s]["train_process_s"] for s in recs if recs[s].get("train_process_s") is not None]
        de = [recs[s]["decode_process_s"] for s in recs if recs[s].get("decode_process_s") is not None]
        L.append("")
        L.append(f"Wall clock: training processes {sum(tr) / 60:.1f} min in total (max {max(tr, default=0) / 60:.1f} "
                 f"min for one system), decoding processes {sum(de) / 60:.1f} min in total (model loading "
                 f"included); the last invocation of the command took {a.elapsed / 60:.1f} min (stages it "
                 f"reused are not counted).")
        L.append("")
        L.append("Throughput depends on what else runs on the machine; load average (1/5/15 min) when each "
                 "system finished: " + "; ".join(
                     f"{SHORT.get(s, s)} {'/'.join(f'{x:.1f}' for x in recs[s]['loadavg_at_collect'])}"
                     for s in names if s in recs) + " (on " + str(os.cpu_count()) + " cores).")
    missing = [s for s in names if s not in recs]
    if missing:
        L.append("")
        L.append("**Missing systems** (failed or not run; re-run the command to retry): "
                 + ", ".join(SHORT.get(s, s) for s in missing) + ".")
    if outputs:
        L.append("")
        L.append("Most frequent output of each system (share of the test sentences):")
        L.append("")
        for s in names:
            if s in outputs:
                text, count = outputs[s].most_common(1)[0]
                L.append(f"- {SHORT.get(s, s)}: \"{text}\" ({count} / {len(refs)})")
    L.append("")
    L.append("## Observed order vs. the literature")
    L.append("")
    if recs:
        ranking = sorted(recs, key=lambda s: -recs[s]["rouge"]["rougeL"])
        L.append("Observed ranking by ROUGE-L: " + " > ".join(
            f"{SHORT[s]} ({recs[s]['rouge']['rougeL']:.2f})" for s in ranking) + ".")
        ranking_b = sorted(recs, key=lambda s: -recs[s]["bleu"])
        L.append("By BLEU: " + " > ".join(f"{SHORT[s]} ({recs[s]['bleu']:.2f})" for s in ranking_b) + ".")
        L.append("")
    L.append(f"Each relation is judged on ROUGE-L with a 95% paired bootstrap interval over the "
             f"{len(refs):,} test sentences ({BOOTSTRAP} resamples); BLEU is given alongside. '≫' asks for a "
             f"significant gap of at least {MUCH_BETTER:g} ROUGE-L points. Generated from the numbers above.")
    L.append("")
    groups = [
        ("s2s-ft paper, Table 2 (pseudo-masked ≥ masked > causal)",
         [(">=", "pseudo", "masked"), (">", "masked", "causal"), (">", "pseudo", "causal")]),
        ("Rothe et al. (BERTShare ≥ BERT2BERT ≫ random init)",
         [(">=", "bertshare", "bert2bert"), (">>", "bert2bert", "random")]),
    ]
    held, failed, unchecked = [], [], []
    for title, rels in groups:
        L.append(f"**{title}**")
        L.append("")
        for rel, x, y in rels:
            name, verdict, detail = judge(rel, x, y, recs, per_sent)
            L.append(f"- {name}: **{verdict}** — {detail}.")
            (held if verdict.startswith("holds") else unchecked if verdict == "cannot be checked"
             else failed).append(name)
        L.append("")
    summary = []
    if held:
        summary.append("holding — " + "; ".join(held))
    if failed:
        summary.append("not holding or not resolved — " + "; ".join(failed))
    if unchecked:
        summary.append("not checked (missing systems) — " + "; ".join(unchecked))
    L.append("In short: " + ". ".join(summary) + ".")
    if any(r["updates"] * a.batch < 0.5 * n_train for r in recs.values()):
        L.append("")
        L.append(f"Caveat: at this budget every system has seen less than half an epoch "
                 f"({a.updates * a.batch:,} of {n_train:,} training pairs) and the test subset has "
                 f"{len(refs):,} sentences, so these orders describe early fine-tuning, not converged "
                 f"models as in the papers.")
    if stale:
        L.append("")
        L.append("Left out (results made with other settings): " + ", ".join(stale) + ".")
    L.append("")
    L.append("![ROUGE-L and BLEU per system](comparison.png)")
    L.append("")
    shown = [s for s in names if s in recs]
    if shown and a.samples > 0:
        sources = read_lines(os.path.join(a.test_dir, "raw", "test.src"))
        ids = sample_ids(len(refs), a.samples, a.seed)
        L.append("## Samples")
        L.append("")
        L.append(f"{len(ids)} test examples (a random sample of the {len(refs):,}, seed {a.seed}; "
                 f"`SAMPLES=N` sets how many), every system's output:")
        L.append("")
        try:
            L.append(samples_table([("source", sources), ("reference", refs)]
                                   + [(SHORT.get(s, s), hyps_of[s]) for s in shown], ids))
        except ValueError as e:
            raise SystemExit(f"{os.path.join(a.test_dir, 'raw', 'test.src')} vs {ref_path}: {e}") from None
        L.append("")
    md_path = os.path.join(a.results, "comparison.md")
    with open(md_path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))
    plot(a, names, recs, len(refs), os.path.join(a.results, "comparison.png"))


def plot(a, names, recs, n_test, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    shown = [s for s in names if s in recs]
    labels = [SHORT.get(s, s) for s in shown]
    rl = [recs[s]["rouge"]["rougeL"] for s in shown]
    bl = [recs[s]["bleu"] for s in shown]
    x = np.arange(len(shown))
    w = 0.38
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    b1 = ax.bar(x - w / 2, rl, w, label="ROUGE-L F1", color="#4C72B0")
    b2 = ax.bar(x + w / 2, bl, w, label="BLEU", color="#DD8452")
    for bars in (b1, b2):
        for bar in bars:
            ax.annotate(f"{bar.get_height():.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    fams = [SYSTEMS.get(s, ("", ""))[1] for s in shown]
    for i in range(1, len(shown)):
        if fams[i] != fams[i - 1]:  # family boundary: s2s-ft | Rothe et al.
            ax.axvline(i - 0.5, color="grey", lw=0.8, ls=":")
    ax.set_ylabel("score")
    ax.set_ylim(0, max(rl + bl + [1.0]) * 1.18)
    ups = sorted({recs[s]["updates"] for s in shown})
    ax.set_title(f"WordNet definition modelling, first {n_test} test pairs — "
                 f"{'/'.join(map(str, ups))} updates × {a.batch} sentences, beam "
                 f"{a.decode.split(',')[0].split()[-1]}", fontsize=10)
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--system", required=True)
    c.add_argument("--dir", required=True)
    c.add_argument("--train-data", required=True)
    c.add_argument("--max-target-positions", type=int, required=True)
    c.add_argument("--args", default="")
    c.add_argument("--sig", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--hyps", required=True)
    m = sub.add_parser("matches")
    m.add_argument("--json", required=True)
    m.add_argument("--sig", required=True)
    s = sub.add_parser("summary")
    s.add_argument("--json", required=True)
    r = sub.add_parser("report")
    r.add_argument("--results", required=True)
    r.add_argument("--systems", required=True)
    r.add_argument("--sig", required=True)
    r.add_argument("--command", required=True)
    r.add_argument("--updates", type=int, required=True)
    r.add_argument("--batch", type=int, required=True)
    r.add_argument("--minutes", required=True)
    r.add_argument("--lr", required=True)
    r.add_argument("--warmup", type=int, required=True)
    r.add_argument("--decode", required=True)
    r.add_argument("--raw", required=True)
    r.add_argument("--test-dir", required=True)
    r.add_argument("--device", default="cpu")
    r.add_argument("--elapsed", type=int, default=0)
    r.add_argument("--samples", type=int, default=8, help="test examples shown with every system's output")
    r.add_argument("--seed", type=int, default=SAMPLE_SEED, help="seed of that sample")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in ("matplotlib", "fairseq", "absl", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)
    {"collect": cmd_collect, "matches": cmd_matches, "summary": cmd_summary, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()

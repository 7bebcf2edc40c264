"""What the example scripts show after training: the loss curve, the validation cost, sample outputs.

    python examples/quickstart_report.py quickstart --work WORK --log WORK/checkpoints/train.log ...
    python examples/quickstart_report.py curve --log train.log --out loss_curve.png

``quickstart`` is the last stage of ``examples/quickstart.sh``: the score table (the model beside
trivial baselines, scored by ``s2sft-score``), a line on training and on what validation cost,
the loss curve PNG and a seeded random sample of test examples (source, reference, generated),
all written to ``WORK/results.md`` and printed. ``curve`` plots any fairseq-train log.

The helpers (:func:`read_training_log`, :func:`plot_loss_curve`, :func:`sample_ids`,
:func:`samples_table`) are shared with ``examples/compare_report.py``. They live beside the
scripts rather than in the plugin: they present the examples' runs and are not part of what the
plugin adds to fairseq.

fairseq-train's log is read in its ``simple`` or ``json`` format (``--log-format``), as written
to stdout (``fairseq-train ... 2>&1 | tee -a train.log``). Loss values are fairseq's: base 2,
label-smoothed, per predicted target token. A log may hold several runs appended to each other
(resumed training): where update numbers repeat (a run resumed from an earlier checkpoint than
its predecessor's last log line), the later run's records replace the earlier ones.
"""
import argparse
import datetime
import json
import logging
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

SAMPLE_SEED = 1

_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:,(\d{3}))? \| \w+ \| ([^|]+?) \| (.*)$")
_BEGIN_VALID = re.compile(r'begin validation on "([^"]+)" subset')
_SIMPLE_VALID = re.compile(r"valid on '([^']+)' subset \| (.*)$")
_DONE = re.compile(r"done training in ([\d.]+) seconds")
_STOP = re.compile(r"Stopping training due to (\w+)")


@dataclass
class TrainingLog:
    """What a fairseq-train log says about the loss over updates and where the time went."""
    train: List[Tuple[int, float]] = field(default_factory=list)  # (update, train_inner loss)
    valid: Dict[str, List[Tuple[int, float]]] = field(default_factory=dict)  # subset -> (update, loss)
    validation_seconds: List[float] = field(default_factory=list)  # one per validation, from timestamps
    training_seconds: float = 0.0  # "done training in X seconds", summed over the runs in the log
    runs: int = 0  # runs that finished ("done training")
    stopped_by: Optional[str] = None  # the last run's reason: "num_updates" or "cumulative_training_time"

    @property
    def last_update(self) -> int:
        points = self.train + [p for v in self.valid.values() for p in v]
        return max((u for u, _ in points), default=0)


def _number(value, path: str, lineno: int) -> float:
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        raise ValueError(f"{path}:{lineno}: {value!r} is not a number") from None


def _keep_latest(points: List[Tuple[int, float]], update: int, loss: float) -> None:
    """Append (update, loss); a resumed run that repeats updates replaces what it repeats."""
    while points and points[-1][0] >= update:
        points.pop()
    points.append((update, loss))


def _json_record(rest: str, path: str, lineno: int) -> dict:
    try:
        rec = json.loads(rest)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: unreadable JSON log record: {rest[:80]!r}") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{path}:{lineno}: a JSON log record must be an object, got {rest[:80]!r}")
    return rec


def read_training_log(path: str) -> TrainingLog:
    """Parse a fairseq-train log (``--log-format simple`` or ``json``) into a :class:`TrainingLog`."""
    log = TrainingLog()
    pending_valid: Dict[str, datetime.datetime] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            m = _TIME.match(line.rstrip("\n"))
            if not m:
                continue
            when = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
            if m.group(2):  # logging's default format adds milliseconds
                when += datetime.timedelta(milliseconds=int(m.group(2)))
            tag, rest = m.group(3), m.group(4)
            if tag == "train_inner":
                if rest.startswith("{"):
                    rec = _json_record(rest, path, lineno)
                else:  # "epoch 001:     50 / 907 loss=12.1, nll_loss=11.9, ..., num_updates=50, ..."
                    rec = dict(re.findall(r"(\w+)=([^,\s]+)", rest))
                if "loss" not in rec or "num_updates" not in rec:
                    raise ValueError(f"{path}:{lineno}: train_inner record without loss / num_updates")
                _keep_latest(log.train, int(_number(rec["num_updates"], path, lineno)),
                             _number(rec["loss"], path, lineno))
                continue
            b = _BEGIN_VALID.search(rest)
            if b:
                pending_valid[b.group(1)] = when
                continue
            subset, rec = None, None
            if rest.startswith("{") and tag not in ("train", "train_inner"):
                try:  # a validation record, or e.g. fairseq-train's config (a Python dict, not JSON)
                    candidate = json.loads(rest)
                except ValueError:
                    candidate = {}
                if isinstance(candidate, dict) and f"{tag}_loss" in candidate and f"{tag}_num_updates" in candidate:
                    subset = tag
                    rec = {k[len(tag) + 1:]: v for k, v in candidate.items() if k.startswith(tag + "_")}
            else:
                s = _SIMPLE_VALID.search(rest)
                if s:  # "epoch 001 | valid on 'valid' subset | loss 11.2 | nll_loss 10.3 | ... | num_updates 100"
                    subset = s.group(1)
                    rec = dict(part.split(" ", 1) for part in s.group(2).split(" | ") if " " in part)
            if subset is not None:
                if "loss" not in rec or "num_updates" not in rec:
                    raise ValueError(f"{path}:{lineno}: validation record without loss / num_updates")
                _keep_latest(log.valid.setdefault(subset, []), int(_number(rec["num_updates"], path, lineno)),
                             _number(rec["loss"], path, lineno))
                if subset in pending_valid:
                    log.validation_seconds.append((when - pending_valid.pop(subset)).total_seconds())
                continue
            d = _DONE.search(rest)
            if d:
                log.training_seconds += float(d.group(1))
                log.runs += 1
                continue
            s = _STOP.search(rest)
            if s:
                log.stopped_by = s.group(1)
    return log


def validation_summary(log: TrainingLog) -> str:
    """One sentence on how much of the training runs' time went into validation."""
    if not log.validation_seconds:
        return "No validation in the training log."
    spent = sum(log.validation_seconds)
    n = len(log.validation_seconds)
    text = (f"{n} validation{'s' if n != 1 else ''} took {spent:.0f} s in total "
            f"({spent / n:.1f} s each, from the log's timestamps)")
    if log.training_seconds > 0:
        text += (f", {100.0 * spent / log.training_seconds:.1f} % of the {log.training_seconds:.0f} s "
                 f"fairseq-train spent training ({log.runs} run{'s' if log.runs != 1 else ''})")
    return text + "."


def loss_figure(log: TrainingLog, title: str = ""):
    """A matplotlib figure: train (every log interval) and validation loss against updates."""
    if not log.train and not any(log.valid.values()):
        raise ValueError("the training log has no train_inner or validation records to plot "
                         "(was fairseq-train's output kept, with --log-interval smaller than the run?)")
    import matplotlib
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's import may have set DEBUG
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    if log.train:
        ax.plot([u for u, _ in log.train], [v for _, v in log.train], color="#4C72B0", lw=1.2,
                marker=".", ms=3, label="train (mean over each log interval)")
    for subset, points in log.valid.items():
        if points:
            ax.plot([u for u, _ in points], [v for _, v in points], color="#DD8452", lw=1.5, marker="o",
                    ms=4, label=f"validation ({subset})")
    ax.set_xlabel("updates")
    ax.set_ylabel("loss (bits per target token, label-smoothed)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_loss_curve(log: TrainingLog, out: str, title: str = "") -> None:
    """Write :func:`loss_figure` as a PNG."""
    fig = loss_figure(log, title)
    import matplotlib.pyplot as plt
    fig.savefig(out)
    plt.close(fig)


def sample_ids(n: int, k: int, seed: int = SAMPLE_SEED) -> List[int]:
    """``k`` distinct example ids out of ``n``, drawn with ``seed`` and sorted (all of them if n <= k)."""
    return sorted(random.Random(seed).sample(range(n), min(max(k, 0), n)))


def _cell(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()
    return text if text else "*(empty)*"


def samples_table(columns: Sequence[Tuple[str, Sequence[str]]], ids: Sequence[int]) -> str:
    """A markdown table, one row per example id, one column per (name, lines) pair."""
    lengths = {name: len(lines) for name, lines in columns}
    if len(set(lengths.values())) > 1:
        raise ValueError("samples: the columns have different numbers of examples: "
                         + ", ".join(f"{name} {n}" for name, n in lengths.items()))
    rows = ["| id | " + " | ".join(_cell(name) for name, _ in columns) + " |",
            "|---:|" + "---|" * len(columns)]
    for i in ids:
        rows.append(f"| {i} | " + " | ".join(_cell(lines[i]) for _, lines in columns) + " |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- the quickstart's report
BASELINES = (  # name -> how it turns a "word : example" source into a "definition"
    ("copy the source", lambda src, n: src),
    ("copy the example sentence", lambda src, n: src.split(" : ", 1)[-1]),
    ("first {n} words of the example", lambda src, n: " ".join(src.split(" : ", 1)[-1].split()[:n])),
)


def _score(args: List[str]) -> dict:
    exe = os.path.join(os.path.dirname(sys.executable), "s2sft-score")
    proc = subprocess.run([exe, *args, "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"s2sft-score {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def score_rows(label: str, generate_output: str, sources: List[str], refs: List[str], ref_path: str, work: str):
    """(system, ROUGE dict, BLEU dict) for the model and each trivial baseline."""
    avg_len = round(sum(len(r.split()) for r in refs) / max(len(refs), 1))
    rows = [(label, _score(["--task", "summarization", "--generate-output", generate_output, "--ref", ref_path]),
             _score(["--task", "bleu", "--generate-output", generate_output, "--ref", ref_path]))]
    for name, make in BASELINES:
        name = name.format(n=avg_len)
        path = os.path.join(work, "baseline." + name.replace(" ", "_") + ".txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(make(s, avg_len) + "\n" for s in sources))
        rows.append((name, _score(["--task", "summarization", "--hyp", path, "--ref", ref_path]),
                     _score(["--task", "bleu", "--hyp", path, "--ref", ref_path])))
    return rows


def score_table(rows) -> str:
    lines = ["| system | ROUGE-1 | ROUGE-2 | ROUGE-L | BLEU |", "|---|---:|---:|---:|---:|"]
    for name, r, b in rows:
        lines.append(f"| {name} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | {b['bleu']:.2f} |")
    return "\n".join(lines)


def training_summary(log: TrainingLog) -> str:
    why = {"num_updates": "reached --max-update", "cumulative_training_time": "used its time budget "
           "(--stop-time-hours)"}.get(log.stopped_by or "", "stopped")
    return f"Training {why} at update {log.last_update}. " + validation_summary(log)


def cmd_quickstart(a) -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from s2sft_fairseq.scoring.inputs import parse_generate_output, read_text
    sources, refs = read_text(a.source), read_text(a.reference)
    hyps, _ = parse_generate_output(a.generate_output)
    rows = score_rows(a.label, a.generate_output, sources, refs, a.reference, a.work)
    log = read_training_log(a.log)
    curve = os.path.join(a.work, "loss_curve.png")
    plot_loss_curve(log, curve, title=a.title)
    ids = sample_ids(len(refs), a.samples, a.seed)
    samples = samples_table([("source", sources), ("reference", refs), ("generated", hyps)], ids)
    split = (f"test split ({len(refs):,} pairs)" if a.test_total in (0, len(refs))
             else f"the first {len(refs):,} of the {a.test_total:,} test pairs")
    text = "\n".join([
        f"WordNet definition modelling, {split}", "", score_table(rows), "",
        training_summary(log), f"Loss curve (train and validation loss against updates): {curve}", "",
        f"{len(ids)} test examples (a random sample, seed {a.seed}):", "", samples, ""])
    with open(os.path.join(a.work, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


def cmd_curve(a) -> None:
    log = read_training_log(a.log)
    plot_loss_curve(log, a.out, title=a.title)
    print(f"{a.out}: {len(log.train)} train and {sum(map(len, log.valid.values()))} validation points "
          f"up to update {log.last_update}. {validation_summary(log)}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quickstart", help="the quickstart's results.md: scores, curve, samples")
    q.add_argument("--work", required=True, help="the quickstart's work folder (results go here)")
    q.add_argument("--log", required=True, help="fairseq-train's log")
    q.add_argument("--generate-output", required=True, help="fairseq-generate's output on the test pairs")
    q.add_argument("--source", required=True, help="raw test sources, one a line")
    q.add_argument("--reference", required=True, help="raw test references, one a line")
    q.add_argument("--test-total", type=int, default=0, help="size of the whole test split (0: as decoded)")
    q.add_argument("--label", default="s2s-ft MiniLM", help="the model's row in the score table")
    q.add_argument("--title", default="", help="title of the loss curve")
    q.add_argument("--samples", type=int, default=8, help="test examples shown")
    q.add_argument("--seed", type=int, default=SAMPLE_SEED, help="seed of the sample")
    c = sub.add_parser("curve", help="plot train / validation loss of a fairseq-train log")
    c.add_argument("--log", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--title", default="")
    a = p.parse_args(argv)
    try:
        {"quickstart": cmd_quickstart, "curve": cmd_curve}[a.cmd](a)
    except (OSError, ValueError) as e:  # unreadable or inconsistent inputs: one line, no traceback
        raise SystemExit(f"quickstart_report.py {a.cmd}: {e}") from None


if __name__ == "__main__":
    main()

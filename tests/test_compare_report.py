"""examples/compare_report.py: the verdicts on the papers' orders and the report's output columns.

Oracles: per-sentence scores built by hand so the paired bootstrap interval is clearly above,
around or below zero; a results folder written by hand (three test sentences, known outputs).
"""
import importlib.util
import json
import os

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("compare_report", os.path.join(REPO, "examples", "compare_report.py"))
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def recs(**rouge_l):
    return {s: {"rouge": {"rougeL": v}, "bleu": 1.0} for s, v in rouge_l.items()}


@pytest.mark.parametrize("rel,x_scores,y_scores,verdict", [
    (">", [30.0, 31.0, 29.0, 30.5] * 10, [20.0, 21.0, 19.0, 20.5] * 10, "holds"),
    (">", [20.0, 21.0, 19.0, 20.5] * 10, [30.0, 31.0, 29.0, 30.5] * 10, "does not hold (reversed, significantly)"),
    (">", [20.0, 40.0] * 10, [40.0, 20.0] * 10, "not resolved (difference within noise)"),
    (">>", [23.0, 24.0] * 20, [20.0, 21.0] * 20, "only '>' holds (better, but by less than 5 ROUGE-L points)"),
    (">=", [20.0, 30.0] * 10, [20.0, 30.0] * 10, "holds (a tie)"),
    (">=", [20.0, 21.0] * 20, [30.0, 31.0] * 20, "does not hold (significantly lower)"),
])
def test_judge_verdicts(rel, x_scores, y_scores, verdict):
    r = recs(causal=sum(x_scores) / len(x_scores), masked=sum(y_scores) / len(y_scores))
    _, got, detail = report.judge(rel, "causal", "masked", r, {"causal": x_scores, "masked": y_scores})
    assert got == verdict, detail
    assert report.judge(rel, "causal", "pseudo", r, {})[1] == "cannot be checked"


REFS = ["in a romantic manner", "the act of giving", "a small dog"]
SOURCES = ["romantically : she fantasized romantically", "giving : the giving of gifts", "puppy : a puppy barked"]
OUTPUTS = {"causal": ["in a romantic manner", "the act of something", "the act of something"],
           "pseudo": ["in a clever manner", "the act of giving", "a small cat"]}


def write_results(tmp_path):
    """A results folder as compare.sh leaves it (two systems, three test sentences) and the raw
    data (the test sources under TEST_DIR/raw, as compare.sh writes them)."""
    results, raw = tmp_path / "results", tmp_path / "raw"
    (results / "systems").mkdir(parents=True)
    (results / "hyps").mkdir()
    raw.mkdir()
    for split, n in (("train", 5), ("valid", 2)):
        (raw / f"{split}.src").write_text("w : example\n" * n)
    (raw / "test.src").write_text("".join(s + "\n" for s in SOURCES))
    (results / "hyps" / "reference.txt").write_text("\n".join(REFS) + "\n")
    for name, hyps in OUTPUTS.items():
        (results / "hyps" / f"{name}.txt").write_text("\n".join(hyps) + "\n")
        rl = report.per_sentence_rougeL(hyps, REFS)
        rec = {"system": name, "sig": "S", "params": 10, "updates": 2, "stopped_by": "max-update",
               "target_tokens_per_s": 1.0, "loss_tokens_per_s": 1.0, "decode": {"sentences_per_s": 1.0},
               "rouge": {"rouge1": 0.0, "rouge2": 0.0, "rougeL": sum(rl) / len(rl), "rougeLsum": 0.0},
               "bleu": 0.0, "train_process_s": 1, "decode_process_s": 1, "loadavg_at_collect": [0, 0, 0],
               "data": {"mean_target_tokens": 4.0, "mean_source_tokens": 3.0}}
        (results / "systems" / f"{name}.json").write_text(json.dumps(rec))
    return results, raw


def run_report(tmp_path, *extra):
    results, raw = write_results(tmp_path)
    report.main(["report", "--results", str(results), "--systems", "causal pseudo", "--sig", "S",
                 "--command", "cmd", "--updates", "2", "--batch", "4", "--minutes", "1", "--lr", "1e-4",
                 "--warmup", "1", "--decode", "beam 5, lenpen 1", "--raw", str(raw), "--test-dir", str(tmp_path),
                 *extra])
    return results


def test_report_counts_distinct_outputs_and_names_the_most_frequent(tmp_path):
    results = run_report(tmp_path)
    md = (results / "comparison.md").read_text()
    causal_row = next(line for line in md.splitlines() if line.startswith("| 1 | s2s-ft causal"))
    pseudo_row = next(line for line in md.splitlines() if line.startswith("| 2 | s2s-ft pseudo-masked"))
    assert causal_row.endswith("| 2 / 3 |") and pseudo_row.endswith("| 3 / 3 |")
    assert '- causal: "the act of something" (2 / 3)' in md
    assert (results / "comparison.png").stat().st_size > 0


def test_report_shows_seeded_samples_with_every_systems_output(tmp_path):
    md = (run_report(tmp_path, "--samples", "2", "--seed", "5") / "comparison.md").read_text()
    lines = md[md.index("## Samples"):].splitlines()
    ids = report.sample_ids(3, 2, seed=5)
    assert lines[4:8] == ["| id | source | reference | causal | pseudo-masked |", "|---:|---|---|---|---|"] + [
        f"| {i} | {SOURCES[i]} | {REFS[i]} | {OUTPUTS['causal'][i]} | {OUTPUTS['pseudo'][i]} |" for i in ids]
    assert "## Samples" not in (run_report(tmp_path / "none", "--samples", "0") / "comparison.md").read_text()

"""fairseq-train end to end with the real MiniLM, for each fine-tuning method (issue 3)."""
import json
import os
import re

import pytest

from conftest import USER_DIR, run_cli

TRAIN_ARGS = ["--task", "pseudo_masked_lm", "--arch", "unilm_seq2seq", "--criterion",
              "s2s_label_smoothed_cross_entropy", "--cpu", "--optimizer", "adam", "--lr", "3e-4",
              "--lr-scheduler", "fixed", "--batch-size", "16", "--max-source-positions", "48",
              "--max-target-positions", "24", "--log-format", "json", "--log-interval", "1",
              "--no-epoch-checkpoints", "--disable-validation", "--seed", "3", "--num-workers", "0"]


def train_losses(stdout):
    out = []
    for line in stdout.splitlines():
        m = re.search(r"\| train_inner \| (\{.*\})", line)
        if m:
            rec = json.loads(m.group(1))
            out.append((int(rec["num_updates"]), float(rec["loss"])))
    return out


@pytest.mark.parametrize("method", ["causal", "masked", "pseudo_masked"])
def test_fairseq_train_each_method_loss_falls(method, toy_data, minilm, tmp_path):
    proc = run_cli("fairseq-train", toy_data, "--user-dir", USER_DIR, *TRAIN_ARGS, "--ft-method", method,
                   "--pretrained-checkpoint", minilm, "--max-update", "16", "--save-dir", tmp_path / "ckpt")
    losses = train_losses(proc.stdout + proc.stderr)
    assert len(losses) >= 12, proc.stderr[-2000:]
    first = sum(l for _, l in losses[:3]) / 3
    last = sum(l for _, l in losses[-3:]) / 3
    assert last < first - 0.5, f"{method}: loss did not fall ({first:.3f} -> {last:.3f})"
    assert os.path.exists(tmp_path / "ckpt" / "checkpoint_last.pt")


def test_fairseq_train_resumes_from_checkpoint_last(toy_data, minilm, tmp_path):
    save = tmp_path / "ckpt"
    common = [toy_data, "--user-dir", USER_DIR, *TRAIN_ARGS, "--ft-method", "pseudo_masked",
              "--pretrained-checkpoint", minilm, "--save-dir", save, "--update-freq", "2"]
    run_cli("fairseq-train", *common, "--max-update", "4")
    proc = run_cli("fairseq-train", *common, "--max-update", "7")
    log = proc.stdout + proc.stderr
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 4 updates\)", log), log[-3000:]
    updates = [u for u, _ in train_losses(log)]
    assert updates and updates[0] == 5 and updates[-1] == 7

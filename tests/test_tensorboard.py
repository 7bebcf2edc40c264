"""``fairseq-train --tensorboard-logdir`` works out of the box (requirements.txt pins tensorboard,
which ``torch.utils.tensorboard`` writes with, and tensorboardX, which silences fairseq's
"Please install tensorboardX" at import).

Oracle: the losses fairseq-train prints in its own JSON log; the event files must hold the same
values at the same updates (the log rounds to 3 decimals).
"""
import json
import re

import pytest

from conftest import USER_DIR, run_cli


def logged(log, tag, prefix=""):
    """{update: loss} of the JSON records printed under ``tag``."""
    out = {}
    for m in re.finditer(rf"\| {tag} \| (\{{.*\}})", log):
        rec = json.loads(m.group(1))
        out[int(rec[prefix + "num_updates"])] = float(rec[prefix + "loss"])
    return out


def scalars(folder, tag):
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        pytest.fail("the tensorboard package is missing: tests/setup_env.sh installs requirements.txt")
    acc = EventAccumulator(str(folder))
    acc.Reload()
    assert tag in acc.Tags()["scalars"], f"{folder}: scalars {acc.Tags()['scalars']}"
    return {e.step: e.value for e in acc.Scalars(tag)}


@pytest.mark.slow
def test_fairseq_train_writes_train_and_valid_loss_to_tensorboard(toy_data, tmp_path):
    tb = tmp_path / "tb"
    proc = run_cli("fairseq-train", toy_data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm",
                   "--arch", "unilm_seq2seq_tiny", "--criterion", "s2s_label_smoothed_cross_entropy",
                   "--ft-method", "pseudo_masked", "--cpu", "--optimizer", "adam", "--lr", "1e-3",
                   "--batch-size", "8", "--max-update", "6", "--max-source-positions", "48",
                   "--max-target-positions", "24", "--log-format", "json", "--log-interval", "2",
                   "--validate-interval-updates", "3", "--no-save", "--seed", "1", "--num-workers", "0",
                   "--tensorboard-logdir", tb)
    log = proc.stdout + proc.stderr
    assert "tensorboard not found" not in log
    assert "Please install tensorboardX" not in log
    train = logged(log, "train_inner")
    valid = logged(log, "valid", prefix="valid_")
    assert sorted(train) == [2, 4, 6] and sorted(valid) == [3, 6], log[-2000:]
    tb_train = scalars(tb / "train_inner", "loss")
    tb_valid = scalars(tb / "valid", "loss")
    assert sorted(tb_train) == sorted(train) and sorted(tb_valid) == sorted(valid)
    for update, loss in train.items():
        assert tb_train[update] == pytest.approx(loss, abs=5e-4)
    for update, loss in valid.items():
        assert tb_valid[update] == pytest.approx(loss, abs=5e-4)

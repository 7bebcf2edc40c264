"""Crash-safe resume: SIGKILL mid-training, restart with the same command, same parameters.

What is bit-identical and why: fairseq restores the model, Adam state, LR scheduler and the data
iterator position from checkpoint_last.pt, reseeds dropout per update (seed + num_updates), and
our target corruption is seeded per (seed, epoch, example); so the resumed run replays exactly
the updates the killed run lost. Only wall-clock meters differ. The test allows 1e-6 for
floating-point reduction order, and in practice sees 0.
"""
import os
import signal
import subprocess
import time

import pytest
import torch

from conftest import BIN, USER_DIR, run_cli
from s2sft_fairseq.atomic_checkpoints import atomic_copy


def train_args(data, save_dir, max_update=10, optimizer="adam"):
    return [data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--arch", "unilm_seq2seq_tiny",
            "--criterion", "s2s_label_smoothed_cross_entropy", "--ft-method", "pseudo_masked", "--cpu",
            "--optimizer", optimizer, "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "3",
            "--batch-size", "8", "--max-update", str(max_update), "--max-source-positions", "48",
            "--max-target-positions", "24", "--save-interval-updates", "3", "--no-epoch-checkpoints",
            "--disable-validation", "--seed", "11", "--num-workers", "0", "--save-dir", str(save_dir)]


def last_update(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["optimizer_history"][-1]["num_updates"], state["model"]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "torch_adamw"])
def test_sigkill_mid_training_then_restart_reaches_same_parameters(toy_data, tmp_path, optimizer):
    """Also proves that torch_adamw's state (fused AdamW) is saved and restored exactly."""
    ref_dir, crash_dir = tmp_path / "ref", tmp_path / "crash"
    run_cli("fairseq-train", *train_args(toy_data, ref_dir, optimizer=optimizer))
    n_ref, ref = last_update(ref_dir / "checkpoint_last.pt")
    assert n_ref == 10

    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    args = train_args(toy_data, crash_dir, optimizer=optimizer)
    proc = subprocess.Popen([os.path.join(BIN, "fairseq-train"), *map(str, args)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    last = crash_dir / "checkpoint_last.pt"
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                n, _ = last_update(last)
            except Exception:  # being replaced right now
                n = 0
            if n >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed; make the run longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_killed, _ = last_update(last)
    assert 3 <= n_killed < 10

    run_cli("fairseq-train", *args)  # the same command
    n, resumed = last_update(last)
    assert n == 10
    diff = max((resumed[k].float() - ref[k].float()).abs().max().item() for k in ref)
    assert diff <= 1e-6, f"resumed run differs from the uninterrupted one by {diff}"


def test_checkpoint_copy_is_atomic_when_killed_mid_copy(tmp_path, monkeypatch):
    src, dst = tmp_path / "checkpoint_3_6.pt", tmp_path / "checkpoint_last.pt"
    torch.save({"model": {"w": torch.ones(3)}}, dst)
    torch.save({"model": {"w": torch.zeros(1000)}}, src)
    old = dst.read_bytes()

    import shutil
    real = shutil.copyfileobj

    def dying_copy(inp, out, length=0):
        out.write(inp.read(100))  # half a file, then the process "dies"
        raise KeyboardInterrupt("SIGKILL stand-in")

    monkeypatch.setattr(shutil, "copyfileobj", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        atomic_copy(str(src), str(dst), overwrite=True)
    monkeypatch.setattr(shutil, "copyfileobj", real)
    assert dst.read_bytes() == old  # the old checkpoint_last is intact and loadable
    assert torch.load(dst, weights_only=True)["model"]["w"].numel() == 3
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".partial")]
    assert atomic_copy(str(src), str(dst), overwrite=True)
    assert torch.load(dst, weights_only=True)["model"]["w"].numel() == 1000


def test_plugin_makes_fairseq_checkpoint_copies_atomic():
    import s2sft_fairseq  # noqa: F401
    from fairseq import checkpoint_utils
    assert checkpoint_utils.PathManager.copy is atomic_copy

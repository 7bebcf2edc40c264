"""The benchmark scripts keep working: each runs end to end at toy sizes (``--smoke``).

They measure nothing here (the figures come from full runs on an idle machine, BENCHMARKS.md);
what is checked is that every configuration builds, runs and is reported, and that the decoding
benchmark's own correctness check (cached == full recompute == hidden-state cache) passes.
"""
import os
import subprocess
import sys

import pytest

from conftest import REPO


def run_bench(script, *args):
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", script), "--smoke", *args],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_decode_benchmark_smoke():
    out = run_bench("decode.py", "--amdahl")
    assert "check full: same hypotheses as ours" in out and "check hidden: same hypotheses as ours" in out
    assert "Amdahl bound of bf16 decoding" in out and "| ours | 0." in out and "| ours_causal | 0." in out
    for name in ("ours", "ours_causal", "hidden", "full", "hf"):
        assert f"| 2 | 4 | {name} |" in out, out[-2000:]


@pytest.mark.slow
def test_train_benchmark_smoke():
    out = run_bench("train.py")
    for name in ("hf_bert2bert", "hf_bertshare", "causal", "masked", "pseudo_masked"):
        assert f"| {name} |" in out, out[-2000:]


@pytest.mark.slow
def test_amp_loss_curve_smoke(toy_data, tmp_path):
    """bench/amp_loss_curve.py --smoke: both runs train, the table and the figure are written."""
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "amp_loss_curve.py"), "--smoke",
                           "--data", toy_data, "--work", str(tmp_path), "--tolerance", "1.0"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| 2 |" in proc.stdout and "| 6 |" in proc.stdout and (tmp_path / "amp_loss_curve.png").exists()


@pytest.mark.slow
def test_decode_quality_smoke(tiny_save_dir, tmp_path):
    """bench/decode_quality.py on a tiny checkpoint: every precision decodes, scores and agrees."""
    save, data, _ = tiny_save_dir
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "decode_quality.py"),
                           "--checkpoint", os.path.join(save, "checkpoint_best.pt"), "--data", data,
                           "--reference", os.path.join(os.path.dirname(data), "test.tgt"), "--work", str(tmp_path),
                           "--beam", "2"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for p in ("fp32", "bf16", "int8"):
        assert f"| {p} |" in proc.stdout, proc.stdout[-2000:]
    assert "| fp32 | " in proc.stdout and "100.00 % |" in proc.stdout  # fp32 agrees with itself


def test_serve_benchmark_smoke(tiny_save_dir, tmp_path):
    """bench/serve.py --smoke: both servers start, every cell is measured and reported."""
    save, data, _ = tiny_save_dir
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "serve.py"), "--smoke", "--threads", "1",
                           "--checkpoint", os.path.join(save, "checkpoint_best.pt"),
                           "--sources", os.path.join(os.path.dirname(data), "test.src"), "--log-dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for server in ("batching", "one at a time"):
        for clients in (1, 4):
            assert f"| {server} | {clients} | " in proc.stdout, proc.stdout[-2000:]
    assert "| one at a time | 1 | 4 | " in proc.stdout and " | 1.00× | " in proc.stdout

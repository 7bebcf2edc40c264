"""Data-parallel training on fairseq's own distributed engine (torch.distributed, gloo on CPU).

2 processes x batch B must reach the same parameters as 1 process with --update-freq 2 x batch B
on the same data order: fairseq shards an epoch's batches round-robin over workers, so update k
sees batches 2k and 2k+1 in both runs; corruption is seeded per example (not per process) and
the loss is normalised by the global number of predicted tokens in both.
"""
import os
import socket
import subprocess

import pytest
import torch

from conftest import BIN, USER_DIR, run_cli

COMMON = ["--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--criterion", "s2s_label_smoothed_cross_entropy",
          "--cpu", "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "fixed", "--batch-size", "8",
          "--max-update", "4", "--max-source-positions", "48", "--max-target-positions", "24",
          "--dropout", "0", "--attention-dropout", "0", "--no-epoch-checkpoints", "--disable-validation",
          "--seed", "5", "--num-workers", "0", "--required-batch-size-multiple", "1", "--log-format", "simple"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_workers(args, save_dir):
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    dist = ["--distributed-world-size", "2", "--distributed-backend", "gloo", "--distributed-init-method",
            f"tcp://127.0.0.1:{port}", "--distributed-no-spawn", "--ddp-backend", "legacy_ddp", "--save-dir", str(save_dir)]
    procs = [subprocess.Popen([os.path.join(BIN, "fairseq-train"), *map(str, args), *dist, "--distributed-rank", str(r)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
    return outs


def params(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.parametrize("method,arch", [("causal", "unilm_seq2seq_tiny"), ("masked", "unilm_seq2seq_tiny"),
                                         ("pseudo_masked", "unilm_seq2seq_tiny"), ("causal", "bert2bert_tiny")])
def test_two_workers_equal_one_worker_with_update_freq_2(method, arch, toy_data, tmp_path):
    """Every unilm method and the bert2bert baseline (own encoder + decoder + cross-attention)."""
    args = [toy_data, *COMMON, "--arch", arch, "--ft-method", method]
    launch_two_workers(args, tmp_path / "ddp")
    run_cli("fairseq-train", *args, "--update-freq", "2", "--save-dir", tmp_path / "single")
    a, b = params(tmp_path / "ddp" / "checkpoint_last.pt"), params(tmp_path / "single" / "checkpoint_last.pt")
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff <= 1e-5, f"{method}: 2 workers differ from update-freq 2 by {diff}"
    # and training really moved the parameters (the comparison is not vacuous)
    run_cli("fairseq-train", *args, "--max-update", "1", "--save-dir", tmp_path / "one")  # last flag wins
    moved = max((a[k].float() - params(tmp_path / "one" / "checkpoint_last.pt")[k].float()).abs().max().item() for k in a)
    assert moved > 1e-3

"""Pickles are never trusted: weights_only loading with a minimal allow-list (README, 'What
happens with bad input').

* a ``pytorch_model.bin`` / ``model.pt`` whose unpickling would run code is refused by the
  importer (CheckpointError) and the code does not run;
* importing the plugin allow-lists exactly :data:`s2sft_fairseq.safe_loading.ALLOWED_GLOBALS`
  and leaves torch's ``weights_only`` default on: a plain ``torch.load`` still refuses the file;
* a fairseq-train-style checkpoint (what ``fairseq-generate --path`` reads through fairseq's own
  ``load_checkpoint_to_cpu``) loads, and every allow-listed global is needed by it.
"""
import argparse
import builtins
import collections
import os
import pickle
import shutil
import subprocess

import numpy as np
import pytest
import torch

import checkpoint_factory as cf
import s2sft_fairseq  # noqa: F401  (registers the allow-list, as --user-dir does)
from s2sft_fairseq import safe_loading
from s2sft_fairseq.checkpoints import CheckpointError, load_pretrained


class Exploit:
    """Unpickling this runs a shell command (creates the marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_exploit(path, marker, how="torch.save"):
    payload = {"bert.embeddings.word_embeddings.weight": torch.zeros(2, 2), "x": Exploit(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:  # a plain (non-zip) pickle, protocol 2 as the pre-1.6 torch.save wrote (tensor-free,
        with open(path, "wb") as f:  # so that the refusal is the exploit's global, not the tensor's)
            pickle.dump({"x": Exploit(marker)}, f, protocol=2)


@pytest.fixture
def no_force_env(monkeypatch):
    # A user's TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD would make a *plain* torch.load unsafe; the
    # plugin must never set it, and the importer passes weights_only=True explicitly anyway.
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_malicious_pytorch_model_bin_is_refused(tmp_path, how):
    path = cf.copy_of("bert", str(tmp_path / "bert"))
    os.remove(os.path.join(path, "model.safetensors"))
    marker = tmp_path / "pwned_marker"
    write_exploit(os.path.join(path, "pytorch_model.bin"), marker, how)
    with pytest.raises(CheckpointError) as e:
        load_pretrained(path)
    msg = str(e.value)
    assert "pytorch_model.bin" in msg and "not trusted" in msg
    assert "posix.system" in msg or "os.system" in msg
    assert not marker.exists()


def test_malicious_fairseq_model_pt_is_refused(tmp_path):
    path = cf.copy_of("fairseq-roberta", str(tmp_path / "fs"))
    marker = tmp_path / "pwned_marker"
    write_exploit(os.path.join(path, "model.pt"), marker)
    with pytest.raises(CheckpointError, match="model.pt: refused"):
        load_pretrained(path)
    assert not marker.exists()


def _name(g):
    return f"{g.__module__}.{g.__qualname__}".replace("numpy._core.", "numpy.core.")


def test_import_allow_lists_only_specific_globals(tmp_path, no_force_env):
    safe = torch.serialization.get_safe_globals()
    assert argparse.Namespace in safe
    assert all(g in safe for g in safe_loading.ALLOWED_GLOBALS)
    assert sorted(_name(g) for g in safe_loading.ALLOWED_GLOBALS) == sorted([
        "argparse.Namespace", "numpy.dtype", "numpy.ndarray",
        "numpy.core.multiarray.scalar", "numpy.core.multiarray._reconstruct",
        "numpy.dtypes.Float64DType", "numpy.dtypes.Int64DType",
    ])
    for dangerous in (os.system, builtins.eval, builtins.exec, builtins.getattr, builtins.__import__,
                      subprocess.Popen, shutil.rmtree, pickle.loads):
        assert dangerous not in safe
    # weights_only is not switched off: torch.load is torch's, its default refuses the exploit
    assert torch.load is torch.serialization.load
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    marker = tmp_path / "pwned_marker"
    write_exploit(tmp_path / "evil.pt", marker)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        torch.load(tmp_path / "evil.pt")
    assert not marker.exists()


# --------------------------------------------------------------------------- fairseq checkpoints
def fairseq_train_style_state():
    """A checkpoint as ``fairseq-train`` 0.12 writes it (``Trainer.state_dict`` +
    ``checkpoint_utils.save_checkpoint``), with each kind of non-tensor object seen in real ones:

    * ``cfg['model']``: an ``argparse.Namespace`` (models with legacy arguments, e.g.
      ``--arch transformer``);
    * meters holding numpy int64 arrays (the translation task's ``--eval-bleu`` n-gram counts);
    * numpy float64 scalars for the best / last validation metric.
    """
    from fairseq.logging.meters import AverageMeter, StopwatchMeter, TimeMeter
    loss, counts, wps, wall = AverageMeter(round=3), AverageMeter(), TimeMeter(round=1), StopwatchMeter()
    loss.update(torch.tensor(4.47), 112)
    counts.update(np.array([22, 1, 0, 0]))
    wps.update(112)
    meters = [(10, "loss", "AverageMeter", loss.state_dict()),
              (10, "_bleu_counts", "AverageMeter", counts.state_dict()),
              (90, "wps", "TimeMeter", wps.state_dict()),
              (800, "wall", "StopwatchMeter", wall.state_dict())]
    model = collections.OrderedDict((f"encoder.layers.0.fc{i}.weight", torch.randn(4, 4)) for i in (1, 2))
    return {
        "args": None,
        "cfg": {
            "_name": None,
            "common": {"seed": 1, "cpu": True},
            "model": argparse.Namespace(_name="transformer", arch="transformer", encoder_layers=1, dropout=0.1),
            "task": {"_name": "translation", "data": "bin", "eval_bleu": True},
            "criterion": {"_name": "label_smoothed_cross_entropy"},
            "checkpoint": {"best_checkpoint_metric": "loss", "save_dir": "checkpoints"},
        },
        "model": model,
        "criterion": None,
        "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"lr": 0.001}, "num_updates": 3}],
        "task_state": {},
        "extra_state": {
            "metrics": collections.OrderedDict([("valid", meters)]),
            "previous_training_time": 2.5,
            "train_iterator": {"version": 2, "epoch": 2, "iterations_in_epoch": 0, "shuffle": True},
            "val_loss": np.float64(3.899),
            "best": np.float64(3.899),
        },
        "last_optimizer_state": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4, 4)}},
                                 "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], "params": [0, 1]}]},
    }


@pytest.fixture
def fairseq_train_checkpoint(tmp_path):
    from fairseq import checkpoint_utils
    path = str(tmp_path / "checkpoint_best.pt")
    checkpoint_utils.torch_persistent_save(fairseq_train_style_state(), path)
    return path


def test_fairseq_train_checkpoint_loads(fairseq_train_checkpoint, no_force_env):
    from fairseq import checkpoint_utils
    state = checkpoint_utils.load_checkpoint_to_cpu(fairseq_train_checkpoint)  # fairseq-generate's path
    assert state["cfg"].model.arch == "transformer"
    assert float(state["extra_state"]["best"]) == pytest.approx(3.899)
    meters = dict((m[1], m[3]) for m in state["extra_state"]["metrics"]["valid"])
    assert meters["_bleu_counts"]["sum"].tolist() == [22, 1, 0, 0]
    assert torch.equal(state["model"]["encoder.layers.0.fc1.weight"],
                       torch.load(fairseq_train_checkpoint)["model"]["encoder.layers.0.fc1.weight"])


def test_every_allowed_global_is_needed(fairseq_train_checkpoint, no_force_env):
    """Drop any one entry and the fairseq-train-style checkpoint no longer loads."""
    saved = torch.serialization.get_safe_globals()
    try:
        for g in safe_loading.ALLOWED_GLOBALS:
            torch.serialization.clear_safe_globals()
            torch.serialization.add_safe_globals([x for x in saved if x is not g])
            with pytest.raises(pickle.UnpicklingError, match=g.__qualname__):
                torch.load(fairseq_train_checkpoint, weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    torch.load(fairseq_train_checkpoint, weights_only=True)  # restored


def test_released_roberta_style_checkpoint_loads(no_force_env):
    """Released fairseq RoBERTa / XLM-R files keep their hyper-parameters as an ``args`` Namespace."""
    path, _, _ = cf.get("fairseq-roberta")
    state = torch.load(os.path.join(path, "model.pt"))  # plain torch.load, default weights_only
    assert isinstance(state["args"], argparse.Namespace) and state["args"].encoder_layers == cf.LAYERS

"""``s2sft-import --to-fairseq-checkpoint``: a checkpoint as a fairseq checkpoint, zero updates.

The way to decode a published fine-tuned model (e.g. s2s-ft's ``cnndm.unilm1-base-cased.bin``,
read by :mod:`.s2sft_bin`) with ``fairseq-generate`` / ``fairseq-interactive`` and compare: the
``unilm_seq2seq`` model is built exactly as ``fairseq-train --arch unilm_seq2seq
--pretrained-checkpoint PATH`` builds it (fairseq's own argument parser and
``task.build_model``, so every default and the sizes written back into the model config are
the training ones), and its state is saved the way ``fairseq-train`` saves a checkpoint, with
no optimizer state and ``num_updates`` 0. The saved model config records the fine-tuning method
(``--ft-method``: pseudo_masked / masked decode with a ``[MASK]`` slot, as s2s-ft's v2 / v1
models; causal with ``--corruption reference`` is s2s-ft's v0 ``pos_shift``), the segment ids and
the relative position bias, so decoding needs neither the pretrained files nor any flag beyond
the data directory (README, 'Supported checkpoints').
"""
import os
import tempfile

import torch

from .formats import load_pretrained

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fairseq_config(pretrained: str, ft_method: str, corruption: str, max_source_positions: int,
                   max_target_positions: int):
    """The full fairseq config ``fairseq-train`` would build for this model (fairseq's own parser)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    argv = [os.path.dirname(os.path.abspath(pretrained)), "--user-dir", PLUGIN_DIR, "--task", "pseudo_masked_lm",
            "--arch", "unilm_seq2seq", "--criterion", "s2s_label_smoothed_cross_entropy",
            "--pretrained-checkpoint", os.path.abspath(pretrained), "--ft-method", ft_method,
            "--corruption", corruption, "--max-source-positions", str(max_source_positions),
            "--max-target-positions", str(max_target_positions)]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    return convert_namespace_to_omegaconf(args)


def write_fairseq_checkpoint(pretrained: str, out: str, ft_method: str = "pseudo_masked",
                             corruption: str = "paper", max_source_positions: int = 464,
                             max_target_positions: int = 48):
    """Build the model from ``pretrained`` and save it as a fairseq checkpoint at ``out``
    (atomically); returns the model (the import logs what it did, as fairseq-train's does)."""
    from omegaconf import OmegaConf

    from ..tasks.s2s_fine_tuning import S2SFineTuningTask
    dictionary = load_pretrained(pretrained).dictionary
    cfg = fairseq_config(pretrained, ft_method, corruption, max_source_positions, max_target_positions)
    model = S2SFineTuningTask(cfg.task, dictionary).build_model(cfg.model)
    cfg.task.data = None  # nothing of the conversion's placeholder is meant for decoding
    state = {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [{"criterion_name": "S2SLabelSmoothedCrossEntropy",
                               "optimizer_name": "none", "lr_scheduler_state": {}, "num_updates": 0}],
        "task_state": {},
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0, "shuffle": True},
                        "converted_from": os.path.abspath(pretrained)},
        "last_optimizer_state": None,
    }
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(out) + ".", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return model

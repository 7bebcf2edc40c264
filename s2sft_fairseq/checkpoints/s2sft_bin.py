"""s2s-ft's own files: a raw ``.bin`` state dict with ``config.json`` and ``vocab.txt`` beside it.

What the public s2s-ft code (microsoft/unilm, ``s2s-ft/``) reads and writes (README, 'Supported
checkpoints'): a directory with ``pytorch_model.bin`` + ``config.json`` + ``vocab.txt`` (a
fine-tuned ``ckpt-N/`` directory, or a released pretrained checkpoint placed so), or a named
``.bin`` file (e.g. a released fine-tuned ``cnndm.unilm1-base-cased.bin``) with ``config.json``
and ``vocab.txt`` in the same directory. The weights are in the BERT layout (``bert.*``,
``cls.predictions.*``; the fused ``qkv_linear`` + ``q_bias`` / ``v_bias`` layout of raw UniLMv2
checkpoints is read too) with the relative position bias table ``bert.rel_pos_bias.weight`` (or
``bert.encoder.rel_pos_bias.weight``); the config is a ``BertConfig`` / ``UnilmConfig`` /
``BertForSeq2SeqConfig`` dump whose UniLM keys (``rel_pos_bins``, ``max_rel_pos``,
``source_type_id``, ``target_type_id``) the stack follows (:func:`.huggingface.unilm_fields`).

A fine-tuned checkpoint carries tensors that are not model weights; they are skipped by name:

* ``cls.predictions.decoder_weight``: the tied word embedding, registered a second time by the
  reference's LM head (checked equal to ``bert.embeddings.word_embeddings.weight``; a note if not);
* ``crit_mask_lm_smoothed.one_hot``: the label-smoothing buffer of its loss;
* ``crit_mask_lm.*``: its plain loss (no tensors in the released code; named for safety);
* the pooler, the next-sentence head and the MLM output projection of pretrained files.

Any other tensor the stack does not consume is an error (``RenameRules.strict``): every tensor
of the file is reported as consumed or knowingly skipped (``s2sft-import --inspect``). The
tokenizer is ``BertTokenizer(vocab.txt)`` with the casing recorded in the directory
(:mod:`.tokenizers`).
"""
import dataclasses
import json
import os
import re
from typing import Tuple

from . import huggingface
from .common import CheckpointError, PretrainedCheckpoint
from .tokenizers import VOCAB

DESCRIPTION = "s2s-ft's files (pytorch_model.bin, or a named .bin file, with config.json and vocab.txt beside it)"
WEIGHTS = "pytorch_model.bin"
#: config keys only s2s-ft / UniLM configs have (BertForSeq2SeqConfig, UnilmConfig)
S2SFT_CONFIG_KEYS = ("source_type_id", "target_type_id", "rel_pos_bins", "max_rel_pos", "label_smoothing",
                     "fix_word_embedding")

RULES = dataclasses.replace(
    huggingface.RULES,
    output=re.compile(r"cls\.predictions\.(?:decoder\.weight|decoder_weight)"),
    skip=list(huggingface.RULES.skip) + [
        (r"^crit_mask_lm_smoothed\.one_hot$", "the label-smoothing buffer of s2s-ft's loss (LabelSmoothingLoss.one_hot)"),
        (r"^crit_mask_lm\.", "s2s-ft's loss module"),
    ],
    strict=True,
)


def _config(folder: str) -> dict:
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def recognises(path: str) -> bool:
    """A ``.bin`` file, or a directory with ``pytorch_model.bin`` (no safetensors), ``config.json``
    and ``vocab.txt`` whose config is UniLM's / s2s-ft's (``model_type`` ``unilm`` or none, or an
    s2s-ft key) or whose tokenizer is a bare ``vocab.txt`` (no Hugging Face tokenizer files)."""
    if os.path.isfile(path):
        return path.endswith(".bin")
    names = ("config.json", WEIGHTS, VOCAB)
    if not os.path.isdir(path) or not all(os.path.isfile(os.path.join(path, n)) for n in names):
        return False
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return False
    cfg = _config(path)
    hf_tokenizer = any(os.path.exists(os.path.join(path, n)) for n in ("tokenizer.json", "tokenizer_config.json"))
    return (cfg.get("model_type") or "unilm") == "unilm" or any(k in cfg for k in S2SFT_CONFIG_KEYS) or not hf_tokenizer


def files(path: str) -> Tuple[str, str]:
    """``(weights file, directory with config.json and vocab.txt)`` of a path this format recognises."""
    folder = os.path.dirname(os.path.abspath(path)) if os.path.isfile(path) else path
    weights = path if os.path.isfile(path) else os.path.join(path, WEIGHTS)
    for name, why in (("config.json", "the model's sizes and its UniLM keys"),
                      (VOCAB, "the WordPiece vocabulary the reference tokenizes with")):
        if not os.path.isfile(os.path.join(folder, name)):
            raise CheckpointError(f"{weights}: s2s-ft weights need {name} beside them ({why}); "
                                  f"put it into {folder}")
    return weights, folder


def load(path: str) -> PretrainedCheckpoint:
    """Read s2s-ft's files (module docstring) into stack names, every tensor accounted for."""
    weights, folder = files(path)
    raw = huggingface.read_bin(weights)
    ck = huggingface.build_checkpoint(folder, raw, weights, RULES, family_prefix="s2s-ft ")
    ck.path = path
    return ck

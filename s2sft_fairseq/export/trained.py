"""A fine-tuned fairseq checkpoint as the exporter sees it (``checkpoint_*.pt`` of fairseq-train).

Everything comes from the checkpoint itself and the files its saved config points at: the
architecture (``cfg.model._name``), the stack sizes the importer wrote back into the model config
(:func:`s2sft_fairseq.models.warm_start.build_stack_from_config`), the fine-tuning method
(:func:`~s2sft_fairseq.models.warm_start.resolve_method`), the weights, and the tokenizer the
data was prepared with (``--tokenizer``, else the task's ``tokenizer_dir``, ``DATA/pretrained.json``
or the pretrained checkpoint directory). The tokenizer's vocabulary must be the model's
dictionary row for row (:mod:`s2sft_fairseq.checkpoints.vocab`); when the data directory is still
there its ``dict.src.txt`` is checked against it.
"""
import json
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Dict, List, Optional

import torch

from ..checkpoints.common import expected_shapes
from ..checkpoints.huggingface import FAMILIES
from ..checkpoints.vocab import CheckpointDictionary, check_dictionary_matches, dictionary_from_tokenizer, load_task_dictionary
from ..errors import S2SFTError
from ..modules.bert_stack import StackConfig
from ..packing import Method
from ..safe_loading import safe_torch_load

#: the model names (``cfg.model`` of fairseq's ``ARCH_MODEL_NAME_REGISTRY``) the exporter knows
ARCHITECTURES = ("unilm_seq2seq", "bert2bert")


class ExportError(S2SFTError):
    """A checkpoint that cannot be exported, with what is wrong and where."""


@dataclass
class TrainedCheckpoint:
    path: str
    cfg: Dict[str, dict]          # the saved fairseq config, group -> fields
    arch: str                     # the --arch as trained, e.g. unilm_seq2seq_tiny
    model_name: str               # one of ARCHITECTURES
    state: Dict[str, torch.Tensor]
    stack: StackConfig
    method: Method
    tokenizer_dir: str
    model_type: str               # the Hugging Face model_type of the family
    tokenizer: object = None
    dictionary: Optional[CheckpointDictionary] = None
    notes: List[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # num_updates, epoch, best, val_loss

    @property
    def model(self) -> dict:
        return self.cfg.get("model") or {}

    @property
    def task(self) -> dict:
        return self.cfg.get("task") or {}

    @property
    def num_updates(self) -> Optional[int]:
        return self.meta.get("num_updates")

    def tensors(self, prefix: str) -> Dict[str, torch.Tensor]:
        """The weights under ``prefix`` (e.g. ``stack.``), with the prefix removed."""
        return {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}


def read_checkpoint(path: str, tokenizer_dir: str = "", model_type: str = "", data: str = "") -> TrainedCheckpoint:
    """Read and check a fine-tuned checkpoint; ``tokenizer_dir`` / ``model_type`` / ``data``
    override what its config records."""
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no such checkpoint file")
    state = safe_torch_load(path, error=ExportError)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or not isinstance(state.get("cfg"), dict):
        raise ExportError(f"{path}: not a fairseq checkpoint (expected a dictionary with 'model' and 'cfg', "
                          "as fairseq-train writes checkpoint_*.pt)")
    cfg = state["cfg"]
    arch, model_name = _architecture(cfg, path)
    if data:
        cfg.setdefault("task", {})["data"] = data
    method, stack = _method_and_stack(cfg, state["model"], path)
    tokenizer_dir = _tokenizer_dir(cfg, tokenizer_dir, path)
    ck = TrainedCheckpoint(path=path, cfg=cfg, arch=arch, model_name=model_name, state=state["model"],
                           stack=stack, method=method, tokenizer_dir=tokenizer_dir,
                           model_type=_model_type(tokenizer_dir, model_type, path))
    history = state.get("optimizer_history") or [{}]
    extra = state.get("extra_state") or {}
    ck.meta = {"num_updates": history[-1].get("num_updates"), "epoch": (extra.get("train_iterator") or {}).get("epoch"),
               "best": extra.get("best"), "val_loss": extra.get("val_loss")}
    _load_vocabulary(ck)
    return ck


def _architecture(cfg: dict, path: str):
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY
    arch = (cfg.get("model") or {}).get("_name")
    if not arch:
        raise ExportError(f"{path}: the checkpoint's config names no model architecture (cfg.model._name)")
    model_name = ARCH_MODEL_NAME_REGISTRY.get(arch, arch)
    if model_name not in ARCHITECTURES:
        raise ExportError(f"{path}: architecture {arch!r} cannot be exported; s2sft-export knows "
                          f"{', '.join(ARCHITECTURES)} (the models of this plugin)")
    return arch, model_name


def _method_and_stack(cfg: dict, weights: Dict[str, torch.Tensor], path: str):
    from ..models.warm_start import _stack_config, resolve_method
    model = dict(cfg.get("model") or {})
    if "ft_method" not in model and "decoding_method" in model:  # configs of s2sft-fairseq 0.1
        model["ft_method"] = model["decoding_method"]
    task = SimpleNamespace(cfg=SimpleNamespace(**(cfg.get("task") or {})))
    method = resolve_method(SimpleNamespace(**model), task)
    words = [v for k, v in weights.items() if k.endswith("embeddings.word.weight")]
    if not words:
        raise ExportError(f"{path}: the checkpoint has no word embeddings ('...embeddings.word.weight')")
    stack = _stack_config(SimpleNamespace(**model), words[0].size(0), 0)
    return method, stack


def _tokenizer_dir(cfg: dict, given: str, path: str) -> str:
    from ..tasks.s2s_fine_tuning import S2SFineTuningTask
    task = cfg.get("task") or {}
    found = given or S2SFineTuningTask.resolve_tokenizer_dir(
        SimpleNamespace(cfg=SimpleNamespace(tokenizer_dir=task.get("tokenizer_dir", ""), data=task.get("data"))))
    pretrained = (cfg.get("model") or {}).get("pretrained_checkpoint") or ""
    if not found and os.path.isfile(os.path.join(pretrained, "config.json")):
        found = pretrained
    if not found:
        raise ExportError(f"{path}: no Hugging Face tokenizer recorded (task tokenizer_dir, DATA/pretrained.json, "
                          "or a pretrained checkpoint directory); give one with --tokenizer DIR")
    if not os.path.isdir(found):
        raise ExportError(f"tokenizer directory {found!r} (recorded for {path}) does not exist on this machine; "
                          "give the directory of the tokenizer the data was prepared with: --tokenizer DIR")
    return found


def _model_type(tokenizer_dir: str, given: str, path: str) -> str:
    """The family's Hugging Face ``model_type``: given, or the tokenizer directory's config.json."""
    if not given:
        config = os.path.join(tokenizer_dir, "config.json")
        if not os.path.isfile(config):
            raise ExportError(f"{tokenizer_dir}: no config.json to tell the model family of {path}; "
                              "give it with --model-type (bert, roberta, xlm-roberta, camembert, electra)")
        with open(config, encoding="utf-8") as f:
            given = json.load(f).get("model_type", "bert")
    if given not in FAMILIES:
        raise ExportError(f"model type {given!r} is not one s2sft-export writes; expected one of "
                          f"{', '.join(sorted(FAMILIES))}")
    return "bert" if given == "unilm" else given  # UniLM checkpoints are BERT-layout models


def _load_vocabulary(ck: TrainedCheckpoint) -> None:
    """The tokenizer, the dictionary it gives (padded to the embedding's rows), and the check
    against the data directory's dictionary when it is still there."""
    from transformers import AutoTokenizer
    try:
        ck.tokenizer = AutoTokenizer.from_pretrained(ck.tokenizer_dir, local_files_only=True)
    except Exception as e:
        raise ExportError(f"{ck.tokenizer_dir}: cannot load the tokenizer ({type(e).__name__}: {e})") from e
    ck.dictionary = dictionary_from_tokenizer(ck.tokenizer, num_embeddings=ck.stack.vocab_size)
    ck.stack.pad_idx = ck.dictionary.pad()
    data = ck.task.get("data") or ""
    dict_path = os.path.join(data.split(os.pathsep)[0], f"dict.{ck.task.get('source_lang', 'src')}.txt") if data else ""
    if dict_path and os.path.isfile(dict_path):
        check_dictionary_matches(load_task_dictionary(dict_path), ck.dictionary,
                                 where=f"{dict_path} (the training data) vs the tokenizer in {ck.tokenizer_dir}")
    else:
        ck.notes.append(f"the training data's dictionary ({dict_path or 'no data directory recorded'}) is not on this "
                        f"machine: the vocabulary is the tokenizer's ({ck.tokenizer_dir}), row for row")


def check_stack_tensors(weights: Dict[str, torch.Tensor], sc: StackConfig, where: str, role: str,
                        skip: str = "") -> None:
    """``weights`` are exactly the tensors of a stack with config ``sc`` (names and shapes), those
    starting with ``skip`` aside (bert2bert's encoder has no MLM head)."""
    expected = {k: v for k, v in expected_shapes(sc).items() if not (skip and k.startswith(skip))}
    missing = [n for n in expected if n not in weights]
    extra = [n for n in weights if n not in expected]
    if missing or extra:
        raise ExportError(f"{where}: the {role} does not match the stack its config describes "
                          f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise ExportError(f"{where}: tensor {role}.{name} has shape {tuple(weights[name].shape)}, but the "
                              f"checkpoint's config implies {shape}")

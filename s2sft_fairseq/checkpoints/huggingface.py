"""Hugging Face checkpoint directories: ``config.json`` + weights + tokenizer files.

The one place that knows the Hugging Face layouts (README, 'Supported checkpoints'; the
pretrained encoders s2s-ft fine-tunes, §3.3 and §3.5). A directory holds ``config.json``, the
weights (``model.safetensors``, preferred, or ``pytorch_model.bin``, read with
:func:`..safe_loading.safe_torch_load`) and the tokenizer, which gives the dictionary
(:func:`.vocab.dictionary_from_tokenizer`). Supported layouts:

* BERT: ``bert.`` prefix, ``cls.predictions`` MLM head (TF-era ``LayerNorm.gamma`` / ``.beta``
  names are read too);
* RoBERTa / CamemBERT and XLM-RoBERTa: ``roberta.`` prefix, ``lm_head``; the position table's
  leading ``pad_token_id + 1`` rows (the padding offset) are dropped so that positions start at 0;
* ELECTRA: ``electra.`` prefix, narrow embeddings projected to the hidden size
  (``embeddings_project``); the discriminator has no MLM head (its ``discriminator_predictions``
  are dropped), the generator's is ``generator_predictions`` + ``generator_lm_head``;
* MiniLM / sentence-transformers BERT: no prefix, no MLM head;
* UniLMv2-style: the BERT layout with fused ``attention.self.qkv_linear`` (or ``qkv``) weights,
  and either a fused bias or ``q_bias`` / ``v_bias`` (the key has no bias: zeros); a ``unilm.``,
  ``model.`` or ``encoder_model.`` prefix is accepted too.

The pooler, NSP (``cls.seq_relationship``), classifier / QA heads and buffers (``position_ids``)
are dropped. The MLM output projection is not kept: the stack ties it to the word embeddings.
RoBERTa's, XLM-R's and ELECTRA's MLM heads apply GELU whatever ``hidden_act`` says; the stack
config records that (``head_act``). Refused with a :class:`.common.CheckpointError`: other
``model_type`` values, relative position embeddings (config or tensor), sharded checkpoints.
"""
import json
import os
import re
from typing import Dict, Tuple

import torch

from ..modules.bert_stack import StackConfig, activation
from ..safe_loading import safe_torch_load
from .common import (
    CheckpointError, PretrainedCheckpoint, Renamed, RenameRules, finish_import, rename_tensors,
    skip_padding_positions,
)
from .vocab import dictionary_from_tokenizer

DESCRIPTION = "a Hugging Face directory with config.json"

#: ``model_type`` -> the family the importer reports
FAMILIES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "xlm-roberta",
            "electra": "electra", "unilm": "unilm", "camembert": "roberta"}
#: families whose MLM head applies GELU whatever hidden_act is (transformers' RobertaLMHead /
#: ElectraGeneratorPredictions); BERT's and UniLM's use hidden_act
_GELU_HEAD = ("roberta", "xlm-roberta", "electra")

RULES = RenameRules(
    strip=re.compile(r"^(?:bert|roberta|electra|unilm|model|encoder_model)\."),
    rules=[
        (r"embeddings\.word_embeddings\.weight", "embeddings.word.weight"),
        (r"embeddings\.position_embeddings\.weight", "embeddings.position.weight"),
        (r"embeddings\.token_type_embeddings\.weight", "embeddings.token_type.weight"),
        (r"embeddings\.LayerNorm\.(weight|bias)", r"embeddings.layer_norm.\1"),
        (r"embeddings_project\.(weight|bias)", r"embeddings.project.\1"),
        (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)", r"layers.\1.\2.\3"),
        (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"layers.\1.attn_out.\2"),
        (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias)", r"layers.\1.attn_layer_norm.\2"),
        (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"layers.\1.ffn_in.\2"),
        (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"layers.\1.ffn_out.\2"),
        (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)", r"layers.\1.ffn_layer_norm.\2"),
        # MLM heads: BERT, RoBERTa/XLM-R, ELECTRA generator
        (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"lm_head.dense.\1"),
        (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", r"lm_head.layer_norm.\1"),
        (r"cls\.predictions\.(?:decoder\.)?bias", "lm_head.bias"),
        (r"lm_head\.dense\.(weight|bias)", r"lm_head.dense.\1"),
        (r"lm_head\.layer_norm\.(weight|bias)", r"lm_head.layer_norm.\1"),
        (r"lm_head\.(?:decoder\.)?bias", "lm_head.bias"),
        (r"generator_predictions\.dense\.(weight|bias)", r"lm_head.dense.\1"),
        (r"generator_predictions\.LayerNorm\.(weight|bias)", r"lm_head.layer_norm.\1"),
        (r"generator_lm_head\.bias", "lm_head.bias"),
    ],
    drop=re.compile(
        r"(pooler\.|cls\.seq_relationship|discriminator_predictions|position_ids|token_type_ids"
        r"|cls\.predictions\.decoder\.weight|lm_head\.decoder\.weight|generator_lm_head\.weight"
        r"|classifier\.|qa_outputs\.)"),
    output=re.compile(r"(cls\.predictions\.decoder|lm_head\.decoder|generator_lm_head)\.weight"),
    tf_layer_norm_names=True,
)
# UniLMv2-style attention: one fused q/k/v projection per layer, or separate q / v biases
_FUSED_QKV = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(qkv_linear|qkv)\.(weight|bias)")
_SPLIT_BIAS = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(q_bias|v_bias)")


def recognises(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json"))


def load(path: str) -> PretrainedCheckpoint:
    """Read a Hugging Face directory (no network) into stack names, checked against its config."""
    cfg_path = os.path.join(path, "config.json")
    sc, family, offset = stack_config(_read_config(cfg_path), cfg_path)
    raw, weights_file = read_weights(path)
    renamed = map_state_dict(raw, weights_file)
    skip_padding_positions(renamed, offset, "RoBERTa padding offset")
    ck = PretrainedCheckpoint(sc, renamed.mapped, None, family, path,
                              has_lm_head="lm_head.dense.weight" in renamed.mapped, tokenizer_dir=path,
                              sources=renamed.sources, weights_file=weights_file)
    finish_import(ck, renamed, cfg_path)
    if family in _GELU_HEAD:
        sc.head_act = "gelu"
    ck.dictionary = dictionary_from_tokenizer(_load_tokenizer(path), num_embeddings=sc.vocab_size)
    sc.pad_idx = ck.dictionary.pad()
    return ck


# --------------------------------------------------------------------------- config
def _read_config(cfg_path: str) -> dict:
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: cannot read config ({e})") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path}: not a model config")
    return cfg


def stack_config(cfg: dict, where: str) -> Tuple[StackConfig, str, int]:
    """The stack a ``config.json`` describes, the family, and the position table's padding offset."""
    model_type = cfg.get("model_type", "bert")
    family = FAMILIES.get(model_type)
    if family is None:
        raise CheckpointError(f"{where}: model_type {model_type!r} is not a supported bidirectional encoder "
                              f"(supported: {', '.join(sorted(FAMILIES))})")
    pet = cfg.get("position_embedding_type", "absolute")
    if pet != "absolute" or cfg.get("rel_pos_bins") or cfg.get("max_rel_pos"):
        raise CheckpointError(f"{where}: relative position embeddings ({pet!r}/rel_pos_bins) are not "
                              "implemented yet; only absolute positions are supported")

    def need(key):
        if cfg.get(key) is None:
            raise CheckpointError(f"{where}: config has no {key!r}")
        return cfg[key]

    if family in ("roberta", "xlm-roberta"):
        pad = cfg.get("pad_token_id")
        offset = (1 if pad is None else pad) + 1  # RoBERTa position ids start after the pad row
    else:
        offset = 0
    hidden = need("hidden_size")
    act = cfg.get("hidden_act", "gelu")
    try:
        activation(act)
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from e
    sc = StackConfig(
        vocab_size=need("vocab_size"),
        hidden_size=hidden,
        num_layers=need("num_hidden_layers"),
        num_heads=need("num_attention_heads"),
        intermediate_size=need("intermediate_size"),
        max_positions=need("max_position_embeddings") - offset,
        type_vocab_size=cfg.get("type_vocab_size", 2),
        embedding_size=cfg.get("embedding_size") if cfg.get("embedding_size") not in (None, hidden) else None,
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        hidden_act=act,
        dropout=cfg.get("hidden_dropout_prob", 0.1),
        attention_dropout=cfg.get("attention_probs_dropout_prob", 0.1),
        pad_idx=cfg.get("pad_token_id", 0) or 0,
    )
    if hidden % sc.num_heads:
        raise CheckpointError(f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {sc.num_heads}")
    return sc, family, offset


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load the checkpoint's tokenizer ({e})") from e


# --------------------------------------------------------------------------- weights
def read_weights(path: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """The tensors of a Hugging Face directory and the file they came from (safetensors first)."""
    st = os.path.join(path, "model.safetensors")
    bin_ = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(st):
        from safetensors.torch import load_file
        try:
            return load_file(st), st
        except Exception as e:  # corrupt / truncated file
            raise CheckpointError(f"{st}: cannot read the safetensors file, it is truncated or corrupt "
                                  f"({type(e).__name__}: {e})") from e
    if os.path.exists(bin_):
        state = safe_torch_load(bin_, error=CheckpointError)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{bin_}: expected a dictionary of tensors")
        return state, bin_
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if os.path.exists(os.path.join(path, name)):
            raise CheckpointError(f"{path}: sharded checkpoints ({name}) are not supported; "
                                  "save the model as a single file")
    raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in this directory")


def map_state_dict(raw: Dict[str, torch.Tensor], where: str) -> Renamed:
    """Rename a Hugging Face state dict into stack names (:data:`RULES`), fused q/k/v split."""
    plain, fused = {}, {}
    for key, tensor in raw.items():
        local = RULES.local_name(key)
        m = _FUSED_QKV.fullmatch(local) or _SPLIT_BIAS.fullmatch(local)
        if m:
            part = m.group(3) if m.re is _FUSED_QKV else m.group(2)  # weight / bias / q_bias / v_bias
            fused.setdefault(int(m.group(1)), {})[part] = (key, tensor)
        else:
            plain[key] = tensor
    renamed = rename_tensors(plain, RULES, where)
    for layer, parts in sorted(fused.items()):
        _split_fused_qkv(renamed, layer, parts, where)
    return renamed


def _split_fused_qkv(renamed: Renamed, layer: int, parts: Dict[str, tuple], where: str) -> None:
    """One layer's fused ``qkv`` weight (+ fused bias, or UniLMv2's ``q_bias`` / ``v_bias``) as the
    stack's separate query / key / value projections."""
    if "weight" not in parts:
        names = ", ".join(repr(n) for n, _ in parts.values())
        raise CheckpointError(f"{where}: layer {layer} has {names} but no fused qkv weight")
    wkey, w = parts["weight"]
    if w.dim() != 2 or w.size(0) % 3:
        raise CheckpointError(f"{where}: fused q/k/v tensor {wkey!r} has shape {tuple(w.shape)}; "
                              "expected (3 * hidden, hidden)")
    width = w.size(0) // 3
    for name, chunk in zip(("query", "key", "value"), w.chunk(3, dim=0)):
        renamed.put(f"layers.{layer}.{name}.weight", chunk.clone(), f"{wkey}[{name}]")
    if "bias" in parts:
        bkey, b = parts["bias"]
        if b.dim() != 1 or b.size(0) != 3 * width:
            raise CheckpointError(f"{where}: fused q/k/v bias {bkey!r} has shape {tuple(b.shape)}; "
                                  f"expected ({3 * width},)")
        for name, chunk in zip(("query", "key", "value"), b.chunk(3, dim=0)):
            renamed.put(f"layers.{layer}.{name}.bias", chunk.clone(), f"{bkey}[{name}]")
        return
    # UniLMv2 / BEiT style: q and v carry biases, k has none (zero)
    for name, part in (("query", "q_bias"), ("key", None), ("value", "v_bias")):
        if part in parts:
            src, t = parts[part]
        else:
            src, t = "(no bias in the checkpoint: zeros)", torch.zeros(width, dtype=w.dtype)
        renamed.put(f"layers.{layer}.{name}.bias", t, src)

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
* UniLM / UniLMv2-style (``model_type`` ``unilm``, or ``bert`` with UniLM keys): the BERT layout,
  optionally with fused ``attention.self.qkv_linear`` (or ``qkv``) weights and either a fused
  bias or ``q_bias`` / ``v_bias`` (the key has no bias: zeros); a ``unilm.``, ``model.`` or
  ``encoder_model.`` prefix is accepted too. The relative position bias of UniLMv2 (config
  ``rel_pos_bins`` / ``max_rel_pos``; one table ``(heads, rel_pos_bins)`` shared by all layers,
  ``bert.rel_pos_bias.weight`` as s2s-ft saves it or ``bert.encoder.rel_pos_bias.weight`` as the
  raw fused checkpoints name it) and the segment ids ``source_type_id`` / ``target_type_id`` of
  UniLM configs (``type_vocab_size`` up to 6; UniLM v1 uses 4 / 5) are read into the stack config.

The pooler, NSP (``cls.seq_relationship``), classifier / QA heads and buffers (``position_ids``)
are skipped, each with its reason (``PretrainedCheckpoint.skipped``). The MLM output projection is
not kept: the stack ties it to the word embeddings. RoBERTa's, XLM-R's and ELECTRA's MLM heads
apply GELU whatever ``hidden_act`` says; the stack config records that (``head_act``). The
tokenizer is read by :func:`.tokenizers.load_checkpoint_tokenizer`. Refused with a
:class:`.common.CheckpointError`: other ``model_type`` values, other kinds of relative positions
(``position_embedding_type`` ``relative_key``, per-layer tables), a bias table and a config that
disagree, sharded checkpoints. s2s-ft's own files (a raw ``pytorch_model.bin`` + ``vocab.txt``)
are :mod:`.s2sft_bin`, which reuses this module's reading with stricter rules.
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
from .tokenizers import load_checkpoint_tokenizer, vocabulary_notes
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
        # UniLMv2's relative position bias: s2s-ft's name, and the raw fused checkpoints' one
        (r"(?:encoder\.)?rel_pos_bias\.weight", "rel_pos_bias.weight"),
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
    skip=[
        (r"^pooler\.", "the pooler (sentence classification), not used for generation"),
        (r"^cls\.seq_relationship\.", "the next-sentence-prediction head"),
        (r"^discriminator_predictions\.", "ELECTRA's replaced-token-detection head"),
        (r"(^|\.)(position_ids|token_type_ids)$", "an index buffer, not a weight"),
        (r"^(classifier|qa_outputs)\.", "a task head (classification / question answering)"),
    ],
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
    raw, weights_file = read_weights(path)
    exported_rel_pos_bias(path, raw)
    return build_checkpoint(path, raw, weights_file, RULES)


EXPORTED_REL_POS = "rel_pos_bias.weight"


def exported_rel_pos_bias(folder: str, raw: Dict[str, torch.Tensor]) -> None:
    """A model exported by ``s2sft-export`` keeps its relative position bias table in
    ``config.json`` (``s2sft.rel_pos_bias``: the stock masked-LM classes would call it an unexpected
    weight); put it with the tensors, where the renaming rules find it like a checkpoint's own."""
    extra = read_config(os.path.join(folder, "config.json")).get("s2sft")
    table = extra.get("rel_pos_bias") if isinstance(extra, dict) else None
    if table is None or any("rel_pos_bias" in k for k in raw):
        return
    raw[EXPORTED_REL_POS] = torch.tensor(table, dtype=torch.float32)


def build_checkpoint(folder: str, raw: Dict[str, torch.Tensor], weights_file: str, rules: RenameRules,
                     family_prefix: str = "") -> PretrainedCheckpoint:
    """A checkpoint from ``folder``'s ``config.json`` and tokenizer and the tensors ``raw`` read from
    ``weights_file``, renamed with ``rules`` and checked (shared with :mod:`.s2sft_bin`)."""
    cfg_path = os.path.join(folder, "config.json")
    sc, family, offset = stack_config(read_config(cfg_path), cfg_path)
    renamed = map_state_dict(raw, weights_file, rules)
    skip_padding_positions(renamed, offset, "RoBERTa padding offset")
    ck = PretrainedCheckpoint(sc, renamed.mapped, None, family_prefix + family, folder,
                              has_lm_head="lm_head.dense.weight" in renamed.mapped, tokenizer_dir=folder,
                              sources=renamed.sources, weights_file=weights_file)
    finish_import(ck, renamed, cfg_path)
    if family in _GELU_HEAD:
        sc.head_act = "gelu"
    ck.dictionary = dictionary_from_tokenizer(load_checkpoint_tokenizer(folder), num_embeddings=sc.vocab_size)
    ck.notes += vocabulary_notes(folder)
    sc.pad_idx = ck.dictionary.pad()
    return ck


# --------------------------------------------------------------------------- config
def read_config(cfg_path: str) -> dict:
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
    # UniLM's own configs (s2s-ft's UnilmConfig) may record no model_type, or an empty one
    model_type = cfg.get("model_type") or "bert"
    family = FAMILIES.get(model_type)
    if family is None:
        raise CheckpointError(f"{where}: model_type {model_type!r} is not a supported bidirectional encoder "
                              f"(supported: {', '.join(sorted(FAMILIES))})")
    pet = cfg.get("position_embedding_type") or "absolute"
    if pet != "absolute":
        raise CheckpointError(f"{where}: position_embedding_type {pet!r} is not supported; absolute positions "
                              "are, optionally with UniLMv2's relative position bias (rel_pos_bins / max_rel_pos)")

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
        type_vocab_size=cfg.get("type_vocab_size", 2),  # checked by unilm_fields
        embedding_size=cfg.get("embedding_size") if cfg.get("embedding_size") not in (None, hidden) else None,
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        hidden_act=act,
        dropout=cfg.get("hidden_dropout_prob", 0.1),
        attention_dropout=cfg.get("attention_probs_dropout_prob", 0.1),
        pad_idx=cfg.get("pad_token_id", 0) or 0,
        **unilm_fields(cfg, where),
    )
    if hidden % sc.num_heads:
        raise CheckpointError(f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {sc.num_heads}")
    return sc, family, offset


def unilm_fields(cfg: dict, where: str) -> dict:
    """The UniLM keys of a config (s2s-ft's ``BertForSeq2SeqConfig`` / ``UnilmConfig``), checked:
    the relative position bias (``rel_pos_bins`` buckets up to ``max_rel_pos``; 0 = none) and the
    segment ids of source and target (0 / 1 when absent)."""
    def integer(key, default):
        value = cfg.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{where}: {key} is {value!r}; expected a non-negative integer")
        return value

    bins, max_rel = integer("rel_pos_bins", 0), integer("max_rel_pos", 0)
    if bins and (bins < 4 or max_rel <= bins // 4):
        raise CheckpointError(
            f"{where}: rel_pos_bins {bins} / max_rel_pos {max_rel}: the relative position bias needs "
            f"rel_pos_bins >= 4 and max_rel_pos > rel_pos_bins / 4 (e.g. 32 / 128)")
    types = integer("type_vocab_size", 2)
    src, tgt = integer("source_type_id", 0), integer("target_type_id", 1)
    if types >= 2 and max(src, tgt) >= types:
        raise CheckpointError(f"{where}: source_type_id {src} / target_type_id {tgt} do not exist with "
                              f"type_vocab_size {types}")
    return dict(rel_pos_bins=bins, max_rel_pos=max_rel if bins else 0, source_type_id=src, target_type_id=tgt)


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
        return read_bin(bin_), bin_
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if os.path.exists(os.path.join(path, name)):
            raise CheckpointError(f"{path}: sharded checkpoints ({name}) are not supported; "
                                  "save the model as a single file")
    raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in this directory")


def read_bin(path: str) -> Dict[str, torch.Tensor]:
    """A pickled state dict (``pytorch_model.bin``), read weights-only."""
    state = safe_torch_load(path, error=CheckpointError)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dictionary of tensors")
    return state


def map_state_dict(raw: Dict[str, torch.Tensor], where: str, rules: RenameRules = RULES) -> Renamed:
    """Rename a Hugging Face state dict into stack names (``rules``), fused q/k/v split."""
    plain, fused = {}, {}
    for key, tensor in raw.items():
        local = rules.local_name(key)
        m = _FUSED_QKV.fullmatch(local) or _SPLIT_BIAS.fullmatch(local)
        if m:
            part = m.group(3) if m.re is _FUSED_QKV else m.group(2)  # weight / bias / q_bias / v_bias
            fused.setdefault(int(m.group(1)), {})[part] = (key, tensor)
        else:
            plain[key] = tensor
    renamed = rename_tensors(plain, rules, where)
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
        renamed.put(f"layers.{layer}.{name}.weight", chunk.clone(), f"{wkey}[{name}]", key=wkey)
    if "bias" in parts:
        bkey, b = parts["bias"]
        if b.dim() != 1 or b.size(0) != 3 * width:
            raise CheckpointError(f"{where}: fused q/k/v bias {bkey!r} has shape {tuple(b.shape)}; "
                                  f"expected ({3 * width},)")
        for name, chunk in zip(("query", "key", "value"), b.chunk(3, dim=0)):
            renamed.put(f"layers.{layer}.{name}.bias", chunk.clone(), f"{bkey}[{name}]", key=bkey)
        return
    # UniLMv2 / BEiT style: q and v carry biases (stored flat or with leading 1-dims), k has none (zero)
    for name, part in (("query", "q_bias"), ("key", None), ("value", "v_bias")):
        if part in parts:
            src, t = parts[part]
            if t.numel() != width:
                raise CheckpointError(f"{where}: {src!r} has shape {tuple(t.shape)}; expected ({width},)")
            renamed.put(f"layers.{layer}.{name}.bias", t.reshape(width), src)
        else:
            renamed.make(f"layers.{layer}.{name}.bias", torch.zeros(width, dtype=w.dtype),
                         "(no bias in the checkpoint: zeros)")

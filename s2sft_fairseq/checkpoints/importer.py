"""Import pretrained bidirectional Transformers into :class:`BertStack` (DESIGN §4).

Formats:

* Hugging Face directories (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
  tokenizer files): BERT, RoBERTa, XLM-RoBERTa, ELECTRA discriminator / generator, MiniLM and
  sentence-transformers BERT layouts (no ``bert.`` prefix, no MLM head), UniLMv2-style
  checkpoints with fused q/k/v (absolute positions only: relative position bias is refused).
* fairseq RoBERTa / XLM-R: a directory (or the ``model.pt`` in it) with ``model.pt`` + ``dict.txt``.

Everything maps into the stack's own parameter names; pooler, NSP and discriminator heads are
dropped. Position tables that carry a padding offset (RoBERTa's two leading rows) are sliced so
that our position ids start at 0. Safetensors is preferred; pickles are read with
``weights_only=True``.
"""
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from ..modules.bert_stack import BertStack, StackConfig
from .vocab import CheckpointDictionary, dictionary_from_tokenizer

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A pretrained checkpoint that cannot be imported, with what is wrong and where."""


@dataclass
class PretrainedCheckpoint:
    config: StackConfig
    state_dict: Dict[str, torch.Tensor]
    dictionary: CheckpointDictionary
    family: str
    path: str
    has_lm_head: bool
    tokenizer_dir: Optional[str] = None
    notes: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------- names
_HF_PREFIXES = ("bert.", "roberta.", "electra.", "unilm.", "model.", "encoder_model.")
_HF_RULES = [
    (r"embeddings\.word_embeddings\.weight", "embeddings.word.weight"),
    (r"embeddings\.position_embeddings\.weight", "embeddings.position.weight"),
    (r"embeddings\.token_type_embeddings\.weight", "embeddings.token_type.weight"),
    (r"embeddings\.LayerNorm\.(weight|bias|gamma|beta)", r"embeddings.layer_norm.\1"),
    (r"embeddings_project\.(weight|bias)", r"embeddings.project.\1"),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)", r"layers.\1.\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"layers.\1.attn_out.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias|gamma|beta)", r"layers.\1.attn_layer_norm.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"layers.\1.ffn_in.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"layers.\1.ffn_out.\2"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias|gamma|beta)", r"layers.\1.ffn_layer_norm.\2"),
    # MLM heads: BERT, RoBERTa/XLM-R, ELECTRA generator
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"lm_head.dense.\1"),
    (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias|gamma|beta)", r"lm_head.layer_norm.\1"),
    (r"cls\.predictions\.(?:decoder\.)?bias", "lm_head.bias"),
    (r"lm_head\.dense\.(weight|bias)", r"lm_head.dense.\1"),
    (r"lm_head\.layer_norm\.(weight|bias)", r"lm_head.layer_norm.\1"),
    (r"lm_head\.(?:decoder\.)?bias", "lm_head.bias"),
    (r"generator_predictions\.dense\.(weight|bias)", r"lm_head.dense.\1"),
    (r"generator_predictions\.LayerNorm\.(weight|bias)", r"lm_head.layer_norm.\1"),
    (r"generator_lm_head\.bias", "lm_head.bias"),
]
_HF_DROP = re.compile(
    r"(pooler\.|cls\.seq_relationship|discriminator_predictions|position_ids|token_type_ids"
    r"|cls\.predictions\.decoder\.weight|lm_head\.decoder\.weight|generator_lm_head\.weight"
    r"|classifier\.|qa_outputs\.)"
)
_FUSED_QKV = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(qkv_linear|qkv)\.(weight|bias)")
_SPLIT_BIAS = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(q_bias|v_bias)")
_REL_POS = re.compile(r"rel_pos|relative_attention_bias|rel_pos_bias")


def _rename(key: str) -> str:
    key = key.replace(".gamma", ".weight").replace(".beta", ".bias") if key.endswith((".gamma", ".beta")) else key
    for pat, rep in _HF_RULES:
        if re.fullmatch(pat, key):
            return re.sub(pat, rep, key)
    return None


def map_hf_state_dict(raw: Dict[str, torch.Tensor], where: str) -> (Dict[str, torch.Tensor], List[str]):
    """Rename a Hugging Face state dict into stack names; returns (mapped, ignored keys)."""
    out, ignored = {}, []
    fused = {}
    for key, tensor in raw.items():
        k = key
        for p in _HF_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        if _REL_POS.search(k):
            raise CheckpointError(
                f"{where}: tensor {key!r} is a relative position bias (UniLMv2 / relative "
                "positions). s2sft-fairseq supports absolute positions only; relative position "
                "bias is not implemented yet (see README, 'Supported checkpoints')."
            )
        m = _FUSED_QKV.fullmatch(k) or _SPLIT_BIAS.fullmatch(k)
        if m:
            fused.setdefault(int(m.group(1)), {})[m.group(0).rsplit(".", 1)[-1] if _SPLIT_BIAS.fullmatch(k) else m.group(3)] = tensor
            continue
        if _HF_DROP.search(k):
            ignored.append(key)
            continue
        new = _rename(k)
        if new is None:
            ignored.append(key)
            continue
        out[new] = tensor
    for layer, parts in fused.items():
        w = parts.get("weight")
        if w is None:
            raise CheckpointError(f"{where}: layer {layer} has q/v biases but no fused qkv weight")
        for name, chunk in zip(("query", "key", "value"), w.chunk(3, dim=0)):
            out[f"layers.{layer}.{name}.weight"] = chunk.clone()
        if "bias" in parts:
            for name, chunk in zip(("query", "key", "value"), parts["bias"].chunk(3, dim=0)):
                out[f"layers.{layer}.{name}.bias"] = chunk.clone()
        else:  # UniLMv2 / BEiT style: q and v carry biases, k has none
            zeros = torch.zeros(w.size(1), dtype=w.dtype)
            out[f"layers.{layer}.query.bias"] = parts.get("q_bias", zeros)
            out[f"layers.{layer}.key.bias"] = zeros.clone()
            out[f"layers.{layer}.value.bias"] = parts.get("v_bias", zeros)
    return out, ignored


# --------------------------------------------------------------------------- files
def _read_hf_weights(path: str) -> Dict[str, torch.Tensor]:
    st = os.path.join(path, "model.safetensors")
    bin_ = os.path.join(path, "pytorch_model.bin")
    if os.path.exists(st):
        from safetensors.torch import load_file
        try:
            return load_file(st)
        except Exception as e:  # corrupt / truncated file
            raise CheckpointError(f"{st}: cannot read safetensors file ({e})") from e
    if os.path.exists(bin_):
        return safe_torch_load(bin_)
    raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in this directory")


def safe_torch_load(path: str):
    """``torch.load`` with ``weights_only=True``: a pickle that would run code is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(
            f"{path}: refused or unreadable checkpoint ({msg}). Only tensors and the allow-listed "
            "fairseq globals are loaded; a file that needs anything else is not trusted."
        ) from e


_FAMILIES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "xlm-roberta",
             "electra": "electra", "unilm": "unilm", "camembert": "roberta"}


def _stack_config_from_hf(cfg: dict, where: str) -> (StackConfig, str):
    model_type = cfg.get("model_type", "bert")
    family = _FAMILIES.get(model_type)
    if family is None:
        raise CheckpointError(f"{where}: model_type {model_type!r} is not a supported bidirectional encoder "
                              f"(supported: {', '.join(sorted(_FAMILIES))})")
    pet = cfg.get("position_embedding_type", "absolute")
    if pet != "absolute" or cfg.get("rel_pos_bins") or cfg.get("max_rel_pos"):
        raise CheckpointError(f"{where}: relative position embeddings ({pet!r}/rel_pos_bins) are not "
                              "implemented yet; only absolute positions are supported")
    offset = cfg.get("pad_token_id", 1) + 1 if family in ("roberta", "xlm-roberta") else 0
    sc = StackConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=cfg["num_attention_heads"],
        intermediate_size=cfg["intermediate_size"],
        max_positions=cfg["max_position_embeddings"] - offset,
        type_vocab_size=cfg.get("type_vocab_size", 2),
        embedding_size=cfg.get("embedding_size") if cfg.get("embedding_size") not in (None, cfg["hidden_size"]) else None,
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        hidden_act=cfg.get("hidden_act", "gelu"),
        dropout=cfg.get("hidden_dropout_prob", 0.1),
        attention_dropout=cfg.get("attention_probs_dropout_prob", 0.1),
        pad_idx=cfg.get("pad_token_id", 0) or 0,
    )
    return sc, family, offset


def _load_tokenizer(path: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load the checkpoint's tokenizer ({e})") from e


def load_hf(path: str) -> PretrainedCheckpoint:
    cfg_path = os.path.join(path, "config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: cannot read config ({e})") from e
    sc, family, offset = _stack_config_from_hf(cfg, cfg_path)
    raw = _read_hf_weights(path)
    mapped, ignored = map_hf_state_dict(raw, path)
    if offset and "embeddings.position.weight" in mapped:
        mapped["embeddings.position.weight"] = mapped["embeddings.position.weight"][offset:]
    tokenizer = _load_tokenizer(path)
    dictionary = dictionary_from_tokenizer(tokenizer, num_embeddings=sc.vocab_size)
    sc.pad_idx = dictionary.pad()
    ck = PretrainedCheckpoint(sc, mapped, dictionary, family, path,
                              has_lm_head="lm_head.dense.weight" in mapped, tokenizer_dir=path)
    if ignored:
        ck.notes.append(f"ignored {len(ignored)} tensors not used by the stack: {', '.join(ignored[:6])}"
                        + (" ..." if len(ignored) > 6 else ""))
    return ck


_FS_RULES = [
    (r"embed_tokens\.weight", "embeddings.word.weight"),
    (r"embed_positions\.weight", "embeddings.position.weight"),
    (r"(?:layernorm_embedding|emb_layer_norm)\.(weight|bias)", r"embeddings.layer_norm.\1"),
    (r"layers\.(\d+)\.self_attn\.q_proj\.(weight|bias)", r"layers.\1.query.\2"),
    (r"layers\.(\d+)\.self_attn\.k_proj\.(weight|bias)", r"layers.\1.key.\2"),
    (r"layers\.(\d+)\.self_attn\.v_proj\.(weight|bias)", r"layers.\1.value.\2"),
    (r"layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"layers.\1.attn_out.\2"),
    (r"layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"layers.\1.attn_layer_norm.\2"),
    (r"layers\.(\d+)\.fc1\.(weight|bias)", r"layers.\1.ffn_in.\2"),
    (r"layers\.(\d+)\.fc2\.(weight|bias)", r"layers.\1.ffn_out.\2"),
    (r"layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"layers.\1.ffn_layer_norm.\2"),
]


def load_fairseq_roberta(path: str) -> PretrainedCheckpoint:
    """fairseq RoBERTa / XLM-R: ``model.pt`` (+ ``dict.txt`` beside it)."""
    from fairseq.data import Dictionary
    model_pt = path if os.path.isfile(path) else os.path.join(path, "model.pt")
    folder = os.path.dirname(model_pt)
    dict_txt = os.path.join(folder, "dict.txt")
    if not os.path.exists(dict_txt):
        raise CheckpointError(f"{folder}: fairseq checkpoint without dict.txt beside model.pt")
    state = safe_torch_load(model_pt)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{model_pt}: not a fairseq checkpoint (no 'model' entry)")
    args = state.get("cfg", {}).get("model") if state.get("cfg") else state.get("args")
    get = (lambda k, d=None: args.get(k, d)) if isinstance(args, dict) else (lambda k, d=None: getattr(args, k, d))
    fs_dict = Dictionary.load(dict_txt)
    fs_dict.add_symbol("<mask>")
    mapped, ignored = {}, []
    for key, t in state["model"].items():
        k = re.sub(r"^(encoder|decoder)\.sentence_encoder\.", "", key)
        k2 = re.sub(r"^(encoder|decoder)\.lm_head\.", "", key)
        if k2 != key:
            name = {"dense.weight": "lm_head.dense.weight", "dense.bias": "lm_head.dense.bias",
                    "layer_norm.weight": "lm_head.layer_norm.weight", "layer_norm.bias": "lm_head.layer_norm.bias",
                    "bias": "lm_head.bias"}.get(k2)
            if name:
                mapped[name] = t
            else:
                ignored.append(key)
            continue
        for pat, rep in _FS_RULES:
            if re.fullmatch(pat, k):
                mapped[re.sub(pat, rep, k)] = t
                break
        else:
            ignored.append(key)
    if "embeddings.word.weight" not in mapped:
        raise CheckpointError(f"{model_pt}: no sentence_encoder.embed_tokens.weight: not a RoBERTa-style model")
    pad = fs_dict.pad()
    pos = mapped["embeddings.position.weight"][pad + 1:]
    mapped["embeddings.position.weight"] = pos
    word = mapped["embeddings.word.weight"]
    hidden = word.size(1)
    if not get("encoder_normalize_before", False) is False:
        raise CheckpointError(f"{model_pt}: pre-LayerNorm encoder; only post-LN (BERT/RoBERTa) stacks are supported")
    sc = StackConfig(
        vocab_size=word.size(0), hidden_size=hidden,
        num_layers=get("encoder_layers", 12), num_heads=get("encoder_attention_heads", 12),
        intermediate_size=get("encoder_ffn_embed_dim", 3072), max_positions=pos.size(0),
        type_vocab_size=0, layer_norm_eps=1e-5, hidden_act=get("activation_fn", "gelu"),
        dropout=get("dropout", 0.1), attention_dropout=get("attention_dropout", 0.1), pad_idx=pad,
    )
    symbols = list(fs_dict.symbols) + [f"<s2sft-extra-row-{i}>" for i in range(len(fs_dict), word.size(0))]
    dictionary = CheckpointDictionary(symbols[: word.size(0)])
    ck = PretrainedCheckpoint(sc, mapped, dictionary, "fairseq-roberta", model_pt,
                              has_lm_head="lm_head.dense.weight" in mapped, tokenizer_dir=None)
    if ignored:
        ck.notes.append(f"ignored {len(ignored)} tensors: {', '.join(ignored[:6])}")
    return ck


def load_pretrained(path: str) -> PretrainedCheckpoint:
    """Read any supported checkpoint from disk (no network)."""
    if not path or not os.path.exists(path):
        raise CheckpointError(f"--pretrained-checkpoint {path!r} does not exist")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
        return load_hf(path)
    if (os.path.isfile(path) and path.endswith(".pt")) or os.path.exists(os.path.join(path, "model.pt")):
        return load_fairseq_roberta(path)
    raise CheckpointError(f"{path}: neither a Hugging Face directory (config.json) nor a fairseq "
                          "checkpoint (model.pt + dict.txt)")


def load_into_stack(stack: BertStack, ck: PretrainedCheckpoint) -> List[str]:
    """Copy the checkpoint's tensors into ``stack``; return log lines. Shape errors name the tensor."""
    own = stack.state_dict()
    log = list(ck.notes)
    for name, tensor in ck.state_dict.items():
        if name not in own:
            raise CheckpointError(f"{ck.path}: tensor {name!r} has no place in the stack")
        if name == "embeddings.position.weight" and tensor.size(0) < own[name].size(0):
            if tensor.size(1) != own[name].size(1):
                raise CheckpointError(f"{ck.path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                      f"the model expects {tuple(own[name].shape)}")
            continue  # handled below: copy and extend
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(f"{ck.path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                  f"the model expects {tuple(own[name].shape)}")
    missing = [n for n in own if n not in ck.state_dict and not n.startswith("lm_head.")
               and not (n.startswith("embeddings.token_type") and ck.config.type_vocab_size == 0)]
    if missing:
        raise CheckpointError(f"{ck.path}: checkpoint lacks {len(missing)} stack tensors, first {missing[0]!r}")
    with torch.no_grad():
        for name, tensor in ck.state_dict.items():
            target = own[name]
            if name == "embeddings.position.weight" and tensor.size(0) < target.size(0):
                reps = -(-target.size(0) // tensor.size(0))
                target.copy_(tensor.repeat(reps, 1)[: target.size(0)])
                log.append(f"position table extended from {tensor.size(0)} to {target.size(0)} rows "
                           "by copying the pretrained rows (s2s-ft)")
            else:
                target.copy_(tensor)
    if not ck.has_lm_head:
        log.append("checkpoint has no MLM head: the head's transform starts fresh, its output "
                   "layer is tied to the word embeddings")
    return log

"""Import pretrained bidirectional Transformers into :class:`BertStack` (DESIGN §4).

Formats:

* Hugging Face directories (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``,
  tokenizer files): BERT, RoBERTa, XLM-RoBERTa, ELECTRA discriminator / generator, MiniLM and
  sentence-transformers BERT layouts (no ``bert.`` prefix, no MLM head), UniLMv2-style
  checkpoints with fused q/k/v (absolute positions only: relative position bias is refused).
* fairseq RoBERTa / XLM-R: a directory (or the ``model.pt`` in it) with ``model.pt`` + ``dict.txt``.

Everything maps into the stack's own parameter names; pooler, NSP and discriminator heads are
dropped. Position tables that carry a padding offset (RoBERTa's two leading rows, fairseq's
``pad + 1`` rows) are sliced so that our position ids start at 0. Safetensors is preferred;
pickles are read with ``weights_only=True`` and the allow-list of :mod:`..safe_loading`.

:func:`load_pretrained` checks every tensor against the stack its config describes (shapes
computed on the meta device) and raises :class:`CheckpointError` naming the checkpoint's own
tensor name and both shapes; nothing is silently skipped. What is imported but not exactly
reproduced is recorded in ``PretrainedCheckpoint.notes`` (logged when the model is built): a
missing or incomplete MLM head (fresh transform, output tied to the word embeddings), an output
layer the checkpoint had untied (the stack always ties it, s2s-ft), and the tensors ignored.
RoBERTa / XLM-R / ELECTRA MLM heads use GELU whatever ``hidden_act`` says; the stack config
records that (``head_act``), so their heads are reproduced too. Parity with
``transformers`` / fairseq is tested in ``tests/test_parity.py``.
"""
import json
import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from ..errors import S2SFTError
from ..modules.bert_stack import BertStack, StackConfig, activation
from .vocab import CheckpointDictionary, dictionary_from_tokenizer

logger = logging.getLogger(__name__)


class CheckpointError(S2SFTError):
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
    #: stack name -> the checkpoint's own tensor name(s), for error messages
    sources: Dict[str, str] = field(default_factory=dict)
    #: the file the tensors were read from
    weights_file: Optional[str] = None

    def source(self, name: str) -> str:
        src = self.sources.get(name)
        return f"{src!r} (stack: {name!r})" if src and src != name else repr(name)


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


_OUTPUT_WEIGHT = re.compile(r"(cls\.predictions\.decoder|lm_head\.decoder|generator_lm_head)\.weight")


def map_hf_state_dict(raw: Dict[str, torch.Tensor], where: str,
                      sources: Optional[Dict[str, str]] = None,
                      output_weights: Optional[Dict[str, torch.Tensor]] = None,
                      ) -> (Dict[str, torch.Tensor], List[str]):
    """Rename a Hugging Face state dict into stack names; returns (mapped, ignored keys).

    ``sources`` (if given) receives stack name -> checkpoint name; ``output_weights`` receives
    the MLM output projection(s) the stack does not keep (it ties them to the word embeddings),
    so that the caller can check they really were tied.
    """
    out, ignored = {}, []
    sources = {} if sources is None else sources
    fused: Dict[int, Dict[str, tuple]] = {}
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
        m = _FUSED_QKV.fullmatch(k)
        if m:
            fused.setdefault(int(m.group(1)), {})[m.group(3)] = (key, tensor)
            continue
        m = _SPLIT_BIAS.fullmatch(k)
        if m:
            fused.setdefault(int(m.group(1)), {})[m.group(2)] = (key, tensor)
            continue
        if _OUTPUT_WEIGHT.fullmatch(k) and output_weights is not None:
            output_weights[key] = tensor
        if _HF_DROP.search(k):
            ignored.append(key)
            continue
        new = _rename(k)
        if new is None:
            ignored.append(key)
            continue
        if new in out:
            raise CheckpointError(f"{where}: tensors {sources[new]!r} and {key!r} both map to {new!r}")
        out[new] = tensor
        sources[new] = key
    for layer, parts in sorted(fused.items()):
        if "weight" not in parts:
            names = ", ".join(repr(n) for n, _ in parts.values())
            raise CheckpointError(f"{where}: layer {layer} has {names} but no fused qkv weight")
        wkey, w = parts["weight"]
        if w.dim() != 2 or w.size(0) % 3:
            raise CheckpointError(f"{where}: fused q/k/v tensor {wkey!r} has shape {tuple(w.shape)}; "
                                  "expected (3 * hidden, hidden)")
        width = w.size(0) // 3
        for name, chunk in zip(("query", "key", "value"), w.chunk(3, dim=0)):
            out[f"layers.{layer}.{name}.weight"] = chunk.clone()
            sources[f"layers.{layer}.{name}.weight"] = f"{wkey}[{name}]"
        if "bias" in parts:
            bkey, b = parts["bias"]
            if b.dim() != 1 or b.size(0) != 3 * width:
                raise CheckpointError(f"{where}: fused q/k/v bias {bkey!r} has shape {tuple(b.shape)}; "
                                      f"expected ({3 * width},)")
            for name, chunk in zip(("query", "key", "value"), b.chunk(3, dim=0)):
                out[f"layers.{layer}.{name}.bias"] = chunk.clone()
                sources[f"layers.{layer}.{name}.bias"] = f"{bkey}[{name}]"
        else:  # UniLMv2 / BEiT style: q and v carry biases, k has none (zero)
            for name, part in (("query", "q_bias"), ("key", None), ("value", "v_bias")):
                if part in parts:
                    src, t = parts[part]
                else:
                    src, t = "(no bias in the checkpoint: zeros)", torch.zeros(width, dtype=w.dtype)
                out[f"layers.{layer}.{name}.bias"] = t
                sources[f"layers.{layer}.{name}.bias"] = src
    return out, ignored


# --------------------------------------------------------------------------- files
def _read_hf_weights(path: str) -> (Dict[str, torch.Tensor], str):
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
        state = safe_torch_load(bin_)
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


# torch's refusals name the global in one of these forms (it varies with the reason)
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")


def safe_torch_load(path: str):
    """``torch.load`` with ``weights_only=True``: a pickle that would run code is refused.

    Only tensors, plain containers and :data:`s2sft_fairseq.safe_loading.ALLOWED_GLOBALS` are
    accepted (registered here too, so this does not depend on import order).
    """
    from ..safe_loading import register
    # Not torch.serialization.safe_globals(...): its __exit__ *removes* the globals it was given,
    # which would also drop the process-wide registration that fairseq's own loading relies on.
    register()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        text = str(e)
        m = _REFUSED_GLOBAL.search(text) if isinstance(e, pickle.UnpicklingError) else None
        if m:
            why = f"it needs the global {m.group(1) or m.group(2)!r}, which is not allow-listed"
        elif "WeightsUnpickler error:" in text:
            detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
            why = f"the weights-only unpickler refused it: {detail[0] if detail else type(e).__name__}"
        else:
            why = (text.strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(
            f"{path}: refused or unreadable pickle checkpoint ({why}). Only tensors and the "
            "allow-listed fairseq globals are loaded (torch.load weights_only=True); a file that "
            "needs anything else is not trusted. Prefer model.safetensors."
        ) from e


_FAMILIES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "xlm-roberta",
             "electra": "electra", "unilm": "unilm", "camembert": "roberta"}


def _stack_config_from_hf(cfg: dict, where: str) -> (StackConfig, str, int):
    model_type = cfg.get("model_type", "bert")
    family = _FAMILIES.get(model_type)
    if family is None:
        raise CheckpointError(f"{where}: model_type {model_type!r} is not a supported bidirectional encoder "
                              f"(supported: {', '.join(sorted(_FAMILIES))})")
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


def expected_shapes(sc: StackConfig) -> Dict[str, tuple]:
    """The stack's tensor shapes for a config (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        stack = BertStack(sc)
    return {k: tuple(v.shape) for k, v in stack.state_dict().items()}


def validate(ck: PretrainedCheckpoint, config_name: str) -> None:
    """Every tensor fits the configured stack and nothing the stack needs is missing.

    Raises :class:`CheckpointError` naming the checkpoint's tensor and both shapes.
    """
    shapes = expected_shapes(ck.config)
    where = ck.weights_file or ck.path
    for name, tensor in ck.state_dict.items():
        if name not in shapes:
            raise CheckpointError(f"{where}: tensor {ck.source(name)} has no place in the stack")
        if tuple(tensor.shape) != shapes[name]:
            raise CheckpointError(
                f"{where}: tensor {ck.source(name)} has shape {tuple(tensor.shape)}, but {config_name} "
                f"implies {shapes[name]} (hidden {ck.config.hidden_size}, intermediate "
                f"{ck.config.intermediate_size}, vocabulary {ck.config.vocab_size}, "
                f"positions {ck.config.max_positions}); the checkpoint does not fit its config")
    missing = [n for n in shapes if n not in ck.state_dict and not n.startswith("lm_head.")]
    if missing:
        raise CheckpointError(f"{where}: checkpoint lacks {len(missing)} tensors the stack needs, "
                              f"first {missing[0]!r}: {', '.join(missing[:4])}")
    head = [n for n in shapes if n.startswith("lm_head.")]
    have = [n for n in head if n in ck.state_dict]
    if have and len(have) < len(head):
        ck.notes.append(f"the checkpoint's MLM head is incomplete: {', '.join(n for n in head if n not in have)} "
                        "start fresh")


def _check_output_tied(ck: PretrainedCheckpoint, outputs: Dict[str, torch.Tensor]) -> None:
    word = ck.state_dict.get("embeddings.word.weight")
    for key, w in outputs.items():
        if word is not None and (w.shape != word.shape or not torch.equal(w, word)):
            ck.notes.append(f"the checkpoint's output layer {key!r} is not tied to its word embeddings; "
                            "the stack ties them (s2s-ft), so its MLM predictions start from the word "
                            "embeddings instead")


def load_hf(path: str) -> PretrainedCheckpoint:
    cfg_path = os.path.join(path, "config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: cannot read config ({e})") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path}: not a model config")
    sc, family, offset = _stack_config_from_hf(cfg, cfg_path)
    raw, weights_file = _read_hf_weights(path)
    sources, outputs = {}, {}
    mapped, ignored = map_hf_state_dict(raw, weights_file, sources, outputs)
    if offset and "embeddings.position.weight" in mapped:
        mapped["embeddings.position.weight"] = mapped["embeddings.position.weight"][offset:]
        sources["embeddings.position.weight"] += f"[{offset}:] (RoBERTa padding offset)"
    ck = PretrainedCheckpoint(sc, mapped, None, family, path,
                              has_lm_head="lm_head.dense.weight" in mapped, tokenizer_dir=path,
                              sources=sources, weights_file=weights_file)
    validate(ck, cfg_path)
    _check_output_tied(ck, outputs)
    # RoBERTa's, XLM-R's and ELECTRA's (generator) MLM heads apply GELU whatever hidden_act says
    # (transformers' RobertaLMHead / ElectraGeneratorPredictions); BERT's and UniLM's use hidden_act.
    if family in ("roberta", "xlm-roberta", "electra"):
        sc.head_act = "gelu"
    tokenizer = _load_tokenizer(path)
    ck.dictionary = dictionary_from_tokenizer(tokenizer, num_embeddings=sc.vocab_size)
    sc.pad_idx = ck.dictionary.pad()
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
_FS_HEAD = {"dense.weight": "lm_head.dense.weight", "dense.bias": "lm_head.dense.bias",
            "layer_norm.weight": "lm_head.layer_norm.weight", "layer_norm.bias": "lm_head.layer_norm.bias",
            "bias": "lm_head.bias"}
# fairseq activation names -> the stack's
_FS_ACT = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "gelu_fast": "gelu_new", "swish": "silu"}


def _fairseq_model_args(state: dict):
    """The model hyper-parameters of a fairseq checkpoint: ``cfg['model']`` (dict or Namespace,
    fairseq >= 0.10) or the legacy ``args`` Namespace (the released RoBERTa / XLM-R files)."""
    cfg = state.get("cfg")
    args = cfg.get("model") if isinstance(cfg, dict) else None
    if args is None:
        args = state.get("args")
    if isinstance(args, dict):
        return lambda k, d=None: args.get(k, d) if args.get(k) is not None else d
    return lambda k, d=None: getattr(args, k, None) if getattr(args, k, None) is not None else d


def load_fairseq_roberta(path: str) -> PretrainedCheckpoint:
    """fairseq RoBERTa / XLM-R: ``model.pt`` (+ ``dict.txt`` beside it)."""
    from fairseq.data import Dictionary
    model_pt = path if os.path.isfile(path) else os.path.join(path, "model.pt")
    folder = os.path.dirname(model_pt)
    dict_txt = os.path.join(folder, "dict.txt")
    if not os.path.exists(dict_txt):
        raise CheckpointError(f"{folder}: fairseq checkpoint without dict.txt beside model.pt")
    state = safe_torch_load(model_pt)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{model_pt}: not a fairseq checkpoint (no 'model' entry)")
    get = _fairseq_model_args(state)
    try:
        fs_dict = Dictionary.load(dict_txt)
    except Exception as e:
        raise CheckpointError(f"{dict_txt}: cannot read the fairseq dictionary ({e})") from e
    fs_dict.add_symbol("<mask>")
    mapped, ignored, sources, outputs = {}, [], {}, {}
    for key, t in state["model"].items():
        k = re.sub(r"^(encoder|decoder)\.sentence_encoder\.", "", key)
        k2 = re.sub(r"^(encoder|decoder)\.lm_head\.", "", key)
        if k2 != key:
            name = _FS_HEAD.get(k2)
            if name:
                mapped[name], sources[name] = t, key
            else:
                if k2 == "weight":
                    outputs[key] = t
                ignored.append(key)
            continue
        if _REL_POS.search(k):
            raise CheckpointError(f"{model_pt}: tensor {key!r} is a relative position bias; relative "
                                  "position bias is not implemented yet (absolute positions only)")
        for pat, rep in _FS_RULES:
            if re.fullmatch(pat, k):
                new = re.sub(pat, rep, k)
                mapped[new], sources[new] = t, key
                break
        else:
            ignored.append(key)
    if "embeddings.word.weight" not in mapped:
        raise CheckpointError(f"{model_pt}: no sentence_encoder.embed_tokens.weight: not a RoBERTa-style model")
    if "embeddings.position.weight" not in mapped:
        raise CheckpointError(f"{model_pt}: no learned position table (sentence_encoder.embed_positions.weight)")
    for flag, bad, what in (("encoder_normalize_before", True, "a pre-LayerNorm encoder"),
                            ("no_scale_embedding", False, "scaled token embeddings (no_scale_embedding=False)"),
                            ("encoder_learned_pos", False, "sinusoidal positions")):
        if get(flag, not bad) == bad:
            raise CheckpointError(f"{model_pt}: {what}; only post-LN BERT/RoBERTa stacks with learned "
                                  "positions are supported")
    act = get("activation_fn", "gelu")
    if act not in _FS_ACT:
        raise CheckpointError(f"{model_pt}: activation {act!r} is not supported ({', '.join(_FS_ACT)})")
    pad = fs_dict.pad()
    mapped["embeddings.position.weight"] = mapped["embeddings.position.weight"][pad + 1:]
    sources["embeddings.position.weight"] += f"[{pad + 1}:] (fairseq padding offset)"
    pos = mapped["embeddings.position.weight"]
    word = mapped["embeddings.word.weight"]
    if len(fs_dict) > word.size(0):
        raise CheckpointError(
            f"{dict_txt}: the dictionary (+<mask>) has {len(fs_dict)} entries but the embedding "
            f"{sources['embeddings.word.weight']!r} only {word.size(0)} rows (first token without a "
            f"row: {fs_dict[word.size(0)]!r} at index {word.size(0)}); dict.txt is not this model's")
    sc = StackConfig(
        vocab_size=word.size(0), hidden_size=word.size(1),
        num_layers=get("encoder_layers", 12), num_heads=get("encoder_attention_heads", 12),
        intermediate_size=get("encoder_ffn_embed_dim", 3072), max_positions=pos.size(0),
        type_vocab_size=0, layer_norm_eps=1e-5, hidden_act=_FS_ACT[act],
        dropout=get("dropout", 0.1), attention_dropout=get("attention_dropout", 0.1), pad_idx=pad,
    )
    symbols = list(fs_dict.symbols) + [f"<s2sft-extra-row-{i}>" for i in range(len(fs_dict), word.size(0))]
    dictionary = CheckpointDictionary(symbols, specials={"bos": fs_dict.bos_word, "eos": fs_dict.eos_word,
                                                          "pad": fs_dict.pad_word, "unk": fs_dict.unk_word,
                                                          "mask": "<mask>"})
    ck = PretrainedCheckpoint(sc, mapped, dictionary, "fairseq-roberta", model_pt,
                              has_lm_head="lm_head.dense.weight" in mapped, tokenizer_dir=None,
                              sources=sources, weights_file=model_pt)
    validate(ck, f"{model_pt} (its model args)")
    _check_output_tied(ck, outputs)
    if ignored:
        ck.notes.append(f"ignored {len(ignored)} tensors: {', '.join(ignored[:6])}"
                        + (" ..." if len(ignored) > 6 else ""))
    return ck


def load_pretrained(path: str) -> PretrainedCheckpoint:
    """Read any supported checkpoint from disk (no network)."""
    if not path or not os.path.exists(path):
        raise CheckpointError(f"pretrained checkpoint {path!r} does not exist (expected a Hugging Face "
                              "directory with config.json, or a fairseq model.pt with dict.txt beside it)")
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json")):
        return load_hf(path)
    if (os.path.isfile(path) and path.endswith(".pt")) or os.path.exists(os.path.join(path, "model.pt")):
        return load_fairseq_roberta(path)
    raise CheckpointError(f"{path}: neither a Hugging Face directory (config.json) nor a fairseq "
                          "checkpoint (model.pt + dict.txt)")


def load_into_stack(stack: BertStack, ck: PretrainedCheckpoint) -> List[str]:
    """Copy the checkpoint's tensors into ``stack``; return log lines. Shape errors name the tensor.

    A position table shorter than the stack's is extended by copying its rows cyclically
    (s2s-ft); a checkpoint without an MLM head leaves the head's transform as initialised.
    """
    own = stack.state_dict()
    log = list(ck.notes)
    where = ck.weights_file or ck.path
    for name, tensor in ck.state_dict.items():
        if name not in own:
            raise CheckpointError(f"{where}: tensor {ck.source(name)} has no place in the stack")
        if name == "embeddings.position.weight" and tensor.size(0) < own[name].size(0):
            if tensor.size(1) != own[name].size(1):
                raise CheckpointError(f"{where}: tensor {ck.source(name)} has shape {tuple(tensor.shape)}, "
                                      f"the model expects {tuple(own[name].shape)}")
            continue  # handled below: copy and extend
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(f"{where}: tensor {ck.source(name)} has shape {tuple(tensor.shape)}, "
                                  f"the model expects {tuple(own[name].shape)}")
    missing = [n for n in own if n not in ck.state_dict and not n.startswith("lm_head.")]
    if missing:
        raise CheckpointError(f"{where}: checkpoint lacks {len(missing)} stack tensors, first {missing[0]!r}")
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

"""fairseq RoBERTa / XLM-R checkpoints: ``model.pt`` with ``dict.txt`` beside it.

The released fairseq RoBERTa / XLM-R files (README, 'Supported checkpoints'; s2s-ft fine-tunes
RoBERTa and XLM-R, §3.3 and §3.5). ``model.pt`` is read with
:func:`..safe_loading.safe_torch_load`; its hyper-parameters are ``cfg['model']`` (fairseq >= 0.10)
or the legacy ``args`` Namespace. The encoder is ``{encoder,decoder}.sentence_encoder.*``, the MLM
head ``{encoder,decoder}.lm_head.*``. The dictionary is ``dict.txt`` plus ``<mask>``, as fairseq's
RoBERTa task builds it, row for row; the position table's leading ``pad + 1`` rows (fairseq's
padding offset) are dropped so that positions start at 0.

Refused with a :class:`.common.CheckpointError`: pre-LayerNorm encoders, scaled token embeddings,
sinusoidal positions, relative position bias, unsupported activations, and a ``dict.txt`` with
more entries than the embedding has rows.
"""
import os
import re

from ..modules.bert_stack import StackConfig
from ..safe_loading import safe_torch_load
from .common import (
    POSITIONS, WORDS, CheckpointError, PretrainedCheckpoint, Renamed, RenameRules, finish_import,
    rename_tensors, skip_padding_positions,
)
from .vocab import CheckpointDictionary

DESCRIPTION = "a fairseq model.pt with dict.txt beside it"

RULES = RenameRules(
    strip=re.compile(r"^(?:encoder|decoder)\.sentence_encoder\."),
    rules=[
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
        # the MLM head (not under sentence_encoder)
        (r"(?:encoder|decoder)\.lm_head\.(dense|layer_norm)\.(weight|bias)", r"lm_head.\1.\2"),
        (r"(?:encoder|decoder)\.lm_head\.bias", "lm_head.bias"),
    ],
    output=re.compile(r"(?:encoder|decoder)\.lm_head\.weight"),
)
#: fairseq activation names -> the stack's
ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "gelu_fast": "gelu_new",
               "swish": "silu"}


def recognises(path: str) -> bool:
    return (os.path.isfile(path) and path.endswith(".pt")) or os.path.exists(os.path.join(path, "model.pt"))


def load(path: str) -> PretrainedCheckpoint:
    """Read a fairseq RoBERTa / XLM-R ``model.pt`` (or its directory) into stack names."""
    model_pt = path if os.path.isfile(path) else os.path.join(path, "model.pt")
    dict_txt = os.path.join(os.path.dirname(model_pt), "dict.txt")
    if not os.path.exists(dict_txt):
        raise CheckpointError(f"{os.path.dirname(model_pt)}: fairseq checkpoint without dict.txt beside model.pt")
    state = safe_torch_load(model_pt, error=CheckpointError)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{model_pt}: not a fairseq checkpoint (no 'model' entry)")
    get = _model_args(state)
    fs_dict = _read_dictionary(dict_txt)
    renamed = rename_tensors(state["model"], RULES, model_pt)
    _check_architecture(renamed, get, model_pt)
    pad = fs_dict.pad()
    skip_padding_positions(renamed, pad + 1, "fairseq padding offset")
    word = renamed.mapped[WORDS]
    if len(fs_dict) > word.size(0):
        raise CheckpointError(
            f"{dict_txt}: the dictionary (+<mask>) has {len(fs_dict)} entries but the embedding "
            f"{renamed.sources[WORDS]!r} only {word.size(0)} rows (first token without a "
            f"row: {fs_dict[word.size(0)]!r} at index {word.size(0)}); dict.txt is not this model's")
    sc = StackConfig(
        vocab_size=word.size(0), hidden_size=word.size(1),
        num_layers=get("encoder_layers", 12), num_heads=get("encoder_attention_heads", 12),
        intermediate_size=get("encoder_ffn_embed_dim", 3072), max_positions=renamed.mapped[POSITIONS].size(0),
        type_vocab_size=0, layer_norm_eps=1e-5, hidden_act=ACTIVATIONS[get("activation_fn", "gelu")],
        dropout=get("dropout", 0.1), attention_dropout=get("attention_dropout", 0.1), pad_idx=pad,
    )
    ck = PretrainedCheckpoint(sc, renamed.mapped, _checkpoint_dictionary(fs_dict, word.size(0)),
                              "fairseq-roberta", model_pt, has_lm_head="lm_head.dense.weight" in renamed.mapped,
                              tokenizer_dir=None, sources=renamed.sources, weights_file=model_pt)
    finish_import(ck, renamed, f"{model_pt} (its model args)")
    return ck


def _model_args(state: dict):
    """The model hyper-parameters of a fairseq checkpoint: ``cfg['model']`` (dict or Namespace,
    fairseq >= 0.10) or the legacy ``args`` Namespace (the released RoBERTa / XLM-R files)."""
    cfg = state.get("cfg")
    args = cfg.get("model") if isinstance(cfg, dict) else None
    if args is None:
        args = state.get("args")
    if isinstance(args, dict):
        return lambda k, d=None: args.get(k, d) if args.get(k) is not None else d
    return lambda k, d=None: getattr(args, k, None) if getattr(args, k, None) is not None else d


def _read_dictionary(dict_txt: str):
    """``dict.txt`` as fairseq's RoBERTa task reads it: fairseq's specials, the rows, ``<mask>``."""
    from fairseq.data import Dictionary
    try:
        fs_dict = Dictionary.load(dict_txt)
    except Exception as e:
        raise CheckpointError(f"{dict_txt}: cannot read the fairseq dictionary ({e})") from e
    fs_dict.add_symbol("<mask>")
    return fs_dict


def _check_architecture(renamed: Renamed, get, model_pt: str) -> None:
    """Only post-LN stacks with learned positions and a supported activation fit the stack."""
    if WORDS not in renamed.mapped:
        raise CheckpointError(f"{model_pt}: no sentence_encoder.embed_tokens.weight: not a RoBERTa-style model")
    if POSITIONS not in renamed.mapped:
        raise CheckpointError(f"{model_pt}: no learned position table (sentence_encoder.embed_positions.weight)")
    for flag, bad, what in (("encoder_normalize_before", True, "a pre-LayerNorm encoder"),
                            ("no_scale_embedding", False, "scaled token embeddings (no_scale_embedding=False)"),
                            ("encoder_learned_pos", False, "sinusoidal positions")):
        if get(flag, not bad) == bad:
            raise CheckpointError(f"{model_pt}: {what}; only post-LN BERT/RoBERTa stacks with learned "
                                  "positions are supported")
    act = get("activation_fn", "gelu")
    if act not in ACTIVATIONS:
        raise CheckpointError(f"{model_pt}: activation {act!r} is not supported ({', '.join(ACTIVATIONS)})")


def _checkpoint_dictionary(fs_dict, rows: int) -> CheckpointDictionary:
    """The fairseq dictionary padded to the embedding's rows, with its specials named."""
    symbols = list(fs_dict.symbols) + [f"<s2sft-extra-row-{i}>" for i in range(len(fs_dict), rows)]
    return CheckpointDictionary(symbols, specials={"bos": fs_dict.bos_word, "eos": fs_dict.eos_word,
                                                   "pad": fs_dict.pad_word, "unk": fs_dict.unk_word,
                                                   "mask": "<mask>"})

"""The stack in the layouts of the Hugging Face families: tensor names, configs, loading.

The reverse of the importer (:mod:`s2sft_fairseq.checkpoints.huggingface`): the stack's names
(:mod:`s2sft_fairseq.modules.bert_stack`) become the family's (``bert.encoder.layer.0.attention.
self.query.weight`` ...), the MLM head becomes the family's head (BERT ``cls.predictions``,
RoBERTa / XLM-R / CamemBERT ``lm_head``, ELECTRA ``generator_predictions`` +
``generator_lm_head``; its output layer stays tied to the word embeddings), and RoBERTa-style
position tables get back the ``pad + 1`` leading rows the importer dropped (as zeros: position
ids of real tokens start after them). bert2bert's cross-attention blocks become the decoder
layers' ``crossattention``.
"""
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from ..modules.bert_stack import StackConfig
from .trained import ExportError


@dataclass(frozen=True)
class Family:
    model_type: str
    body: str           # the attribute holding the Transformer in the family's LM classes
    masked_lm: str      # transformers class names
    causal_lm: str
    s2sft_class: str    # the class of the shipped generation module (export_templates/modeling_s2sft.py)
    head: Dict[str, str]  # stack ``lm_head.<part>`` -> the family's head tensors
    position_offset: bool  # positions start after ``pad + 1`` rows (RoBERTa)
    gelu_head: bool     # the MLM head applies GELU whatever hidden_act is


_BERT_HEAD = {"dense": "cls.predictions.transform.dense", "layer_norm": "cls.predictions.transform.LayerNorm",
              "bias": "cls.predictions.bias"}
_ROBERTA_HEAD = {"dense": "lm_head.dense", "layer_norm": "lm_head.layer_norm", "bias": "lm_head.bias"}
_ELECTRA_HEAD = {"dense": "generator_predictions.dense", "layer_norm": "generator_predictions.LayerNorm",
                 "bias": "generator_lm_head.bias"}

FAMILIES = {f.model_type: f for f in (
    Family("bert", "bert", "BertForMaskedLM", "BertLMHeadModel", "BertForS2SFT", _BERT_HEAD, False, False),
    Family("roberta", "roberta", "RobertaForMaskedLM", "RobertaForCausalLM", "RobertaForS2SFT", _ROBERTA_HEAD,
           True, True),
    Family("xlm-roberta", "roberta", "XLMRobertaForMaskedLM", "XLMRobertaForCausalLM", "XLMRobertaForS2SFT",
           _ROBERTA_HEAD, True, True),
    Family("camembert", "roberta", "CamembertForMaskedLM", "CamembertForCausalLM", "CamembertForS2SFT",
           _ROBERTA_HEAD, True, True),
    Family("electra", "electra", "ElectraForMaskedLM", "ElectraForCausalLM", "ElectraForS2SFT", _ELECTRA_HEAD,
           False, True),
)}

_EMBEDDINGS = {"word": "embeddings.word_embeddings", "position": "embeddings.position_embeddings",
               "token_type": "embeddings.token_type_embeddings", "layer_norm": "embeddings.LayerNorm",
               "project": "embeddings_project"}
_ATTENTION = {"query": "self.query", "key": "self.key", "value": "self.value", "attn_out": "output.dense",
              "attn_layer_norm": "output.LayerNorm"}
_FEED_FORWARD = {"ffn_in": "intermediate.dense", "ffn_out": "output.dense", "ffn_layer_norm": "output.LayerNorm"}


def family(model_type: str) -> Family:
    return FAMILIES[model_type]


def check_expressible(fam: Family, sc: StackConfig, where: str) -> None:
    """The family's stock classes compute what this stack computes (else a clear refusal)."""
    head_act = sc.head_act or sc.hidden_act
    if fam.gelu_head and head_act != "gelu":
        raise ExportError(f"{where}: the MLM head uses {head_act!r}, but {fam.masked_lm}'s head applies GELU")
    if not fam.gelu_head and head_act != sc.hidden_act:
        raise ExportError(f"{where}: the MLM head uses {head_act!r} and the layers {sc.hidden_act!r}; "
                          f"{fam.masked_lm} uses one activation for both")
    if sc.embed_dim != sc.hidden_size and fam.model_type != "electra":
        raise ExportError(f"{where}: {sc.embed_dim}-wide embeddings projected to {sc.hidden_size} exist only in "
                          "the ELECTRA layout")
    if sc.type_vocab_size < 1:
        raise ExportError(f"{where}: a stack without token type embeddings has no Hugging Face layout")


def position_offset(fam: Family, pad: int) -> int:
    return pad + 1 if fam.position_offset else 0


def hf_config(fam: Family, sc: StackConfig, dictionary, **extra):
    """The family's ``PretrainedConfig`` for this stack (ids of the checkpoint's special tokens)."""
    from transformers import AutoConfig
    sizes = dict(vocab_size=sc.vocab_size, hidden_size=sc.hidden_size, num_hidden_layers=sc.num_layers,
                 num_attention_heads=sc.num_heads, intermediate_size=sc.intermediate_size,
                 max_position_embeddings=sc.max_positions + position_offset(fam, dictionary.pad()),
                 type_vocab_size=sc.type_vocab_size, layer_norm_eps=sc.layer_norm_eps, hidden_act=sc.hidden_act,
                 hidden_dropout_prob=sc.dropout, attention_probs_dropout_prob=sc.attention_dropout,
                 pad_token_id=dictionary.pad(), bos_token_id=dictionary.bos(), eos_token_id=dictionary.eos())
    if fam.model_type == "electra":
        sizes["embedding_size"] = sc.embed_dim
    return AutoConfig.for_model(fam.model_type, **sizes, **extra)


def _hf_name(name: str, fam: Family, body: str, head: str) -> Optional[str]:
    """The Hugging Face name of stack tensor ``name`` (None: it has none, e.g. the relative
    position bias); ``body`` / ``head`` prefix the Transformer's and the head's tensors."""
    parts = name.split(".")
    if parts[0] == "embeddings":
        return f"{body}{_EMBEDDINGS[parts[1]]}.{parts[2]}"
    if parts[0] == "layers":
        part = parts[2]
        where = f"attention.{_ATTENTION[part]}" if part in _ATTENTION else _FEED_FORWARD[part]
        return f"{body}encoder.layer.{parts[1]}.{where}.{parts[3]}"
    if parts[0] == "lm_head":
        return f"{head}{fam.head[parts[1]]}" + (f".{parts[2]}" if len(parts) > 2 else "")
    return None


def stack_tensors(weights: Dict[str, torch.Tensor], fam: Family, pad: int, body: str,
                  head: str = "") -> Dict[str, torch.Tensor]:
    """A stack's tensors under the family's names (with the position table's offset rows)."""
    out = {}
    for name, tensor in weights.items():
        hf = _hf_name(name, fam, body, head)
        if hf is None:
            continue
        if name == "embeddings.position.weight" and position_offset(fam, pad):
            tensor = torch.cat([tensor.new_zeros(position_offset(fam, pad), tensor.size(1)), tensor])
        out[hf] = tensor.detach().clone().contiguous()
    return out


def cross_attention_tensors(weights: Dict[str, torch.Tensor], body: str) -> Dict[str, torch.Tensor]:
    """bert2bert's ``cross_attention.<i>.<part>.<param>`` as the decoder layers' ``crossattention``."""
    out = {}
    for name, tensor in weights.items():
        i, part, param = name.split(".")
        out[f"{body}encoder.layer.{i}.crossattention.{_ATTENTION[part]}.{param}"] = tensor.detach().clone().contiguous()
    return out


def load_exactly(model, tensors: Dict[str, torch.Tensor], where: str) -> None:
    """Load ``tensors`` into a freshly built Hugging Face ``model``: every tensor has a place of its
    shape, and every parameter is loaded or tied to a loaded one (the output layer)."""
    own = model.state_dict()
    for name, tensor in tensors.items():
        if name not in own:
            raise ExportError(f"{where}: exported tensor {name!r} has no place in {type(model).__name__}")
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise ExportError(f"{where}: exported tensor {name!r} has shape {tuple(tensor.shape)}, "
                              f"{type(model).__name__} expects {tuple(own[name].shape)}")
    model.load_state_dict(tensors, strict=False)
    loaded = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if n in tensors}
    left = [n for n, p in model.named_parameters(remove_duplicate=False) if n not in tensors and id(p) not in loaded]
    if left:
        raise ExportError(f"{where}: {type(model).__name__} has {len(left)} parameters the checkpoint does not fill, "
                          f"first {left[:3]}")

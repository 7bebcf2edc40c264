"""``unilm_seq2seq``: one pretrained bidirectional stack as encoder *and* decoder (s2s-ft §2).

The model is a ``FairseqEncoderDecoderModel`` whose encoder and decoder are two roles of the
same :class:`BertStack` object. The stack is registered once (``model.stack``); the roles hold
an unregistered reference, so every parameter appears exactly once in the state dict.

* Training (``forward``): the source, the target block and (pseudo-masked) the [P] block are
  packed into one sequence and run through the stack once with the method's attention mask
  (:mod:`s2sft_fairseq.masks`).
* Generation: the encoder runs the stack over the source once and returns every layer's source
  keys/values; the decoder (:class:`UnilmDecoder`) is incremental (DESIGN §3, s2s-ft §2.4).
"""
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import (
    FairseqEncoder, FairseqEncoderDecoderModel, FairseqIncrementalDecoder,
    register_model, register_model_architecture,
)
from omegaconf import II

from ..checkpoints.importer import CheckpointError, load_into_stack, load_pretrained
from ..checkpoints.vocab import check_dictionary_matches
from ..masks import METHODS, decode_step_mask, pack, valid_positions
from ..modules.bert_stack import BertStack, StackConfig

logger = logging.getLogger(__name__)

_STACK_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                 "max_positions", "type_vocab_size", "embedding_size", "layer_norm_eps", "hidden_act")


@dataclass
class UnilmSeq2SeqConfig(FairseqDataclass):
    pretrained_checkpoint: str = field(default="", metadata={
        "help": "Hugging Face directory (config.json + weights + tokenizer) or fairseq RoBERTa "
                "model.pt/dict.txt to warm-start from; empty = random init (sizes below)"})
    load_pretrained_weights: bool = field(default=True, metadata={
        "help": "internal: set to False in the saved config once the weights are inside the "
                "fairseq checkpoint, so generation does not need the pretrained files"})
    decoding_method: ChoiceEnum(("auto",) + METHODS) = field(default="auto", metadata={
        "help": "how the decoder feeds its inputs; auto = the task's --ft-method at training"})
    incremental_decoding: bool = field(default=True, metadata={
        "help": "cache keys/values while generating; False recomputes the full packed sequence "
                "every step (for checks and benchmarks)"})
    # Stack sizes: filled from the pretrained checkpoint's config when one is given.
    vocab_size: int = 0
    hidden_size: int = field(default=768, metadata={"help": "hidden size (random init)"})
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    embedding_size: int = 0
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    dropout: float = field(default=-1.0, metadata={"help": "override the checkpoint's hidden dropout (-1 = keep)"})
    attention_dropout: float = field(default=-1.0, metadata={"help": "override attention dropout (-1 = keep)"})
    max_source_positions: int = II("task.max_source_positions")
    max_target_positions: int = II("task.max_target_positions")


def _stack_config(cfg, vocab_size: int, pad: int) -> StackConfig:
    return StackConfig(
        vocab_size=cfg.vocab_size or vocab_size, hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers, num_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size, max_positions=cfg.max_positions,
        type_vocab_size=cfg.type_vocab_size, embedding_size=cfg.embedding_size or None,
        layer_norm_eps=cfg.layer_norm_eps, hidden_act=cfg.hidden_act,
        dropout=cfg.dropout if cfg.dropout >= 0 else 0.1,
        attention_dropout=cfg.attention_dropout if cfg.attention_dropout >= 0 else 0.1,
        pad_idx=pad,
    )


def build_stack_from_config(cfg, dictionary, required_positions: int, where: str = "model") -> BertStack:
    """Build (and, if configured, warm-start) the shared stack; records sizes back into ``cfg``.

    Shared by every model of this plugin that warm-starts from a checkpoint (DESIGN §4).
    """
    if cfg.pretrained_checkpoint and cfg.load_pretrained_weights:
        ck = load_pretrained(cfg.pretrained_checkpoint)
        check_dictionary_matches(dictionary, ck.dictionary, where=f"data dictionary vs {ck.path}")
        sc = ck.config
        if cfg.dropout >= 0:
            sc.dropout = cfg.dropout
        if cfg.attention_dropout >= 0:
            sc.attention_dropout = cfg.attention_dropout
        sc.max_positions = max(sc.max_positions, required_positions)
        stack = BertStack(sc)
        for line in load_into_stack(stack, ck):
            logger.info(line)
        logger.info(f"warm-started a {sc.num_layers}-layer {sc.hidden_size}-wide {ck.family} stack from {ck.path}")
        for name in _STACK_FIELDS:
            setattr(cfg, name, getattr(sc, name) or 0)
        cfg.dropout, cfg.attention_dropout = sc.dropout, sc.attention_dropout
        cfg.load_pretrained_weights = False  # the fairseq checkpoint now carries the weights
        return stack
    sc = _stack_config(cfg, len(dictionary), dictionary.pad())
    if sc.vocab_size != len(dictionary):
        raise CheckpointError(f"{where}: the model has {sc.vocab_size} vocabulary rows but the data's "
                              f"dictionary has {len(dictionary)}")
    if sc.max_positions < required_positions:
        logger.info(f"position table: {sc.max_positions} -> {required_positions} rows")
        sc.max_positions = required_positions
    cfg.max_positions = sc.max_positions
    cfg.vocab_size = sc.vocab_size
    return BertStack(sc)


class UnilmEncoder(FairseqEncoder):
    """The encoder role: runs the shared stack over ``[CLS] s [SEP]`` and keeps per-layer K/V."""

    def __init__(self, dictionary, stack: BertStack):
        super().__init__(dictionary)
        object.__setattr__(self, "stack", stack)  # shared, registered on the model only
        self.use_token_types = stack.cfg.type_vocab_size >= 2

    def forward(self, src_tokens, src_lengths=None, **unused):
        valid, positions = valid_positions(src_tokens, self.dictionary.pad())
        mask = valid[:, None, :] | torch.eye(src_tokens.size(1), dtype=torch.bool, device=src_tokens.device)[None]
        types = torch.zeros_like(src_tokens) if self.use_token_types else None
        kvs = self.stack.source_key_values(src_tokens, positions, types, mask)
        return {
            "src_tokens": [src_tokens],
            "src_valid": [valid],
            "src_keys": [k for k, _ in kvs],
            "src_values": [v for _, v in kvs],
        }

    @torch.jit.export
    def reorder_encoder_out(self, encoder_out: Dict[str, List[torch.Tensor]], new_order):
        return {key: [t.index_select(0, new_order) for t in ts] for key, ts in encoder_out.items()}

    def max_positions(self):
        return self.stack.cfg.max_positions


class UnilmDecoder(FairseqIncrementalDecoder):
    """The decoder role of the same stack, with a key/value cache (DESIGN §3).

    masked / pseudo_masked: step k feeds the previous prediction y_{k} as a real token at its
    position plus a ``[MASK]`` at the next position; the logits come from the ``[MASK]`` slot and
    only y_k's keys/values enter the cache. fairseq's first input (its BOS/EOS symbol) is not a
    target token and is skipped. causal: step k feeds ``[SOS]`` (= the dictionary's bos,
    ``[CLS]``/``<s>``) at k = 0, else y_k, and its own slot predicts the next token.
    """

    def __init__(self, dictionary, stack: BertStack, method: str, max_target_positions: int,
                 incremental: bool = True):
        super().__init__(dictionary)
        object.__setattr__(self, "stack", stack)
        self.method = method
        self.max_target_positions = max_target_positions
        self.incremental = incremental
        self.use_token_types = stack.cfg.type_vocab_size >= 2
        self.mask_idx = dictionary.mask() if hasattr(dictionary, "mask") else dictionary.index("[MASK]")

    # ------------------------------------------------------------------ full (training) path
    def forward_packed(self, src_tokens, tgt_input):
        """Hidden states of the predicting slots for a packed batch (the training computation)."""
        p = pack(src_tokens, tgt_input, self.method, self.dictionary.pad(), self.mask_idx, self.use_token_types)
        h, _ = self.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
        return h[:, p.predict_offset: p.predict_offset + tgt_input.size(1)]

    def prefix_to_tgt_input(self, prev_output_tokens):
        """The target block that makes the last slot predict the next token, as in training."""
        prefix = prev_output_tokens[:, 1:]  # drop fairseq's start symbol
        bsz = prev_output_tokens.size(0)
        if self.method == "causal":
            sos = prev_output_tokens.new_full((bsz, 1), self.dictionary.bos())
            return torch.cat([sos, prefix], dim=1)
        return torch.cat([prefix, prev_output_tokens.new_full((bsz, 1), self.mask_idx)], dim=1)

    # ------------------------------------------------------------------ fairseq interface
    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None,
                features_only=False, **kwargs):
        x = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return (x if features_only else self.output_layer(x)), None

    def extract_features(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        if incremental_state is None or not self.incremental:
            tgt_input = self.prefix_to_tgt_input(prev_output_tokens)
            h = self.forward_packed(encoder_out["src_tokens"][0], tgt_input)
            return h[:, -1:]
        return self._step(prev_output_tokens, encoder_out, incremental_state)

    def output_layer(self, features):
        return self.stack.lm_head(features)

    def _step(self, prev_output_tokens, encoder_out, incremental_state):
        step = prev_output_tokens.size(1) - 1  # target tokens generated so far
        src_valid = encoder_out["src_valid"][0]
        bsz = prev_output_tokens.size(0)
        src_len = src_valid.long().sum(dim=1, keepdim=True)
        cache = self.get_incremental_state(incremental_state, "kv")
        if cache is None:
            cache = {}
            for i in range(len(self.stack.layers)):
                cache[f"k{i}"] = encoder_out["src_keys"][i]
                cache[f"v{i}"] = encoder_out["src_values"][i]
        last = prev_output_tokens[:, -1:]
        if self.method == "causal":
            tokens = last if step > 0 else last.new_full((bsz, 1), self.dictionary.bos())
            positions = src_len + step
            cached_real = step
        elif step == 0:
            tokens = last.new_full((bsz, 1), self.mask_idx)
            positions = src_len
            cached_real = 0
        else:
            tokens = torch.cat([last, last.new_full((bsz, 1), self.mask_idx)], dim=1)
            positions = torch.cat([src_len + step - 1, src_len + step], dim=1)
            cached_real = step - 1
        n_new = tokens.size(1)
        mask = decode_step_mask(src_valid, cached_real, n_new)
        types = torch.ones_like(tokens) if self.use_token_types else None
        past = [(cache[f"k{i}"], cache[f"v{i}"]) for i in range(len(self.stack.layers))]
        h, new_kv = self.stack(tokens, positions, types, mask, past_key_values=past)
        keep = 1 if (self.method == "causal" or step > 0) else 0  # real tokens among the new slots
        if keep:
            for i, (k, v) in enumerate(new_kv):
                cache[f"k{i}"] = torch.cat([cache[f"k{i}"], k[:, :, :keep]], dim=2)
                cache[f"v{i}"] = torch.cat([cache[f"v{i}"], v[:, :, :keep]], dim=2)
        self.set_incremental_state(incremental_state, "kv", cache)
        return h[:, -1:]

    def reorder_incremental_state(self, incremental_state, new_order):
        cache = self.get_incremental_state(incremental_state, "kv")
        if cache is None:
            return
        for key in list(cache.keys()):
            cache[key] = cache[key].index_select(0, new_order)
        self.set_incremental_state(incremental_state, "kv", cache)

    def max_positions(self):
        return self.max_target_positions


@register_model("unilm_seq2seq", dataclass=UnilmSeq2SeqConfig)
class UnilmSeq2SeqModel(FairseqEncoderDecoderModel):
    def __init__(self, cfg, stack: BertStack, encoder, decoder):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        self.stack = stack  # the only registration of the shared parameters

    @classmethod
    def build_model(cls, cfg, task):
        dictionary = task.source_dictionary
        if cfg.decoding_method == "auto":
            cfg.decoding_method = getattr(task.cfg, "ft_method", "pseudo_masked")
        required = cfg.max_source_positions + cfg.max_target_positions
        stack = build_stack_from_config(cfg, dictionary, required)
        encoder = UnilmEncoder(dictionary, stack)
        decoder = UnilmDecoder(dictionary, stack, cfg.decoding_method, cfg.max_target_positions,
                               incremental=cfg.incremental_decoding)
        return cls(cfg, stack, encoder, decoder)

    def forward(self, src_tokens, src_lengths=None, tgt_input=None, features_only=False, **kwargs):
        """Training forward: hidden states (or logits) at the slots that predict the target."""
        h = self.decoder.forward_packed(src_tokens, tgt_input)
        return (h if features_only else self.decoder.output_layer(h)), None

    def output_layer(self, features):
        return self.decoder.output_layer(features)

    def max_positions(self):
        return (self.cfg.max_source_positions, self.cfg.max_target_positions)

    def max_decoder_positions(self):
        return self.cfg.max_target_positions


@register_model_architecture("unilm_seq2seq", "unilm_seq2seq_tiny")
def tiny_architecture(cfg):
    """A 2-layer, 32-wide random stack for tests (ignored when a checkpoint sets the sizes)."""
    cfg.hidden_size = 32
    cfg.num_layers = 2
    cfg.num_heads = 4
    cfg.intermediate_size = 64

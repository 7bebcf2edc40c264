"""``unilm_seq2seq``: one pretrained bidirectional stack as encoder *and* decoder (s2s-ft §2).

The model is a ``FairseqEncoderDecoderModel`` whose encoder and decoder are two roles of the
same :class:`~s2sft_fairseq.modules.bert_stack.BertStack` object. The stack is registered once
(``model.stack``); the roles hold an unregistered reference
(:func:`~s2sft_fairseq.modules.sharing.share`), so every parameter appears exactly once in the
state dict.

* Training (``forward``): the source, the target block and (pseudo-masked) the [P] block are
  packed into one sequence and run through the stack once with the method's attention mask
  (:mod:`s2sft_fairseq.packing`).
* Generation (s2s-ft §2.4): the encoder runs the stack over the source once and keeps every
  layer's source keys/values; the decoder (:class:`UnilmDecoder`) feeds each step's new slots
  (:meth:`~s2sft_fairseq.packing.Method.step_inputs`) through
  :meth:`~s2sft_fairseq.modules.bert_stack.BertStack.decode_step` with a key/value cache
  (:mod:`s2sft_fairseq.modules.kv_cache`).
"""
import logging
from dataclasses import dataclass, field

import torch
from fairseq.models import (
    FairseqEncoder, FairseqEncoderDecoderModel, FairseqIncrementalDecoder,
    register_model, register_model_architecture,
)

from ..modules.bert_stack import BertStack
from ..modules.kv_cache import reorder_source, source_encoder_out, source_memory
from ..modules.sharing import share
from ..packing import Method, bidirectional_mask, get_method, pack, valid_positions
from .warm_start import (
    WarmStartConfig, WarmStartedSeq2SeqMixin, build_stack_from_config, features_or_logits, resolve_method,
    set_tiny_sizes,
)

logger = logging.getLogger(__name__)


@dataclass
class UnilmSeq2SeqConfig(WarmStartConfig):
    incremental_decoding: bool = field(default=True, metadata={
        "help": "cache keys/values while generating; False recomputes the full packed sequence "
                "every step (for checks and benchmarks)"})


class UnilmEncoder(FairseqEncoder):
    """The encoder role: runs the shared stack over ``[CLS] s [SEP]`` and keeps per-layer K/V
    (:func:`~s2sft_fairseq.modules.kv_cache.source_encoder_out` says what ``encoder_out`` holds)."""

    def __init__(self, dictionary, stack: BertStack, method: Method):
        super().__init__(dictionary)
        share(self, "stack", stack)
        self.method = get_method(method)

    def forward(self, src_tokens, src_lengths=None, **unused):
        src_tokens = self.method.prepare_source(src_tokens, self.dictionary.eos(), self.dictionary.pad())
        valid, positions = valid_positions(src_tokens, self.dictionary.pad())
        types = self.stack.token_types(src_tokens, target=False)
        # the last layer's output is never used: only its keys/values (output_from = all rows)
        _, key_values = self.stack(src_tokens, positions, types, bidirectional_mask(valid),
                                   output_from=src_tokens.size(1))
        return source_encoder_out(src_tokens, valid, positions, key_values, self.stack.layers[0].num_heads)

    @torch.jit.export
    def reorder_encoder_out(self, encoder_out, new_order):
        return reorder_source(encoder_out, new_order)

    def max_positions(self):
        return self.stack.cfg.max_positions


class UnilmDecoder(FairseqIncrementalDecoder):
    """The decoder role of the same stack, with a key/value cache (s2s-ft §2.4).

    masked / pseudo_masked: step k feeds the previous prediction y_{k} as a real token at its
    position plus a ``[MASK]`` at the next position; the logits come from the ``[MASK]`` slot and
    only y_k's keys/values enter the cache. fairseq's first input (its BOS/EOS symbol) is not a
    target token and is skipped. causal: step k feeds ``[SOS]`` (= the dictionary's bos,
    ``[CLS]``/``<s>``) at k = 0, else y_k, and its own slot predicts the next token
    (:class:`~s2sft_fairseq.packing.Method` says which). Whatever prefix is not in the cache yet
    is fed at once, so a cache may also be started mid-sequence. The incremental path is
    inference-only. ``incremental=False`` (``--model-overrides "{'incremental_decoding': False}"``)
    recomputes the packed training computation over source + prefix at every step instead.
    """

    def __init__(self, dictionary, stack: BertStack, method: Method, max_target_positions: int,
                 incremental: bool = True):
        super().__init__(dictionary)
        share(self, "stack", stack)
        self.method = get_method(method)
        self.max_target_positions = max_target_positions
        self.incremental = incremental

    # ------------------------------------------------------------------ full (training) path
    def forward_packed(self, src_tokens, tgt_input, pseudo_input=None):
        """Hidden states of the predicting slots for a packed batch (the training computation)."""
        d = self.dictionary
        src_tokens = self.method.prepare_source(src_tokens, d.eos(), d.pad())
        p = pack(src_tokens, tgt_input, self.method, d.pad(), d.mask(), self.stack.uses_token_types,
                 type_ids=(self.stack.cfg.source_type_id, self.stack.cfg.target_type_id), pseudo_input=pseudo_input)
        h, _ = self.stack(p.tokens, p.positions, p.token_types, p.attn_mask, block_ends=p.block_ends,
                          output_from=p.predict_offset)
        return h[:, : tgt_input.size(1)]

    def prefix_to_tgt_input(self, prev_output_tokens):
        """The target block that makes the last slot predict the next token, as in training."""
        return self.method.prefix_to_target_block(prev_output_tokens[:, 1:], self.method.start_token(self.dictionary),
                                                  self.dictionary.mask())

    # ------------------------------------------------------------------ fairseq interface
    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None,
                features_only=False, **kwargs):
        x = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return features_or_logits(self.stack, x, features_only), None

    def extract_features(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        if incremental_state is None or not self.incremental:
            tgt_input = self.prefix_to_tgt_input(prev_output_tokens)
            h = self.forward_packed(encoder_out["src_tokens"][0], tgt_input)
            return h[:, -1:]
        return self._step(prev_output_tokens, encoder_out, incremental_state)

    def output_layer(self, features):
        return self.stack.lm_head(features)

    # ------------------------------------------------------------------ incremental path
    @torch.no_grad()
    def _step(self, prev_output_tokens, encoder_out, incremental_state):
        """One incremental step: feed the slots not cached yet, keep the real tokens' K/V."""
        rows = prev_output_tokens.size(0)
        generated = prev_output_tokens[:, 1:]  # without fairseq's start symbol
        n_real = self.method.target_tokens_in_prefix(generated.size(1))
        cache = self.get_incremental_state(incremental_state, "cache")
        if cache is None:
            capacity = max(self.max_target_positions + 2, n_real + 1)
            cache = self.stack.new_decode_cache(rows, capacity, encoder_out["src_keys"][0])
        cache.check(rows, n_real)
        new = self.method.step_inputs(generated, cache.len, self.method.start_token(self.dictionary),
                                      self.dictionary.mask())
        src_len = encoder_out["src_valid"][0].sum(dim=1, keepdim=True)
        positions = src_len + torch.arange(cache.len, cache.len + new.size(1), device=new.device)[None]
        types = self.stack.token_types(new, target=True)
        x = self.stack.decode_step(new, positions, types, cache, source_memory(encoder_out))
        cache.len += self.method.cached_after_step(new.size(1))
        self.set_incremental_state(incremental_state, "cache", cache)
        return x

    @torch.no_grad()
    def reorder_incremental_state(self, incremental_state, new_order):
        cache = self.get_incremental_state(incremental_state, "cache")
        if cache is not None:
            cache.reorder(new_order)
            self.set_incremental_state(incremental_state, "cache", cache)

    def max_positions(self):
        return self.max_target_positions


@register_model("unilm_seq2seq", dataclass=UnilmSeq2SeqConfig)
class UnilmSeq2SeqModel(WarmStartedSeq2SeqMixin, FairseqEncoderDecoderModel):
    def __init__(self, cfg, stack: BertStack, encoder, decoder):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        self.stack = stack  # the only registration of the shared parameters

    @classmethod
    def build_model(cls, cfg, task):
        dictionary = task.source_dictionary
        method = resolve_method(cfg, task)
        required = cfg.max_source_positions + cfg.max_target_positions
        stack = build_stack_from_config(cfg, dictionary, required)
        encoder = UnilmEncoder(dictionary, stack, method)
        decoder = UnilmDecoder(dictionary, stack, method, cfg.max_target_positions,
                               incremental=cfg.incremental_decoding)
        return cls(cfg, stack, encoder, decoder)

    def forward(self, src_tokens, src_lengths=None, tgt_input=None, pseudo_input=None, features_only=False,
                **kwargs):
        """Training forward: hidden states (or logits) at the slots that predict the target."""
        h = self.decoder.forward_packed(src_tokens, tgt_input, pseudo_input)
        return (h if features_only else self.decoder.output_layer(h)), None


@register_model_architecture("unilm_seq2seq", "unilm_seq2seq_tiny")
def tiny_architecture(cfg):
    set_tiny_sizes(cfg)

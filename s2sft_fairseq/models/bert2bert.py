"""``bert2bert``: the Rothe et al. (2020) warm-started encoder-decoder baseline (Rothe et al.; docs/design.md §5).

Encoder and decoder are both :class:`BertStack` s warm-started from the same checkpoint
(:func:`build_stack_from_config`, shared with ``unilm_seq2seq``):

* **Encoder**: the stack run bidirectionally over ``[CLS] s [SEP]`` (padding masked out,
  positions counted over real tokens, so left padding shifts nothing).
* **Decoder**: the same architecture with causal self-attention and, in every layer, a
  cross-attention block (query/key/value/output + LayerNorm, post-LN) inserted between the
  self-attention and the feed-forward halves of the pretrained :class:`Layer` -- the layout of
  Rothe et al. and of Hugging Face's ``BertGenerationDecoder`` / ``add_cross_attention``. The
  cross-attention blocks are the only new weights; they start from BERT's initialisation
  (N(0, 0.02), LayerNorm 1/0).
* **Output layer**: the decoder stack's MLM head (``stack.lm_head``), tied to its word embeddings.

Variants:

* ``bert2bert`` (default): two stacks. Following Rothe et al. (whose BERT2BERT has 221M
  parameters against 248M for two fully separate BERT-base towers plus cross-attention) the
  *word embedding matrix* is shared between encoder and decoder (registered once, in the
  decoder); ``--separate-word-embeddings`` gives each its own copy, the layout of Hugging Face's
  ``EncoderDecoderModel`` where nothing is shared. The encoder keeps no MLM head.
* ``--share-encoder-decoder``: BERTShare / RoBERTaShare. Encoder and decoder are one stack
  (every weight except cross-attention shared); it is registered once, on the model
  (``model.stack``), and the two roles hold unregistered references, as in ``unilm_seq2seq``,
  so each shared tensor appears exactly once in the state dict.

Inputs (choices the paper leaves open, written down here):

* Token types: 0 on both sides. Rothe et al. initialise the decoder from the plain BERT
  checkpoint and feed it as a single segment; ``BertLMHeadModel`` defaults to type 0 and
  ``BertGenerationDecoder`` has no type embedding at all. (``unilm_seq2seq`` uses type 1 for the
  target only because source and target share one packed sequence; here they do not.)
* Decoder positions start at 0 for the target: ``[SOS]`` is at 0, ``t_j`` at ``j``, as if the
  target were a standalone BERT sequence starting with ``[CLS]``.
* Decoder input: with ``--ft-method causal`` the task supplies ``tgt_input = [SOS] t_1..t_{n-1}``
  (``[SOS]`` = the dictionary's bos, ``[CLS]``/``<s>``) and labels ``t_1..t_n``; the other
  methods make no sense for an encoder-decoder and are refused as soon as a batch carries
  ``tgt_input`` (``fairseq-generate`` needs no ``--ft-method``).
  fairseq's generator (and the stock translation task's ``prev_output_tokens``) starts with eos
  instead; the decoder maps that first slot to bos, so generation sees exactly what training
  saw. The decoder input is expected right-padded (the task and the generator produce that).

Decoding is incremental (:class:`Bert2BertDecoder`): the self-attention keys/values of earlier
target tokens are cached, the cross-attention keys/values are projected once from the encoder
output at the first step, and both are reordered for beams and shrinking batches.
"""
import copy
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from fairseq.models import (
    FairseqEncoder, FairseqEncoderDecoderModel, FairseqIncrementalDecoder,
    register_model, register_model_architecture,
)

from ..modules.attention import AttentionBlock
from ..modules.bert_stack import BertStack, StackConfig
from ..modules.sharing import share
from ..packing import CAUSAL, bidirectional_mask, causal_mask, valid_positions
from .warm_start import WarmStartConfig, WarmStartedSeq2SeqMixin, build_stack_from_config, features_or_logits, resolve_method, set_tiny_sizes

logger = logging.getLogger(__name__)


@dataclass
class Bert2BertConfig(WarmStartConfig):
    share_encoder_decoder: bool = field(default=False, metadata={
        "help": "BERTShare / RoBERTaShare (Rothe et al.): encoder and decoder share every weight "
                "except cross-attention"})
    separate_word_embeddings: bool = field(default=False, metadata={
        "help": "without --share-encoder-decoder: give encoder and decoder their own copy of the "
                "word embedding matrix (Hugging Face EncoderDecoderModel); by default they share "
                "one, as Rothe et al.'s BERT2BERT does"})


# --------------------------------------------------------------------------- layer pieces
class CrossAttention(AttentionBlock):
    """Encoder-decoder attention block: the attention half of a :class:`Layer` (same parameter
    names, same post-LN residual), queries from the decoder, keys/values from the encoder output.
    Starts from BERT's initialisation; the checkpoint has nothing for it."""

    def __init__(self, cfg: StackConfig):
        super().__init__(cfg)
        self.apply(BertStack._init_weights)


# --------------------------------------------------------------------------- encoder
class Bert2BertEncoder(FairseqEncoder):
    """Bidirectional BERT encoder over ``[CLS] s [SEP]`` (token type 0, positions from 0)."""

    def __init__(self, dictionary, stack: BertStack, register_stack: bool = True):
        super().__init__(dictionary)
        if register_stack:
            self.stack = stack
        else:
            share(self, "stack", stack)

    def forward(self, src_tokens, src_lengths=None, **unused):
        valid, positions = valid_positions(src_tokens, self.dictionary.pad())
        h, _ = self.stack(src_tokens, positions, None, bidirectional_mask(valid))
        return {"encoder_out": [h], "src_valid": [valid]}

    @torch.jit.export
    def reorder_encoder_out(self, encoder_out: Dict[str, List[torch.Tensor]], new_order):
        return {key: [t.index_select(0, new_order) for t in ts] for key, ts in encoder_out.items()}

    def max_positions(self):
        return self.stack.cfg.max_positions


# --------------------------------------------------------------------------- decoder
class Bert2BertDecoder(FairseqIncrementalDecoder):
    """Causal BERT decoder with one cross-attention block per layer, incremental for generation.

    Layer i = self-attention half of ``stack.layers[i]`` (causal) -> ``cross_attention[i]`` ->
    feed-forward half of ``stack.layers[i]``.
    """

    def __init__(self, dictionary, stack: BertStack, cross_attention: nn.ModuleList,
                 max_target_positions: int, register_stack: bool = True):
        super().__init__(dictionary)
        if len(cross_attention) != len(stack.layers):
            raise ValueError(f"{len(cross_attention)} cross-attention blocks for {len(stack.layers)} layers")
        if register_stack:
            self.stack = stack
        else:
            share(self, "stack", stack)
        self.cross_attention = cross_attention
        self.max_target_positions = max_target_positions

    def _with_sos(self, tokens):
        """Slot 0 is [SOS] = bos, whatever start symbol the caller used (fairseq feeds eos)."""
        return torch.cat([tokens.new_full((tokens.size(0), 1), self.dictionary.bos()), tokens[:, 1:]], dim=1)

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None,
                features_only=False, **kwargs):
        x = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return features_or_logits(self.stack, x, features_only), None

    def extract_features(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        if incremental_state is not None:
            return self._step(prev_output_tokens, encoder_out, incremental_state)
        return self._full(prev_output_tokens, encoder_out)

    def output_layer(self, features):
        return self.stack.lm_head(features)

    def _cross_hook(self, keys_values, cross_mask):
        """The stack's ``cross`` hook: layer ``i``'s cross-attention over the encoder output."""
        def hook(i, h):
            return self.cross_attention[i](h, *keys_values[i], cross_mask)
        return hook

    def _full(self, prev_output_tokens, encoder_out):
        """All target slots at once (training, and the reference for the cache)."""
        tokens = self._with_sos(prev_output_tokens)
        valid, positions = valid_positions(tokens, self.dictionary.pad())
        enc = encoder_out["encoder_out"][0]
        cross_kv = [cross.project_kv(enc) for cross in self.cross_attention]
        cross_mask = encoder_out["src_valid"][0][:, None, None, :]                 # (B, 1, 1, S)
        h, _ = self.stack(tokens, positions, None, causal_mask(valid), cross=self._cross_hook(cross_kv, cross_mask))
        return h

    def _step(self, prev_output_tokens, encoder_out, incremental_state):
        """One new target slot: self-attention over the cached target keys/values
        (:meth:`~s2sft_fairseq.modules.bert_stack.BertStack.decode_step`, no source part), then
        cross-attention over keys/values projected once from the encoder output."""
        step = prev_output_tokens.size(1) - 1
        bsz = prev_output_tokens.size(0)
        state = self.get_incremental_state(incremental_state, "state")
        if state is None:  # first step: project the encoder output once per layer
            enc = encoder_out["encoder_out"][0]
            state = {"cache": self.stack.new_decode_cache(bsz, self.max_target_positions + 1, enc),
                     "cross": [t for cross in self.cross_attention for t in cross.project_kv(enc)]}
        cache = state["cache"]
        cache.check(bsz, step + 1)
        tokens = prev_output_tokens[:, cache.len:] if cache.len else self._with_sos(prev_output_tokens)
        positions = torch.arange(cache.len, step + 1, device=tokens.device)[None].expand(bsz, -1)
        cross_kv = list(zip(state["cross"][0::2], state["cross"][1::2]))
        cross_mask = encoder_out["src_valid"][0][:, None, None, :]
        x = self.stack.decode_step(tokens, positions, None, cache, None,
                                   cross=self._cross_hook(cross_kv, cross_mask))
        cache.len = step + 1
        self.set_incremental_state(incremental_state, "state", state)
        return x

    def reorder_incremental_state(self, incremental_state, new_order):
        state = self.get_incremental_state(incremental_state, "state")
        if state is None:
            return
        state["cache"].reorder(new_order)
        state["cross"] = [t.index_select(0, new_order) for t in state["cross"]]
        self.set_incremental_state(incremental_state, "state", state)

    def max_positions(self):
        return self.max_target_positions


# --------------------------------------------------------------------------- model
def _method_error(method) -> str:
    if method.shifted_target:
        return ("bert2bert follows Rothe et al. and trains with --corruption paper (clean decoder inputs "
                "starting with [CLS]); --corruption reference is the s2s-ft code's recipe for unilm_seq2seq")
    return (f"bert2bert is a left-to-right encoder-decoder (Rothe et al.) and trains only with "
            f"--ft-method causal (decoder input [SOS] t_1..t_(n-1), labels t_1..t_n); got "
            f"--ft-method {method}")


@register_model("bert2bert", dataclass=Bert2BertConfig)
class Bert2BertModel(WarmStartedSeq2SeqMixin, FairseqEncoderDecoderModel):
    def __init__(self, cfg, encoder, decoder, shared_stack: Optional[BertStack] = None):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        self.method = CAUSAL  # the task's --ft-method, set by build_model; checked in forward
        if shared_stack is not None:
            self.stack = shared_stack  # BERTShare: the only registration of the shared weights

    @classmethod
    def build_model(cls, cfg, task):
        # The task's --ft-method is checked on the first batch that carries tgt_input (forward),
        # not here: fairseq-generate rebuilds the model with the task's default method.
        method = resolve_method(cfg, task)
        dictionary = task.source_dictionary
        tgt_dict = task.target_dictionary
        if tgt_dict is not None and list(tgt_dict.symbols) != list(dictionary.symbols):
            raise ValueError("bert2bert: source and target dictionaries differ; both sides use the "
                             "checkpoint's vocabulary")
        required = max(cfg.max_source_positions, cfg.max_target_positions)
        stack = build_stack_from_config(cfg, dictionary, required, where="bert2bert")
        cross = nn.ModuleList(CrossAttention(stack.cfg) for _ in range(len(stack.layers)))
        if cfg.share_encoder_decoder:
            encoder = Bert2BertEncoder(dictionary, stack, register_stack=False)
            decoder = Bert2BertDecoder(dictionary, stack, cross, cfg.max_target_positions, register_stack=False)
            model = cls(cfg, encoder, decoder, shared_stack=stack)
        else:
            # Both towers start from the same checkpoint: the encoder is a copy of the loaded
            # stack (identical to loading the checkpoint a second time).
            enc_stack = copy.deepcopy(stack)
            enc_stack.lm_head = None  # the output layer is the decoder's
            if not cfg.separate_word_embeddings:
                share(enc_stack.embeddings, "word", stack.embeddings.word)
            encoder = Bert2BertEncoder(dictionary, enc_stack)
            decoder = Bert2BertDecoder(dictionary, stack, cross, cfg.max_target_positions)
            model = cls(cfg, encoder, decoder)
        model.method = method
        n = sum(p.numel() for p in model.parameters())
        n_cross = sum(p.numel() for p in cross.parameters())
        logger.info(f"bert2bert ({'shared encoder-decoder' if cfg.share_encoder_decoder else 'separate encoder and decoder'}"
                    f"{', separate word embeddings' if cfg.separate_word_embeddings and not cfg.share_encoder_decoder else ''}): "
                    f"{n:,} parameters, {n_cross:,} of them in the new cross-attention blocks")
        return model

    def forward(self, src_tokens, src_lengths=None, tgt_input=None, prev_output_tokens=None,
                features_only=False, **kwargs):
        """Training forward: hidden states (or logits) of every target slot.

        ``tgt_input`` (task, ``--ft-method causal``) or ``prev_output_tokens`` (fairseq's
        translation convention, eos first) is the decoder input; its first slot becomes [SOS].
        """
        if tgt_input is not None and (not self.method.shifted_target or not self.method.source_closing_sep):
            raise ValueError(_method_error(self.method))
        dec_in = tgt_input if tgt_input is not None else prev_output_tokens
        if dec_in is None:
            raise ValueError("bert2bert.forward needs tgt_input (or prev_output_tokens)")
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        return self.decoder(dec_in, encoder_out=encoder_out, features_only=features_only)



@register_model_architecture("bert2bert", "bert2bert_tiny")
def tiny_architecture(cfg):
    set_tiny_sizes(cfg)

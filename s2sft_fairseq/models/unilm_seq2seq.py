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
from typing import Dict, List

import torch
import torch.nn.functional as F
from fairseq.dataclass import ChoiceEnum
from fairseq.models import (
    FairseqEncoder, FairseqEncoderDecoderModel, FairseqIncrementalDecoder,
    register_model, register_model_architecture,
)

from ..masks import METHODS, pack, valid_positions
from ..modules.bert_stack import BertStack
from .warm_start import WarmStartConfig, WarmStartedSeq2SeqMixin, build_stack_from_config, set_tiny_sizes

logger = logging.getLogger(__name__)


@dataclass
class UnilmSeq2SeqConfig(WarmStartConfig):
    decoding_method: ChoiceEnum(("auto",) + METHODS) = field(default="auto", metadata={
        "help": "how the decoder feeds its inputs; auto = the task's --ft-method at training"})
    incremental_decoding: bool = field(default=True, metadata={
        "help": "cache keys/values while generating; False recomputes the full packed sequence "
                "every step (for checks and benchmarks)"})


class UnilmEncoder(FairseqEncoder):
    """The encoder role: runs the shared stack over ``[CLS] s [SEP]`` and keeps per-layer K/V.

    ``encoder_out`` holds two kinds of entries. Per *row* (reordered by fairseq at every beam
    step, all small): ``src_tokens``, ``src_valid`` and ``src_index``, the row's entry in the
    per-*sentence* tensors ``src_keys`` / ``src_values`` (one per layer, ``(n, heads, S, d)``)
    and ``src_bias`` (``(n, heads, 1, S)``, 0 or -inf for padding). The per-sentence tensors are
    never expanded to the beam and never copied by a beam reorder; :meth:`reorder_encoder_out`
    only compacts them when fairseq drops finished sentences.
    """

    ROW_KEYS = ("src_tokens", "src_valid", "src_index")

    def __init__(self, dictionary, stack: BertStack):
        super().__init__(dictionary)
        object.__setattr__(self, "stack", stack)  # shared, registered on the model only
        self.use_token_types = stack.cfg.type_vocab_size >= 2

    def forward(self, src_tokens, src_lengths=None, **unused):
        valid, positions = valid_positions(src_tokens, self.dictionary.pad())
        mask = valid[:, None, :] | torch.eye(src_tokens.size(1), dtype=torch.bool, device=src_tokens.device)[None]
        types = torch.zeros_like(src_tokens) if self.use_token_types else None
        keys, values = [], []
        x = self.stack.embeddings(src_tokens, positions, types)
        mask = mask.unsqueeze(1)
        layers = self.stack.layers
        for i, layer in enumerate(layers):
            if i + 1 < len(layers):
                x, (k, v) = layer(x, mask)
            else:  # the last layer's output is never used: only its keys/values are needed
                k, v = layer.project_kv(x)
            keys.append(k.contiguous())  # (n, h, S, d) with (n, h) flattenable for batched matmuls
            values.append(v.contiguous())
        bias = torch.zeros(valid.shape, dtype=keys[0].dtype, device=src_tokens.device)
        bias.masked_fill_(~valid, float("-inf"))
        return {
            "src_tokens": [src_tokens],
            "src_valid": [valid],
            "src_index": [torch.arange(src_tokens.size(0), device=src_tokens.device)],
            "src_keys": keys,
            "src_values": values,
            "src_bias": [bias[:, None, None, :].expand(-1, layers[0].num_heads, 1, -1).contiguous()],
        }

    @torch.jit.export
    def reorder_encoder_out(self, encoder_out: Dict[str, List[torch.Tensor]], new_order):
        out = {key: [t.index_select(0, new_order) for t in encoder_out[key]] for key in self.ROW_KEYS}
        index = out["src_index"][0]
        shared = {key: ts for key, ts in encoder_out.items() if key not in self.ROW_KEYS}
        n_shared = encoder_out["src_keys"][0].size(0) if encoder_out.get("src_keys") else 0
        if index.numel() and n_shared:
            used, inverse = torch.unique(index, sorted=True, return_inverse=True)
            if used.numel() < n_shared:  # sentences left the batch: drop their source K/V once
                shared = {key: [t.index_select(0, used) for t in ts] for key, ts in shared.items()}
                out["src_index"] = [inverse]
        out.update(shared)
        return out

    def max_positions(self):
        return self.stack.cfg.max_positions


def _grouping(src_index: torch.Tensor, n_src: int) -> int:
    """g if rows are ``g`` consecutive rows per source entry 0..n_src-1 (fairseq's beam layout), else 0."""
    rows = src_index.numel()
    if n_src == 0 or rows % n_src:
        return 0
    g = rows // n_src
    expected = torch.arange(n_src, device=src_index.device).repeat_interleave(g)
    return g if torch.equal(src_index, expected) else 0


class UnilmDecoder(FairseqIncrementalDecoder):
    """The decoder role of the same stack, with a key/value cache (DESIGN §3).

    masked / pseudo_masked: step k feeds the previous prediction y_{k} as a real token at its
    position plus a ``[MASK]`` at the next position; the logits come from the ``[MASK]`` slot and
    only y_k's keys/values enter the cache. fairseq's first input (its BOS/EOS symbol) is not a
    target token and is skipped. causal: step k feeds ``[SOS]`` (= the dictionary's bos,
    ``[CLS]``/``<s>``) at k = 0, else y_k, and its own slot predicts the next token.

    The cache (:meth:`_step`): per layer a target key buffer and value buffer
    ``(rows, heads, capacity, head_dim)`` allocated once, written in place, plus a spare set
    for beam reorders (``index_select(..., out=spare)`` over the filled part only, then swap).
    Source keys/values stay per sentence in ``encoder_out`` and are shared by the beam rows of
    the sentence: queries of a sentence's ``g`` rows are batched against its source keys in
    one matmul, then joined with the row's target scores in a single softmax. Query, key and
    value are one fused projection (built per cache, i.e. per generate call). The per-step cost
    is independent of the prefix length apart from the attention itself and the reorder copy.
    Whatever prefix is not in the cache yet is fed at once, so a cache may also be started
    mid-sequence. The incremental path is inference-only (no gradients through the cache).
    ``incremental=False`` (``--model-overrides "{'incremental_decoding': False}"``) recomputes
    the packed training computation over source + prefix at every step instead.
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
        self._consts = {}  # small constant tensors (see _causal_bias)

    # ------------------------------------------------------------------ full (training) path
    def forward_packed(self, src_tokens, tgt_input):
        """Hidden states of the predicting slots for a packed batch (the training computation)."""
        p = pack(src_tokens, tgt_input, self.method, self.dictionary.pad(), self.mask_idx, self.use_token_types)
        h, _ = self.stack(p.tokens, p.positions, p.token_types, p.attn_mask, block_ends=p.block_ends,
                          output_from=p.predict_offset)
        return h[:, : tgt_input.size(1)]

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
        if features_only:
            return x, None
        if torch.is_grad_enabled():
            return self.output_layer(x), None
        return self._logits_no_grad(self.stack.lm_head, x), None

    def extract_features(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        if incremental_state is None or not self.incremental:
            tgt_input = self.prefix_to_tgt_input(prev_output_tokens)
            h = self.forward_packed(encoder_out["src_tokens"][0], tgt_input)
            return h[:, -1:]
        return self._step(prev_output_tokens, encoder_out, incremental_state)

    def output_layer(self, features):
        return self.stack.lm_head(features)

    LOGITS_CHUNK = 8192

    @classmethod
    def _logits_no_grad(cls, head, features):
        """``head(features)`` for decoding (``forward`` without gradients), as ``W[chunk] @ x^T``.

        Same result as :class:`~s2sft_fairseq.modules.bert_stack.LMHead` (to ~1e-6), ~20-30 %
        faster on CPU for the few rows of a decoding step (the vocabulary projection is the
        largest matmul of a step): BLAS handles the tall-skinny ``W @ x^T`` better than the
        short-wide ``x @ W^T``. Falls back to ``head`` if its structure is not the expected one.
        """
        weight = getattr(head, "word_embeddings", [None])[0]
        if weight is None or not all(hasattr(head, a) for a in ("dense", "act", "layer_norm", "bias")):
            return head(features)
        weight = weight.weight
        x = head.layer_norm(head.act(head.dense(features)))
        lead = x.shape[:-1]
        x = x.reshape(-1, x.size(-1))
        vocab = weight.size(0)
        out = x.new_empty(x.size(0), vocab)
        for start in range(0, vocab, cls.LOGITS_CHUNK):
            end = min(vocab, start + cls.LOGITS_CHUNK)
            torch.add(torch.mm(weight[start:end], x.t()).t(), head.bias[start:end], out=out[:, start:end])
        return out.view(*lead, vocab)

    # ------------------------------------------------------------------ incremental path
    def _new_cache(self, rows: int, need: int, like: torch.Tensor):
        layer = self.stack.layers[0]
        cap = max(self.max_target_positions + 2, need)
        shape = (rows, layer.num_heads, cap, layer.head_dim)
        n = 2 * len(self.stack.layers)
        return {
            "kv": [like.new_empty(shape) for _ in range(n)],     # k0, v0, k1, v1, ...
            "spare": [like.new_empty(shape) for _ in range(n)],  # reorder target, swapped in
            "qkv": [self._fused_qkv(layer) for layer in self.stack.layers],
            "rows": rows,
            "len": 0,  # real target tokens whose keys/values are cached
        }

    @staticmethod
    def _grow(cache, need: int):
        """Enlarge the time capacity (only if someone decodes past max_target_positions)."""
        cap = cache["kv"][0].size(2)
        if need <= cap:
            return
        new_cap = max(need, 2 * cap)
        filled = cache["len"]
        for name in ("kv", "spare"):
            grown = []
            for t in cache[name]:
                g = t.new_empty(t.size(0), t.size(1), new_cap, t.size(3))
                if name == "kv":
                    g[:, :, :filled] = t[:, :, :filled]
                grown.append(g)
            cache[name] = grown

    @torch.no_grad()
    def _step(self, prev_output_tokens, encoder_out, incremental_state):
        """One incremental step (inference only: no gradients flow through the cache)."""
        rows = prev_output_tokens.size(0)
        step = prev_output_tokens.size(1) - 1  # target tokens generated so far
        src_valid = encoder_out["src_valid"][0]
        src_len = src_valid.sum(dim=1, keepdim=True)
        keys, values = encoder_out["src_keys"], encoder_out["src_values"]
        src_bias = encoder_out["src_bias"][0]
        cache = self.get_incremental_state(incremental_state, "cache")
        causal = self.method == "causal"
        if cache is None:
            cache = self._new_cache(rows, step + 2, keys[0])
        if cache["rows"] != rows:
            raise RuntimeError(f"incremental state has {cache['rows']} rows but the decoder got {rows}: "
                               "reorder_incremental_state was not called")
        cached = cache["len"]
        # the real target stream: [SOS] y_1 .. y_step (causal) or y_1 .. y_step (masked methods)
        n_real = step + 1 if causal else step
        if cached > n_real:
            raise RuntimeError(f"incremental state holds {cached} target tokens but the prefix has {n_real}")
        new = prev_output_tokens[:, 1 + cached - (1 if causal else 0):]  # fed tokens not cached yet
        if causal and cached == 0:
            new = torch.cat([new.new_full((rows, 1), self.dictionary.bos()), new[:, 1:]], dim=1)
        if not causal:
            new = torch.cat([new, new.new_full((rows, 1), self.mask_idx)], dim=1)
        n = new.size(1)
        self._grow(cache, cached + n)
        positions = src_len + torch.arange(cached, cached + n, device=new.device)[None]
        types = torch.ones_like(new) if self.use_token_types else None
        x = self.stack.embeddings(new, positions, types)

        # how rows map onto the per-sentence source keys (see UnilmEncoder)
        index = encoder_out["src_index"][0]
        g = _grouping(index, keys[0].size(0))
        if g == 0:  # irregular row order: fall back to per-row source keys
            keys = [k.index_select(0, index) for k in keys]
            values = [v.index_select(0, index) for v in values]
            src_bias = src_bias.index_select(0, index)
            g = 1
        new_bias = self._causal_bias(n, x) if n > 1 else None  # new slots see earlier ones and themselves
        layers = self.stack.layers
        for i, layer in enumerate(layers):
            x = self._layer_step(layer, cache["qkv"][i], x, keys[i], values[i], src_bias, g,
                                 cache["kv"][2 * i], cache["kv"][2 * i + 1], cached, new_bias,
                                 last_only=(i + 1 == len(layers)))
        cache["len"] = cached + (n if causal else n - 1)  # the [MASK] slot is never cached
        self.set_incremental_state(incremental_state, "cache", cache)
        return x[:, -1:]

    def _causal_bias(self, n, like):
        key = (n, like.dtype, like.device)
        bias = self._consts.get(key)
        if bias is None:
            bias = torch.zeros(n, n, dtype=like.dtype, device=like.device)
            bias.masked_fill_(torch.ones(n, n, dtype=torch.bool, device=like.device).triu(1), float("-inf"))
            self._consts[key] = bias
        return bias

    @staticmethod
    def _fused_qkv(layer):
        """One (3H, H) projection for query (pre-scaled by 1/sqrt(head_dim)), key and value.

        Built when a cache is created, i.e. once per generate call, so it always matches the
        current weights."""
        mods = (layer.query, layer.key, layer.value)
        scale = layer.head_dim ** -0.5
        weight = torch.cat([layer.query.weight * scale, layer.key.weight, layer.value.weight])
        biases = [m.bias if m.bias is not None else m.weight.new_zeros(m.weight.size(0)) for m in mods]
        return weight, torch.cat([biases[0] * scale, biases[1], biases[2]])

    def _layer_step(self, layer, qkv, x, src_k, src_v, src_bias, g, tk, tv, cached, new_bias, last_only):
        """One layer of :class:`~s2sft_fairseq.modules.bert_stack.Layer` for the new slots ``x``.

        Same computation as ``Layer.forward`` with keys ``[source | cached target | new]`` and
        the decode-step mask (:func:`~s2sft_fairseq.masks.decode_step_mask`), organised so the
        source keys are read once per sentence. With ``last_only`` only the last slot's output
        is computed (the others only contribute keys/values).
        """
        R, n, H = x.shape
        h, d = layer.num_heads, layer.head_dim
        B, S = src_k.size(0), src_k.size(2)
        T = cached + n
        q, k, v = F.linear(x, *qkv).split(H, dim=-1)                 # (R, n, H) each
        tk[:, :, cached:T] = k.view(R, n, h, d).transpose(1, 2)
        tv[:, :, cached:T] = v.view(R, n, h, d).transpose(1, 2)
        xq = x[:, -1:] if last_only else x
        nq = xq.size(1)
        q = q[:, n - nq:]                                                      # scaled queries
        # source part: all g rows of a sentence against its keys in one batched matmul
        qs = q.reshape(B, g, nq, h, d).permute(0, 3, 1, 2, 4).reshape(B * h, g * nq, d)
        s_src = torch.baddbmm(src_bias.view(B * h, 1, S), qs, src_k.view(B * h, S, d).transpose(1, 2))
        s_src = s_src.view(B, h, g, nq, S).transpose(1, 2).reshape(R, h, nq, S)
        # target part: per row
        qt = q.reshape(R, nq, h, d).transpose(1, 2)                           # (R, h, nq, d)
        s_tgt = torch.matmul(qt, tk[:, :, :T].transpose(-1, -2))             # (R, h, nq, T)
        if new_bias is not None and nq > 1:
            s_tgt[:, :, :, cached:].add_(new_bias)
        p = torch.softmax(torch.cat([s_src, s_tgt], dim=-1), dim=-1)
        if self.training and layer.attention_dropout > 0:
            p = F.dropout(p, layer.attention_dropout)
        p_src = p[..., :S].reshape(B, g, h, nq, S).transpose(1, 2).reshape(B * h, g * nq, S)
        c_src = torch.bmm(p_src, src_v.view(B * h, S, d))                    # (B*h, g*nq, d)
        ctx = c_src.view(B, h, g, nq, d).permute(0, 2, 3, 1, 4).reshape(R, nq, H)
        ctx.view(R, nq, h, d).add_(torch.matmul(p[..., S:], tv[:, :, :T]).transpose(1, 2))
        x = layer.attn_layer_norm(xq + layer.dropout(layer.attn_out(ctx)))  # = the end of Layer.attend
        return layer.feed_forward(x)

    @torch.no_grad()
    def reorder_incremental_state(self, incremental_state, new_order):
        cache = self.get_incremental_state(incremental_state, "cache")
        if cache is None:
            return
        rows, filled = new_order.numel(), cache["len"]
        if rows > cache["spare"][0].size(0):  # more rows than allocated: reallocate the spare set
            cache["spare"] = [t.new_empty((rows,) + t.shape[1:]) for t in cache["spare"]]
        out = []
        for src, dst in zip(cache["kv"], cache["spare"]):
            dst = dst[:rows]
            if filled:
                torch.index_select(src[:, :, :filled], 0, new_order, out=dst[:, :, :filled])
            out.append(dst)
        cache["spare"] = cache["kv"]
        cache["kv"] = out
        cache["rows"] = rows
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



@register_model_architecture("unilm_seq2seq", "unilm_seq2seq_tiny")
def tiny_architecture(cfg):
    set_tiny_sizes(cfg)

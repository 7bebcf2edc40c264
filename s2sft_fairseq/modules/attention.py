"""Multi-head attention of the stack: the training/full-forward kernel and the decode-step kernel.

* :func:`attention` is ``dropout(softmax(q k^T / sqrt(d) + mask)) v`` for a whole packed sequence
  (SDPA, or written out when attention dropout runs on the CPU).
* :class:`BlockMask` lets a block lower-triangular mask (the packed s2s-ft layouts, see
  :mod:`s2sft_fairseq.packing`) be attended block by block.
* :func:`cached_attention` is the same computation for the few new slots of one incremental
  decoding step against ``[source keys | cached target keys | new keys]``; the source keys are
  kept once per sentence and shared by that sentence's beam rows.
* :class:`AttentionBlock` is the attention half of a BERT layer (post-LN residual); its
  :meth:`~AttentionBlock.decode_attend` is the decode-step version of
  :meth:`~AttentionBlock.attend`.
"""
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

KeyValue = Tuple[torch.Tensor, torch.Tensor]  # each (batch, heads, length, head_dim)


class BlockMask(NamedTuple):
    """A mask whose rows come in consecutive blocks, each attending only to keys before its end.

    ``blocks[i] = (start, end, mask[..., start:end, :end])``. The packed seq2seq layouts are
    block lower-triangular (:meth:`s2sft_fairseq.packing.Method.block_ends`): source rows never
    look at target keys, target rows never at ``[P]`` keys. Attending block by block computes
    the same thing with fewer scores.
    """
    blocks: List[Tuple[int, int, torch.Tensor]]
    row_offset: int = 0  # the queries handed to attention start at this row

    def rows_from(self, start: int) -> "BlockMask":
        """The mask for queries ``start..`` only (``start`` must be a block boundary)."""
        kept = [b for b in self.blocks if b[0] >= start]
        if not kept or kept[0][0] != start:
            raise ValueError(f"row {start} is not a block boundary of {[(b[0], b[1]) for b in self.blocks]}")
        return BlockMask(kept, start)

    @classmethod
    def split(cls, mask: torch.Tensor, block_ends: Sequence[int]) -> "BlockMask":
        blocks, start = [], 0
        for end in block_ends:
            if end > start:
                blocks.append((start, end, mask[..., start:end, :end]))
            start = end
        if start != mask.size(-2):
            raise ValueError(f"block ends {tuple(block_ends)} do not cover the {mask.size(-2)} mask rows")
        return cls(blocks)


def rows_of(mask, start: int):
    """The rows ``start..`` of a mask tensor or :class:`BlockMask`."""
    if isinstance(mask, BlockMask):
        return mask.rows_from(start)
    return mask[..., start:, :]


def keep_mask(shape, p: float, device=None) -> torch.Tensor:
    """Dropout keep mask (True = keep) with P(drop) = round(p * 65536) / 65536.

    Two 16-bit uniforms per 32-bit draw: about half the random-number work of ``bernoulli_``
    and no float comparison tensor."""
    n = math.prod(shape)
    bits = torch.empty((n + 1) // 2, dtype=torch.int32, device=device).random_(-2 ** 31, 2 ** 31 - 1)
    return bits.view(torch.int16)[:n].view(shape) >= -32768 + round(p * 65536)


def attention(q, k, v, mask, dropout_p: float = 0.0) -> torch.Tensor:
    """``dropout(softmax(q k^T / sqrt(d) + mask)) v``; ``mask`` bool (True = may attend) or additive.

    Without dropout, or on an accelerator, this is SDPA. With dropout on CPU SDPA has no fused
    kernel and its math fallback pays for a float ``bernoulli_``, a separate scaling pass and
    ``_safe_softmax``'s extra passes; written out, the keep mask is :func:`keep_mask`, the
    ``1 / (1 - p)`` scale is applied to the ``(n, d)`` output instead of the ``(n, m)``
    probabilities, and an additive mask is added in place (``BertStack.forward`` builds it once).
    Same distribution of results as ``F.dropout`` on the probabilities. Under bf16 autocast the
    scores are taken to fp32 before the mask and the softmax (the matmuls stay bf16); SDPA
    accumulates its softmax in fp32 itself.
    """
    if dropout_p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = torch.matmul(q * q.size(-1) ** -0.5, k.transpose(-1, -2))
    if scores.dtype != torch.float32:  # bf16 autocast: mask, softmax and dropout in fp32
        scores = scores.float()
    if mask is not None:
        if mask.dtype == torch.bool:
            scores.masked_fill_(~mask, float("-inf"))
        else:
            scores.add_(mask)
    probs = torch.softmax(scores, dim=-1)
    probs = torch.where(keep_mask(probs.shape, dropout_p, probs.device), probs, probs.new_zeros(()))
    return torch.matmul(probs.to(v.dtype), v) * (1.0 / (1.0 - dropout_p))


class SourceMemory(NamedTuple):
    """The source side of a decode step: per-sentence keys/values shared by ``group`` beam rows.

    ``keys[i]`` / ``values[i]``: layer ``i``'s ``(sentences, heads, S, head_dim)``; ``bias``:
    ``(sentences, heads, 1, S)``, 0 for real source tokens and -inf for padding; ``positions``:
    the source position ids ``(sentences, S)``. Rows ``g * s .. g * s + g - 1`` of the step
    belong to sentence ``s`` (fairseq's beam layout).
    """
    keys: List[torch.Tensor]
    values: List[torch.Tensor]
    bias: torch.Tensor
    group: int
    positions: Optional[torch.Tensor] = None


class DecodeBias(NamedTuple):
    """Additive attention biases of a decode step's new slots, shared by all layers.

    ``causal``: ``(n, n)``, lets a new slot see the new slots up to itself (None with one slot).
    With a relative position bias instead: ``target`` ``(R, heads, n, T)`` over every cached and
    new target key (the causal part included) and ``source`` ``(sentences, heads, n, S)``.
    """
    causal: Optional[torch.Tensor] = None
    target: Optional[torch.Tensor] = None
    source: Optional[torch.Tensor] = None

    def last_row(self) -> "DecodeBias":
        """The biases of the last new slot only (it sees every new slot: no causal part)."""
        return DecodeBias(None, None if self.target is None else self.target[:, :, -1:],
                          None if self.source is None else self.source[:, :, -1:])


def cached_attention(q, source: Optional[SourceMemory], layer: int, tgt_k, tgt_v, tgt_len: int,
                     bias: DecodeBias) -> torch.Tensor:
    """Attention of the new slots' (pre-scaled) queries over ``[source | target keys 0..tgt_len)``.

    ``q``: ``(R, heads, nq, d)``; ``tgt_k`` / ``tgt_v``: the cache buffers ``(R, heads, >= tgt_len, d)``
    whose last ``nq`` filled entries are the queries' own keys; ``bias``: :class:`DecodeBias`
    for these ``nq`` queries. The source part is one batched matmul per sentence over its
    ``group`` rows; both parts share one softmax. Returns the context ``(R, nq, heads * d)``.
    """
    R, h, nq, d = q.shape
    s_tgt = torch.matmul(q, tgt_k[:, :, :tgt_len].transpose(-1, -2))       # (R, h, nq, T)
    if bias.target is not None:
        s_tgt.add_(bias.target)
    elif bias.causal is not None:
        s_tgt[:, :, :, tgt_len - nq:].add_(bias.causal)
    if source is None:
        p = torch.softmax(s_tgt, dim=-1)
        return torch.matmul(p, tgt_v[:, :, :tgt_len]).transpose(1, 2).reshape(R, nq, h * d)
    src_k, src_v, g = source.keys[layer], source.values[layer], source.group
    B, S = src_k.size(0), src_k.size(2)
    qs = q.reshape(B, g, h, nq, d).transpose(1, 2).reshape(B * h, g * nq, d)
    s_src = torch.baddbmm(source.bias.view(B * h, 1, S), qs, src_k.view(B * h, S, d).transpose(1, 2))
    s_src = s_src.view(B, h, g, nq, S)
    if bias.source is not None:
        s_src = s_src + bias.source[:, :, None]
    s_src = s_src.transpose(1, 2).reshape(R, h, nq, S)
    p = torch.softmax(torch.cat([s_src, s_tgt], dim=-1), dim=-1)
    p_src = p[..., :S].reshape(B, g, h, nq, S).transpose(1, 2).reshape(B * h, g * nq, S)
    ctx = torch.bmm(p_src, src_v.view(B * h, S, d)).view(B, h, g, nq, d).permute(0, 2, 3, 1, 4)
    ctx = ctx.reshape(R, nq, h * d)
    ctx.view(R, nq, h, d).add_(torch.matmul(p[..., S:], tgt_v[:, :, :tgt_len]).transpose(1, 2))
    return ctx


class AttentionBlock(nn.Module):
    """Multi-head attention with BERT's post-LN residual: LayerNorm(x + dropout(out(attn))).

    The attention half of :class:`~s2sft_fairseq.modules.bert_stack.Layer`; bert2bert's
    cross-attention is one of these too (same parameter names: ``query key value attn_out
    attn_layer_norm``)."""

    def __init__(self, cfg):
        super().__init__()
        h = cfg.hidden_size
        if h % cfg.num_heads:
            raise ValueError(f"hidden size {h} is not a multiple of {cfg.num_heads} heads")
        self.num_heads = cfg.num_heads
        self.head_dim = h // cfg.num_heads
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.attn_out = nn.Linear(h, h)
        self.attn_layer_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.attention_dropout = cfg.attention_dropout

    def split_heads(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x) -> KeyValue:
        """Keys and values of hidden states ``x``."""
        return self.split_heads(self.key(x)), self.split_heads(self.value(x))

    def residual(self, x, ctx) -> torch.Tensor:
        """LayerNorm(x + dropout(out(ctx))) for the attention context ``ctx`` ``(B, n, hidden)``."""
        return self.attn_layer_norm(x + self.dropout(self.attn_out(ctx)))

    def attend(self, x, k, v, attn_mask) -> torch.Tensor:
        """LayerNorm(x + dropout(out(attention(query(x), k, v)))).

        ``k``/``v``: (B, heads, K, head_dim), from ``x`` itself (self-attention) or from another
        sequence (cross-attention). ``attn_mask``: a tensor broadcastable to (B, heads, n, K)
        or a :class:`BlockMask`.
        """
        q = self.split_heads(self.query(x))
        p = self.attention_dropout if self.training else 0.0
        if isinstance(attn_mask, BlockMask):
            o = attn_mask.row_offset
            ctx = torch.cat([attention(q[:, :, s - o:e - o], k[:, :, :e], v[:, :, :e], m, p)
                             for s, e, m in attn_mask.blocks], dim=2)
        else:
            ctx = attention(q, k, v, attn_mask, p)
        b, _, n, _ = ctx.shape
        return self.residual(x, ctx.transpose(1, 2).reshape(b, n, -1))

    def forward(self, x, k, v, attn_mask):
        return self.attend(x, k, v, attn_mask)

    # ------------------------------------------------------------------ incremental decoding
    def decode_weights(self):
        """One fused ``(3H, H)`` projection for query (pre-scaled by 1/sqrt(head_dim)), key and value.

        Derived from the current weights; a decoding cache builds it once (per generate call) as a
        ``(weight, bias)`` pair. After :meth:`freeze_decode_weights` it is that module instead."""
        if getattr(self, "decode_qkv", None) is not None:
            return self.decode_qkv
        mods = (self.query, self.key, self.value)
        scale = self.head_dim ** -0.5
        weight = torch.cat([self.query.weight * scale, self.key.weight, self.value.weight])
        biases = [m.bias if m.bias is not None else m.weight.new_zeros(m.weight.size(0)) for m in mods]
        return weight, torch.cat([biases[0] * scale, biases[1], biases[2]])

    @torch.no_grad()
    def freeze_decode_weights(self) -> None:
        """Keep the fused decode-time projection as a module (``decode_qkv``), for a model that
        will only decode from now on, e.g. so that quantization converts it with the others."""
        weight, bias = self.decode_weights()
        fused = nn.Linear(weight.size(1), weight.size(0)).to(weight.device, weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        self.decode_qkv = fused

    def decode_attend(self, x, weights, tgt_k, tgt_v, cached: int, source: Optional[SourceMemory],
                      layer: int, bias: DecodeBias, last_only: bool) -> torch.Tensor:
        """:meth:`attend` for the ``n`` new slots ``x`` of a decoding step, with a key/value cache.

        Writes the new slots' keys/values into the cache buffers at ``cached..cached+n`` and
        attends over ``[source | cache 0..cached+n)``: the same computation as :meth:`attend`
        over the whole prefix with the decode-step mask (every new slot sees the source, the
        cache and the new slots up to itself). With ``last_only`` only the last slot's output
        is computed (the others only contribute keys/values).
        """
        R, n, H = x.shape
        h, d = self.num_heads, self.head_dim
        q, k, v = (weights(x) if callable(weights) else F.linear(x, *weights)).split(H, dim=-1)
        tgt_k[:, :, cached:cached + n] = k.view(R, n, h, d).transpose(1, 2)
        tgt_v[:, :, cached:cached + n] = v.view(R, n, h, d).transpose(1, 2)
        xq = x[:, -1:] if last_only else x
        nq = xq.size(1)
        q = q[:, n - nq:].reshape(R, nq, h, d).transpose(1, 2)
        ctx = cached_attention(q, source, layer, tgt_k, tgt_v, cached + n, bias.last_row() if nq < n else bias)
        return self.residual(xq, ctx)

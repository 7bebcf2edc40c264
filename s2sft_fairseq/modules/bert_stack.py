"""One post-LayerNorm BERT-style Transformer stack that serves as both encoder and decoder.

s2s-ft §2: the stack is an ordinary bidirectional Transformer; *which* position may see *which*
is decided only by the per-example attention mask handed to :meth:`BertStack.forward`. Position
ids and token-type ids are explicit inputs, so the caller (the packing code in
:mod:`s2sft_fairseq.packing` and the incremental decoder) decides them; padding never shifts them.

Two ways to run it:

* :meth:`BertStack.forward`: a whole (packed) sequence at once, as in training; returns the last
  hidden states and every layer's keys/values (the encoder keeps those for decoding).
* :meth:`BertStack.decode_step`: the few new slots of one incremental decoding step against a
  :class:`~s2sft_fairseq.modules.kv_cache.KVCache` and the source keys/values
  (:meth:`Layer.decode_step`); the output layer's decode-time form is :meth:`LMHead.decode_logits`.

Both take an optional ``cross`` hook, called after each layer's attention half: bert2bert's
decoder inserts its cross-attention there.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import AttentionBlock, BlockMask, DecodeBias, KeyValue, SourceMemory, rows_of
from .kv_cache import KVCache
from .relative_position import RelativePositionBias
from .sharing import share

CrossHook = Callable[[int, torch.Tensor], torch.Tensor]  # (layer index, hidden) -> hidden


@dataclass
class StackConfig:
    vocab_size: int
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    embedding_size: Optional[int] = None  # ELECTRA: embeddings narrower than the hidden size
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    head_act: str = ""  # MLM head transform's activation; "" = hidden_act (BERT's head)
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_idx: int = 0
    # UniLM checkpoints (s2s-ft code base): relative position bias (0 = none) and the segment ids
    # of source and target (UniLM v1 checkpoints use 4 / 5 of 6 types)
    rel_pos_bins: int = 0
    max_rel_pos: int = 0
    source_type_id: int = 0
    target_type_id: int = 1

    @property
    def embed_dim(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def uses_token_types(self) -> bool:
        """Source and target get their own token type where the checkpoint has >= 2 (s2s-ft §2)."""
        return self.type_vocab_size >= 2


def activation(name: str):
    if name == "gelu":
        return lambda x: F.gelu(x)
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    if name == "silu" or name == "swish":
        return F.silu
    raise ValueError(f"unsupported activation {name!r}")


class Embeddings(nn.Module):
    def __init__(self, cfg: StackConfig):
        super().__init__()
        e = cfg.embed_dim
        self.word = nn.Embedding(cfg.vocab_size, e, padding_idx=cfg.pad_idx)
        self.position = nn.Embedding(cfg.max_positions, e)
        self.token_type = nn.Embedding(cfg.type_vocab_size, e) if cfg.type_vocab_size > 0 else None
        self.layer_norm = nn.LayerNorm(e, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.project = nn.Linear(e, cfg.hidden_size) if e != cfg.hidden_size else None

    def forward(self, tokens, positions, token_types=None):
        x = self.word(tokens) + self.position(positions)
        if self.token_type is not None:
            if token_types is None:
                token_types = torch.zeros_like(tokens)
            x = x + self.token_type(token_types)
        x = self.dropout(self.layer_norm(x))
        if self.project is not None:
            x = self.project(x)
        return x


class Layer(AttentionBlock):
    """Self-attention + feed-forward, each followed by residual and LayerNorm (post-LN, BERT)."""

    def __init__(self, cfg: StackConfig):
        super().__init__(cfg)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_layer_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.act = activation(cfg.hidden_act)

    def feed_forward(self, x) -> torch.Tensor:
        """Feed-forward half: LayerNorm(x + dropout(ffn(x)))."""
        return self.ffn_layer_norm(x + self.dropout(self.ffn_out(self.act(self.ffn_in(x)))))

    def forward(self, x, attn_mask, rows_from: int = 0,
                cross: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Tuple[torch.Tensor, KeyValue]:
        """The layer over ``x``; returns the new hidden states and the keys/values of every row.

        With ``rows_from`` only rows ``rows_from..`` are computed (every row still contributes
        its keys/values) and ``attn_mask`` covers those rows only; ``rows_from == len(x)``
        computes the keys/values alone. ``cross`` runs between the two halves.
        """
        k, v = self.project_kv(x)
        if rows_from == x.size(1):
            return x[:, :0], (k, v)
        xq = x[:, rows_from:] if rows_from else x
        h = self.attend(xq, k, v, attn_mask)
        if cross is not None:
            h = cross(h)
        return self.feed_forward(h), (k, v)

    def decode_step(self, x, weights, tgt_k, tgt_v, cached: int, source: Optional[SourceMemory], index: int,
                    bias: DecodeBias, last_only: bool, cross=None) -> torch.Tensor:
        """:meth:`forward` for the new slots of a decoding step (see :meth:`AttentionBlock.decode_attend`)."""
        h = self.decode_attend(x, weights, tgt_k, tgt_v, cached, source, index, bias, last_only)
        if cross is not None:
            h = cross(h)
        return self.feed_forward(h)


class LMHead(nn.Module):
    """BERT's MLM head: dense + activation + LayerNorm, then the word embeddings (tied) + bias."""

    LOGITS_CHUNK = 8192  # vocabulary rows per matmul in decode_logits

    def __init__(self, cfg: StackConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.embed_dim)
        self.act = activation(cfg.head_act or cfg.hidden_act)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        share(self, "word_embeddings", word_embeddings)  # tied, registered in Embeddings

    def transform(self, x):
        h = self.act(self.dense(x))
        # under bf16 autocast the dense output is bf16: the LayerNorm runs in its weights' dtype (fp32)
        return self.layer_norm(h.to(self.layer_norm.weight.dtype))

    def forward(self, x):
        return F.linear(self.transform(x), self.word_embeddings.weight, self.bias)

    @torch.no_grad()
    def decode_logits(self, features):
        """:meth:`forward` for the few rows of a decoding step, computed as ``W[chunk] @ x^T``.

        Same result (to ~1e-6): BLAS handles the tall-skinny ``W @ x^T`` better than the
        short-wide ``x @ W^T`` for a handful of rows, and the vocabulary projection is the largest
        matmul of a step (BENCHMARKS.md, decoding)."""
        weight = self.word_embeddings.weight
        x = self.transform(features)
        lead = x.shape[:-1]
        x = x.reshape(-1, x.size(-1))
        vocab = weight.size(0)
        out = x.new_empty(x.size(0), vocab)
        for start in range(0, vocab, self.LOGITS_CHUNK):
            end = min(vocab, start + self.LOGITS_CHUNK)
            torch.add(torch.mm(weight[start:end], x.t()).t(), self.bias[start:end], out=out[:, start:end])
        return out.view(*lead, vocab)


_CAUSAL_BIAS = {}


def causal_bias(n: int, like: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` additive mask: 0 on and below the diagonal, -inf above (a constant, built once)."""
    key = (n, like.dtype, like.device)
    bias = _CAUSAL_BIAS.get(key)
    if bias is None:
        bias = torch.zeros(n, n, dtype=like.dtype, device=like.device)
        bias.masked_fill_(torch.ones(n, n, dtype=torch.bool, device=like.device).triu(1), float("-inf"))
        _CAUSAL_BIAS[key] = bias
    return bias


class BertStack(nn.Module):
    def __init__(self, cfg: StackConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        self.lm_head = LMHead(cfg, self.embeddings.word)
        self.rel_pos_bias = (RelativePositionBias(cfg.rel_pos_bins, cfg.max_rel_pos, cfg.num_heads)
                             if cfg.rel_pos_bins else None)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):
        """BERT's initialisation (N(0, 0.02), LayerNorm 1/0): used for whatever the checkpoint lacks."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, 0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()

    @property
    def uses_token_types(self) -> bool:
        return self.cfg.uses_token_types

    def token_types(self, like: torch.Tensor, target: bool) -> Optional[torch.Tensor]:
        """Segment ids for a source or target block shaped like ``like`` (None: the checkpoint has
        a single type, e.g. RoBERTa)."""
        if not self.uses_token_types:
            return None
        return torch.full_like(like, self.cfg.target_type_id if target else self.cfg.source_type_id)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        token_types: Optional[torch.Tensor],
        attn_mask: torch.Tensor,
        block_ends: Optional[Sequence[int]] = None,
        output_from: int = 0,
        cross: Optional[CrossHook] = None,
    ) -> Tuple[torch.Tensor, List[KeyValue]]:
        """Run the stack over whole sequences.

        Args:
            tokens, positions, token_types: ``(batch, len)`` ids.
            attn_mask: ``(batch, len, len)`` bool, True where a query may attend to a key. Every
                row must allow at least one key.
            block_ends: optional: the mask is block lower-triangular with these row/column block
                ends (rows before ``block_ends[i]`` and from the previous end never see keys from
                ``block_ends[i]`` on), so each block attends over its own prefix of keys only
                (:class:`~s2sft_fairseq.modules.attention.BlockMask`; same result).
            output_from: only the last hidden states of positions ``output_from..`` are wanted
                (with ``block_ends``, a block boundary). The last layer then computes only those
                rows: in the packed training layouts the source (and, pseudo-masked, the real
                target) rows of the last layer feed nothing, only their keys/values are read.
                ``output_from == len`` computes the last layer's keys/values only (the encoder).
            cross: called as ``cross(i, h)`` between layer ``i``'s attention and feed-forward halves.

        Returns: last hidden states ``(batch, len - output_from, hidden)`` and, per layer, the
        keys/values of every position.
        """
        x = self.embeddings(tokens, positions, token_types)
        mask = attn_mask.unsqueeze(1)  # broadcast over heads
        rel = None if self.rel_pos_bias is None else self.rel_pos_bias(positions, positions).to(x.dtype)
        if rel is not None or (self.training and x.device.type == "cpu"
                               and any(l.attention_dropout > 0 for l in self.layers)):
            # an additive mask, built once: the relative position bias (shared by all layers) is part
            # of it, and the written-out dropout attention (see attention()) adds it in place
            mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
            if rel is not None:
                mask = mask + rel
        if block_ends is not None:
            mask = BlockMask.split(mask, block_ends)
        last = len(self.layers) - 1
        key_values = []
        for i, layer in enumerate(self.layers):
            hook = None if cross is None else (lambda h, i=i: cross(i, h))
            if i == last and output_from:
                x, kv = layer(x, rows_of(mask, output_from) if output_from < x.size(1) else None,
                              rows_from=output_from, cross=hook)
            else:
                x, kv = layer(x, mask, cross=hook)
            key_values.append(kv)
        if output_from and not self.layers:
            x = x[:, output_from:]
        return x, key_values

    def new_decode_cache(self, rows: int, capacity: int, like: torch.Tensor) -> KVCache:
        """An empty :class:`KVCache` for ``rows`` decoding rows and ``capacity`` target tokens (it
        also keeps the target position ids where a relative position bias needs them)."""
        return KVCache(self.layers, rows, capacity, like, keep_positions=self.rel_pos_bias is not None)

    @torch.no_grad()
    def decode_step(self, tokens, positions, token_types, cache: KVCache, source: Optional[SourceMemory],
                    cross: Optional[CrossHook] = None) -> torch.Tensor:
        """Run the stack over the ``n`` new slots of a decoding step (inference only).

        Each new slot sees ``source`` (all of it but its padding), every cached target key and
        the new slots up to itself; the new slots' keys/values are written into ``cache`` at
        ``cache.len..`` (the caller advances ``cache.len`` by the slots it wants to keep). Only
        the last slot's final hidden state ``(rows, 1, hidden)`` is computed and returned.
        """
        x = self.embeddings(tokens, positions, token_types)
        n = x.size(1)
        cache.ensure_capacity(cache.len + n)
        bias = self._decode_bias(positions, cache, source, x)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            hook = None if cross is None else (lambda h, i=i: cross(i, h))
            k, v = cache.layer(i)
            x = layer.decode_step(x, cache.weights[i], k, v, cache.len, source, i, bias,
                                  last_only=(i == last), cross=hook)
        return x

    def _decode_bias(self, positions, cache: KVCache, source: Optional[SourceMemory], like) -> DecodeBias:
        """The additive biases of a decode step's ``n`` new slots (computed once, shared by all
        layers): the new slots see each other causally; with a relative position bias, its rows
        for the new slots against the source keys (per sentence) and every cached target key."""
        n = positions.size(1)
        causal = causal_bias(n, like) if n > 1 else None
        if self.rel_pos_bias is None:
            return DecodeBias(causal=causal)
        end = cache.len + n
        cache.positions[:, cache.len:end] = positions
        tgt = self.rel_pos_bias(positions, cache.positions[:, :end]).to(like.dtype)
        if causal is not None:
            tgt[..., end - n:] += causal
        src = None
        if source is not None:
            sentences = source.positions.size(0)
            query = positions.view(sentences, source.group, n)[:, 0]  # a sentence's rows share positions
            src = self.rel_pos_bias(query, source.positions).to(like.dtype)
        return DecodeBias(target=tgt, source=src)

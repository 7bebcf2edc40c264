"""One post-LayerNorm BERT-style Transformer stack that serves as both encoder and decoder.

DESIGN §2 / s2s-ft §2: the stack is an ordinary bidirectional Transformer; *which* position may
see *which* is decided only by the per-example attention mask handed to :meth:`BertStack.forward`.
Position ids and token-type ids are explicit inputs, so the caller (the packing code in
:mod:`s2sft_fairseq.masks` and the incremental decoder) decides them; padding never shifts them.

Keys/values of earlier positions may be passed in (``past_key_values``) and the keys/values of
the new positions returned, which is all the incremental decoder needs (DESIGN §3).
"""
import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

KeyValue = Tuple[torch.Tensor, torch.Tensor]  # each (batch, heads, length, head_dim)


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

    @property
    def embed_dim(self) -> int:
        return self.embedding_size or self.hidden_size


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


class BlockMask(NamedTuple):
    """A mask whose rows come in consecutive blocks, each attending only to keys before its end.

    ``blocks[i] = (start, end, mask[..., start:end, :end])``. The packed seq2seq layouts are
    block lower-triangular (:func:`s2sft_fairseq.masks.pack`, ``block_ends``): source rows never
    look at target keys, target rows never at ``[P]`` keys. Attending block by block computes
    the same thing with fewer scores (for pseudo-masked with S = 128, T = 32: 27,648 instead
    of 36,864 per head).
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
    Same distribution of results as ``F.dropout`` on the probabilities.
    """
    if dropout_p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = torch.matmul(q * q.size(-1) ** -0.5, k.transpose(-1, -2))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores.masked_fill_(~mask, float("-inf"))
        else:
            scores.add_(mask)
    probs = torch.softmax(scores, dim=-1)
    probs = torch.where(keep_mask(probs.shape, dropout_p, probs.device), probs, probs.new_zeros(()))
    return torch.matmul(probs, v) * (1.0 / (1.0 - dropout_p))


class AttentionBlock(nn.Module):
    """Multi-head attention with BERT's post-LN residual: LayerNorm(x + dropout(out(attn))).

    The attention half of :class:`Layer`; bert2bert's cross-attention is one of these too (same
    parameter names: ``query key value attn_out attn_layer_norm``)."""

    def __init__(self, cfg: StackConfig):
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
        """Keys and values of hidden states ``x`` (what the decoder caches)."""
        return self.split_heads(self.key(x)), self.split_heads(self.value(x))

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
        ctx = ctx.transpose(1, 2).reshape(b, n, -1)
        return self.attn_layer_norm(x + self.dropout(self.attn_out(ctx)))

    def forward(self, x, k, v, attn_mask):
        return self.attend(x, k, v, attn_mask)


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

    def forward(self, x, attn_mask, past: Optional[KeyValue] = None,
                rows_from: int = 0) -> Tuple[torch.Tensor, KeyValue]:
        """The layer over ``x``; with ``rows_from`` only rows ``rows_from..`` are computed (every
        row still contributes its keys/values), and ``attn_mask`` covers those rows only."""
        k, v = self.project_kv(x)
        new_kv = (k, v)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        xq = x[:, rows_from:] if rows_from else x
        return self.feed_forward(self.attend(xq, k, v, attn_mask)), new_kv


class LMHead(nn.Module):
    """BERT's MLM head: dense + activation + LayerNorm, then the word embeddings (tied) + bias."""

    def __init__(self, cfg: StackConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.embed_dim)
        self.act = activation(cfg.head_act or cfg.hidden_act)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.word_embeddings = [word_embeddings]  # a list: tied, not registered twice

    def forward(self, x):
        x = self.layer_norm(self.act(self.dense(x)))
        return F.linear(x, self.word_embeddings[0].weight, self.bias)


class BertStack(nn.Module):
    def __init__(self, cfg: StackConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        self.lm_head = LMHead(cfg, self.embeddings.word)
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

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        token_types: Optional[torch.Tensor],
        attn_mask: torch.Tensor,
        past_key_values: Optional[List[KeyValue]] = None,
        block_ends: Optional[Sequence[int]] = None,
        output_from: int = 0,
    ) -> Tuple[torch.Tensor, List[KeyValue]]:
        """Run the stack.

        Args:
            tokens, positions, token_types: ``(batch, new_len)`` ids.
            attn_mask: ``(batch, new_len, past_len + new_len)`` bool, True where a query may
                attend to a key (keys ordered as cached positions, then the new ones). Every
                row must allow at least one key.
            past_key_values: per layer ``(k, v)`` of earlier positions, or None.
            block_ends: optional, without ``past_key_values``: the mask is block
                lower-triangular with these row/column block ends (rows before ``block_ends[i]``
                and from the previous end never see keys from ``block_ends[i]`` on), so each
                block attends over its own prefix of keys only (:class:`BlockMask`; same result).
            output_from: only the last hidden states of positions ``output_from..`` are wanted
                (with ``block_ends``, a block boundary). The last layer then computes only those
                rows: in the packed training layouts the source (and, pseudo-masked, the real
                target) rows of the last layer feed nothing, only their keys/values are read.

        Returns: last hidden states ``(batch, new_len - output_from, hidden)`` and, per layer,
        the new positions' ``(k, v)``.
        """
        x = self.embeddings(tokens, positions, token_types)
        mask = attn_mask.unsqueeze(1)  # broadcast over heads
        if self.training and x.device.type == "cpu" and any(l.attention_dropout > 0 for l in self.layers):
            # the written-out dropout attention (see attention()) adds the mask: build it once
            mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
        if block_ends is not None:
            if past_key_values is not None:
                raise ValueError("block_ends describes a full packed sequence; it cannot be used with past_key_values")
            mask = BlockMask.split(mask, block_ends)
        last = len(self.layers) - 1
        new_kvs = []
        for i, layer in enumerate(self.layers):
            past = None if past_key_values is None else past_key_values[i]
            if i == last and output_from:
                rows = mask.rows_from(output_from) if isinstance(mask, BlockMask) else mask[..., output_from:, :]
                x, kv = layer(x, rows, past, rows_from=output_from)
            else:
                x, kv = layer(x, mask, past)
            new_kvs.append(kv)
        if output_from and not self.layers:
            x = x[:, output_from:]
        return x, new_kvs

    def extend_positions(self, new_size: int) -> int:
        """Grow the position table to ``new_size`` rows by repeating the learned rows (s2s-ft).

        Returns the old size. Rows ``old..new-1`` copy rows ``0..`` cyclically, as s2s-ft does
        when the packed source+target is longer than the pretrained table.
        """
        old = self.embeddings.position.num_embeddings
        if new_size <= old:
            return old
        weight = self.embeddings.position.weight.data
        reps = math.ceil(new_size / old)
        new_weight = weight.repeat(reps, 1)[:new_size].clone()
        emb = nn.Embedding(new_size, weight.size(1)).to(weight.device, weight.dtype)
        emb.weight.data.copy_(new_weight)
        self.embeddings.position = emb
        self.cfg.max_positions = new_size
        return old

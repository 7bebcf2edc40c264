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
from typing import List, Optional, Tuple

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


class Layer(nn.Module):
    """Self-attention + feed-forward, each followed by residual and LayerNorm (post-LN, BERT)."""

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
        self.ffn_in = nn.Linear(h, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, h)
        self.ffn_layer_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.act = activation(cfg.hidden_act)
        self.dropout = nn.Dropout(cfg.dropout)
        self.attention_dropout = cfg.attention_dropout

    def split_heads(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x) -> KeyValue:
        """Keys and values of hidden states ``x`` (what the decoder caches)."""
        return self.split_heads(self.key(x)), self.split_heads(self.value(x))

    def attend(self, x, k, v, attn_mask) -> torch.Tensor:
        """Attention half: LayerNorm(x + dropout(out(attention(query(x), k, v)))).

        ``k``/``v``: (B, heads, K, head_dim), from ``x`` itself (self-attention) or from another
        sequence (bert2bert's cross-attention reuses this with its own parameters).
        """
        q = self.split_heads(self.query(x))
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
        )
        b, _, n, _ = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(b, n, -1)
        return self.attn_layer_norm(x + self.dropout(self.attn_out(ctx)))

    def feed_forward(self, x) -> torch.Tensor:
        """Feed-forward half: LayerNorm(x + dropout(ffn(x)))."""
        return self.ffn_layer_norm(x + self.dropout(self.ffn_out(self.act(self.ffn_in(x)))))

    def forward(self, x, attn_mask, past: Optional[KeyValue] = None) -> Tuple[torch.Tensor, KeyValue]:
        k, v = self.project_kv(x)
        new_kv = (k, v)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        return self.feed_forward(self.attend(x, k, v, attn_mask)), new_kv


class LMHead(nn.Module):
    """BERT's MLM head: dense + activation + LayerNorm, then the word embeddings (tied) + bias."""

    def __init__(self, cfg: StackConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.embed_dim)
        self.act = activation(cfg.hidden_act)
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
    ) -> Tuple[torch.Tensor, List[KeyValue]]:
        """Run the stack.

        Args:
            tokens, positions, token_types: ``(batch, new_len)`` ids.
            attn_mask: ``(batch, new_len, past_len + new_len)`` bool, True where a query may
                attend to a key (keys ordered as cached positions, then the new ones). Every
                row must allow at least one key.
            past_key_values: per layer ``(k, v)`` of earlier positions, or None.

        Returns: last hidden states ``(batch, new_len, hidden)`` and, per layer, the new
        positions' ``(k, v)``.
        """
        x = self.embeddings(tokens, positions, token_types)
        mask = attn_mask.unsqueeze(1)  # broadcast over heads
        new_kvs = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, mask, None if past_key_values is None else past_key_values[i])
            new_kvs.append(kv)
        return x, new_kvs

    def source_key_values(self, tokens, positions, token_types, attn_mask) -> List[KeyValue]:
        """Per-layer keys/values of a source that attends only to itself (the encoder role)."""
        _, kvs = self.forward(tokens, positions, token_types, attn_mask)
        return kvs

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

"""The key/value cache of incremental decoding: allocation, growth, beam reorder, batch shrink.

Two kinds of state, both reordered between fairseq's decoding steps:

* :class:`KVCache`, the *target* side: per layer a key buffer and a value buffer
  ``(rows, heads, capacity, head_dim)`` allocated once and written in place, plus a spare set
  that a beam reorder copies into (``index_select(..., out=spare)`` over the filled part only,
  then the two sets swap), so no step allocates. It also holds each layer's fused decode-time
  projection (:meth:`~s2sft_fairseq.modules.attention.AttentionBlock.decode_weights`), built
  with the cache, i.e. once per generate call.
* The *source* side (:func:`source_encoder_out`): every layer's source keys/values, computed once
  by the encoder, kept once per *sentence* (never expanded to the beam or copied by a reorder)
  with a small per-row index into them; :func:`reorder_source` only compacts the per-sentence
  tensors when fairseq drops finished sentences, and :func:`source_memory` gives a decode step
  the :class:`~s2sft_fairseq.modules.attention.SourceMemory` for the current rows.
"""
from typing import Dict, List, Optional

import torch

from .attention import SourceMemory

ROW_KEYS = ("src_tokens", "src_valid", "src_index")  # per-row entries of the source encoder_out


class KVCache:
    """Target keys/values of the tokens decoded so far (see the module docstring)."""

    def __init__(self, layers, rows: int, capacity: int, like: torch.Tensor, keep_positions: bool = False):
        first = layers[0]
        shape = (rows, first.num_heads, capacity, first.head_dim)
        self.kv = [like.new_empty(shape) for _ in range(2 * len(layers))]     # k0, v0, k1, v1, ...
        self.spare = [like.new_empty(shape) for _ in range(2 * len(layers))]  # reorder target, swapped in
        # the cached tokens' position ids (a relative position bias needs them), (rows, capacity)
        self.positions = torch.zeros(rows, capacity, dtype=torch.long, device=like.device) if keep_positions else None
        self.weights = [layer.decode_weights() for layer in layers]
        self.rows = rows
        self.len = 0  # target tokens whose keys/values are cached

    def layer(self, i: int):
        """Layer ``i``'s (key buffer, value buffer)."""
        return self.kv[2 * i], self.kv[2 * i + 1]

    @property
    def capacity(self) -> int:
        return self.kv[0].size(2)

    def ensure_capacity(self, need: int) -> None:
        """Enlarge the time capacity (only when decoding past what the cache was sized for)."""
        if need <= self.capacity:
            return
        new_cap = max(need, 2 * self.capacity)
        grown = []
        for t in self.kv:
            g = t.new_empty(t.size(0), t.size(1), new_cap, t.size(3))
            g[:, :, :self.len] = t[:, :, :self.len]
            grown.append(g)
        self.kv = grown
        self.spare = [t.new_empty(t.size(0), t.size(1), new_cap, t.size(3)) for t in self.spare]
        if self.positions is not None:
            positions = self.positions.new_zeros(self.positions.size(0), new_cap)
            positions[:, :self.len] = self.positions[:, :self.len]
            self.positions = positions

    def check(self, rows: int, tokens_in_prefix: int) -> None:
        if self.rows != rows:
            raise RuntimeError(f"incremental state has {self.rows} rows but the decoder got {rows}: "
                               "reorder_incremental_state was not called")
        if self.len > tokens_in_prefix:
            raise RuntimeError(f"incremental state holds {self.len} target tokens but the prefix has "
                               f"{tokens_in_prefix}")

    @torch.no_grad()
    def reorder(self, new_order: torch.Tensor) -> None:
        """Row ``i`` becomes old row ``new_order[i]`` (beam reorder; fewer rows = batch shrink)."""
        rows, filled = new_order.numel(), self.len
        if rows > self.spare[0].size(0):  # more rows than allocated: reallocate the spare set
            self.spare = [t.new_empty((rows,) + t.shape[1:]) for t in self.spare]
        out = []
        for src, dst in zip(self.kv, self.spare):
            dst = dst[:rows]
            if filled:
                torch.index_select(src[:, :, :filled], 0, new_order, out=dst[:, :, :filled])
            out.append(dst)
        self.spare, self.kv = self.kv, out
        if self.positions is not None:
            self.positions = self.positions.index_select(0, new_order)
        self.rows = rows


# ---------------------------------------------------------------------------- source side
def source_encoder_out(src_tokens, valid, positions, key_values, num_heads: int) -> Dict[str, List[torch.Tensor]]:
    """The encoder's output for incremental decoding (fairseq's ``encoder_out`` dict of lists).

    Per *row* (reordered by fairseq at every step, all small): ``src_tokens``, ``src_valid`` and
    ``src_index``, the row's entry in the per-*sentence* tensors ``src_keys`` / ``src_values``
    (one per layer, ``(n, heads, S, d)``), ``src_bias`` (``(n, heads, 1, S)``, 0 or -inf
    for padding) and ``src_positions`` (``(n, S)`` position ids).
    """
    keys = [k.contiguous() for k, _ in key_values]  # (n, h, S, d): (n, h) flattenable for bmm
    values = [v.contiguous() for _, v in key_values]
    bias = torch.zeros(valid.shape, dtype=keys[0].dtype, device=valid.device)
    bias.masked_fill_(~valid, float("-inf"))
    return {
        "src_tokens": [src_tokens],
        "src_valid": [valid],
        "src_index": [torch.arange(src_tokens.size(0), device=src_tokens.device)],
        "src_keys": keys,
        "src_values": values,
        "src_bias": [bias[:, None, None, :].expand(-1, num_heads, 1, -1).contiguous()],
        "src_positions": [positions],
    }


def reorder_source(encoder_out: Dict[str, List[torch.Tensor]], new_order) -> Dict[str, List[torch.Tensor]]:
    """fairseq's ``reorder_encoder_out`` for :func:`source_encoder_out`: moves the per-row entries
    and compacts the per-sentence tensors only when sentences left the batch."""
    out = {key: [t.index_select(0, new_order) for t in encoder_out[key]] for key in ROW_KEYS}
    index = out["src_index"][0]
    shared = {key: ts for key, ts in encoder_out.items() if key not in ROW_KEYS}
    n_shared = encoder_out["src_keys"][0].size(0) if encoder_out.get("src_keys") else 0
    if index.numel() and n_shared:
        used, inverse = torch.unique(index, sorted=True, return_inverse=True)
        if used.numel() < n_shared:  # sentences left the batch: drop their source K/V once
            shared = {key: [t.index_select(0, used) for t in ts] for key, ts in shared.items()}
            out["src_index"] = [inverse]
    out.update(shared)
    return out


def _grouping(src_index: torch.Tensor, n_src: int) -> int:
    """g if rows are ``g`` consecutive rows per source entry 0..n_src-1 (fairseq's beam layout), else 0."""
    rows = src_index.numel()
    if n_src == 0 or rows % n_src:
        return 0
    g = rows // n_src
    expected = torch.arange(n_src, device=src_index.device).repeat_interleave(g)
    return g if torch.equal(src_index, expected) else 0


def source_memory(encoder_out: Dict[str, List[torch.Tensor]]) -> Optional[SourceMemory]:
    """The source keys/values for the current rows: shared per sentence when the rows come in
    fairseq's beam layout, else (irregular row orders) gathered per row."""
    keys, values = encoder_out["src_keys"], encoder_out["src_values"]
    bias, positions = encoder_out["src_bias"][0], encoder_out["src_positions"][0]
    index = encoder_out["src_index"][0]
    g = _grouping(index, keys[0].size(0))
    if g == 0:
        keys = [k.index_select(0, index) for k in keys]
        values = [v.index_select(0, index) for v in values]
        bias, positions = bias.index_select(0, index), positions.index_select(0, index)
        g = 1
    return SourceMemory(keys, values, bias, g, positions)

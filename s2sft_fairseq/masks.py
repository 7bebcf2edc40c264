"""Packed inputs and self-attention masks of the three fine-tuning methods (s2s-ft §2, Figs. 1-2).

A batch is packed block-wise, each block right-padded on its own, so padding never moves a
position id (positions are given explicitly, counted over real tokens only)::

    [ source block: S slots ][ target block: T slots ][ pseudo block: T slots (pseudo_masked) ]

For one example with source ``[CLS] a [SEP]`` (n_s = 3) and target ``x y [SEP]`` (n_t = 3), the
mask (row = query, column = key, ``1`` = may attend) is, for **pseudo_masked**::

               CLS a SEP | x  y  SEP | P1 P2 P3
        CLS     1  1  1  | .  .  .   | .  .  .        position ids:
        a       1  1  1  | .  .  .   | .  .  .          source 0 1 2
        SEP     1  1  1  | .  .  .   | .  .  .          target 3 4 5
        x       1  1  1  | 1  .  .   | .  .  .          pseudo 3 4 5   ([P]_j shares t_j's id)
        y       1  1  1  | 1  1  .   | .  .  .
        SEP     1  1  1  | 1  1  1   | .  .  .        token types: source 0, target and [P] 1
        P1      1  1  1  | .  .  .   | 1  .  .        (when the checkpoint has >= 2 types)
        P2      1  1  1  | 1  .  .   | .  1  .
        P3      1  1  1  | 1  1  .   | .  .  1        loss: [P]_j predicts t_j

**masked** uses the first two blocks only (target slots randomly corrupted, loss on the corrupted
slots); **causal** also uses two blocks, its target block is ``[SOS] t_1 .. t_{n-1}`` and slot j
predicts t_{j+1}. In both the target block is lower-triangular as above. A padding slot attends
only to itself (so no softmax row is empty) and no real slot ever attends to a padding slot.
"""
from typing import NamedTuple, Optional, Tuple

import torch

METHODS = ("causal", "masked", "pseudo_masked")


class Packed(NamedTuple):
    tokens: torch.Tensor       # (B, L)
    positions: torch.Tensor    # (B, L)
    token_types: Optional[torch.Tensor]  # (B, L) or None (checkpoints with a single type)
    attn_mask: torch.Tensor    # (B, L, L) bool
    predict_offset: int        # slots [predict_offset, predict_offset + T) carry the predictions
    block_ends: Tuple[int, ...]  # the mask is block lower-triangular with these block ends


def valid_positions(tokens: torch.Tensor, pad: int):
    """Non-pad mask and position ids counted over real tokens, whatever side is padded."""
    valid = tokens.ne(pad)
    positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0) * valid.long()
    return valid, positions


def seq2seq_mask(src_valid: torch.Tensor, tgt_valid: torch.Tensor, method: str) -> torch.Tensor:
    """The (B, L, L) boolean mask drawn in the module docstring."""
    if method not in METHODS:
        raise ValueError(f"unknown fine-tuning method {method!r}; expected one of {METHODS}")
    B, S = src_valid.shape
    T = tgt_valid.size(1)
    dev = src_valid.device
    causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
    strict = causal.tril(-1)
    eye = torch.eye(T, dtype=torch.bool, device=dev)
    src_keys = src_valid[:, None, :]                       # (B, 1, S)
    tgt_keys = tgt_valid[:, None, :]                       # (B, 1, T)

    src_rows = torch.cat([src_keys.expand(B, S, S),
                          torch.zeros(B, S, T, dtype=torch.bool, device=dev)], dim=2)
    tgt_rows = torch.cat([src_keys.expand(B, T, S), causal[None] & tgt_keys], dim=2)
    blocks = [src_rows, tgt_rows]
    if method == "pseudo_masked":
        pad_cols = torch.zeros(B, S + T, T, dtype=torch.bool, device=dev)
        blocks = [torch.cat([src_rows, pad_cols[:, :S]], dim=2),
                  torch.cat([tgt_rows, pad_cols[:, :T]], dim=2)]
        pseudo_rows = torch.cat(
            [src_keys.expand(B, T, S), strict[None] & tgt_keys, eye[None].expand(B, T, T)], dim=2)
        blocks.append(pseudo_rows)
    mask = torch.cat(blocks, dim=1)
    row_valid = torch.cat([src_valid, tgt_valid] + ([tgt_valid] if method == "pseudo_masked" else []), dim=1)
    self_only = torch.eye(mask.size(1), dtype=torch.bool, device=dev)[None]
    return torch.where(row_valid[:, :, None], mask, self_only)


def block_ends(S: int, T: int, method: str) -> Tuple[int, ...]:
    """Where the row blocks of :func:`seq2seq_mask` end; no row sees a key beyond its block's end.

    Source rows see only source keys, target rows no ``[P]`` keys (see the drawing above), so
    the stack can attend block by block (:class:`~s2sft_fairseq.modules.bert_stack.BlockMask`).
    """
    if method == "pseudo_masked":
        return (S, S + T, S + 2 * T)
    return (S, S + T)


def pack(src_tokens: torch.Tensor, tgt_input: torch.Tensor, method: str, pad: int,
         mask_idx: int, use_token_types: bool) -> Packed:
    """Pack a batch for ``method``.

    ``src_tokens``: ``[CLS] s [SEP]`` per row, left- or right-padded. ``tgt_input``: the target
    block's input, right-padded (causal: ``[SOS] t_1..t_{n-1}``; masked/pseudo: ``t_1..t_n``
    possibly corrupted).
    """
    src_valid, src_pos = valid_positions(src_tokens, pad)
    tgt_valid, tgt_pos = valid_positions(tgt_input, pad)
    src_len = src_valid.long().sum(dim=1, keepdim=True)
    tgt_pos = (tgt_pos + src_len) * tgt_valid.long()
    tokens = [src_tokens, tgt_input]
    positions = [src_pos, tgt_pos]
    types = [torch.zeros_like(src_tokens), tgt_valid.long()]
    if method == "pseudo_masked":
        tokens.append(torch.where(tgt_valid, torch.full_like(tgt_input, mask_idx), tgt_input))
        positions.append(tgt_pos)
        types.append(tgt_valid.long())
    return Packed(
        tokens=torch.cat(tokens, dim=1),
        positions=torch.cat(positions, dim=1),
        token_types=torch.cat(types, dim=1) if use_token_types else None,
        attn_mask=seq2seq_mask(src_valid, tgt_valid, method),
        predict_offset=src_tokens.size(1) + (tgt_input.size(1) if method == "pseudo_masked" else 0),
        block_ends=block_ends(src_tokens.size(1), tgt_input.size(1), method),
    )


def decode_step_mask(src_valid: torch.Tensor, cache_len: int, num_new: int) -> torch.Tensor:
    """Mask for one incremental step (DESIGN §3).

    Keys are ordered ``[source | cached target (cache_len) | new slots (num_new)]``. The new slots
    are (masked/pseudo) ``[y_prev, [MASK]]`` or ``[[MASK]]`` at the first step, or (causal) the
    previous token. Every new slot sees the valid source, the whole cache, and the new slots up
    to and including itself: exactly the rows of the training mask for those positions.
    """
    B, S = src_valid.shape
    dev = src_valid.device
    src = src_valid[:, None, :].expand(B, num_new, S)
    cache = torch.ones(B, num_new, cache_len, dtype=torch.bool, device=dev)
    new = torch.ones(num_new, num_new, dtype=torch.bool, device=dev).tril()[None].expand(B, -1, -1)
    return torch.cat([src, cache, new], dim=2)

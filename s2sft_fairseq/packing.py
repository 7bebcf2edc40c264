"""The three fine-tuning methods, their packed inputs and self-attention masks (s2s-ft §2, Figs. 1-2).

What a method means is written once, in :class:`Method` (one instance per method: ``CAUSAL``,
``MASKED``, ``PSEUDO_MASKED``): the target block's input and labels in training, the blocks of
the packed sequence and which slots predict, and what a decoding step feeds. Everything else
(data, model, decoder, task) asks the method instead of comparing names.

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
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional, Tuple, Union

import torch

from .errors import S2SFTError


@dataclass(frozen=True)
class Method:
    """One s2s-ft fine-tuning method (paper §2.1-2.3): what it feeds, labels, packs and decodes."""
    name: str
    #: the target block is ``[SOS] t_1 .. t_{n-1}`` and slot j predicts t_{j+1} (causal); otherwise
    #: it is ``t_1 .. t_n`` with ``--target-mask-prob`` of its slots corrupted
    shifted_target: bool
    #: only the corrupted target slots carry a label (masked); otherwise every predicting slot does
    labels_only_corrupted: bool
    #: a block of ``[P]`` slots follows the target block, ``[P]_j`` predicting t_j (pseudo-masked)
    pseudo_block: bool
    #: the start token ``[SOS]`` of a shifted target block: the dictionary's bos (``[CLS]`` / ``<s>``,
    #: paper) or eos (``[SEP]`` / ``</s>``, the reference code's ``pos_shift``)
    start: str = "bos"
    #: the source keeps its closing ``[SEP]``; the reference's causal fine-tuning drops it, so that
    #: the target block's ``[SEP]`` start token follows the source directly
    source_closing_sep: bool = True

    def __str__(self) -> str:
        return self.name

    def reference_variant(self) -> "Method":
        """This method under ``--corruption reference``: causal fine-tuning takes the reference code's
        ``pos_shift`` convention (source ``[CLS] s``, target block ``[SEP] t_1 .. t_{n-1}``)."""
        return replace(self, start="eos", source_closing_sep=False) if self.shifted_target else self

    def start_token(self, dictionary) -> int:
        return dictionary.eos() if self.start == "eos" else dictionary.bos()

    def prepare_source(self, src_tokens: torch.Tensor, eos: int, pad: int) -> torch.Tensor:
        """``[CLS] s [SEP]`` rows (left- or right-padded) as this method feeds them: without the
        closing ``[SEP]`` (made padding, so positions still count real tokens) where the method
        drops it."""
        if self.source_closing_sep:
            return src_tokens
        valid = src_tokens.ne(pad)
        last = valid & ~torch.cat([valid[:, 1:], valid.new_zeros(valid.size(0), 1)], dim=1)
        return src_tokens.masked_fill(last & src_tokens.eq(eos), pad)

    # ------------------------------------------------------------------ training
    def target_input_and_labels(self, target: torch.Tensor, start: int, pad: int, corruption, rng):
        """The target block's input, per-slot labels (``pad`` = no loss) and ``[P]`` tokens (None:
        all ``[MASK]``) for ``t_1 .. t_n``, corrupted by ``corruption``
        (:mod:`s2sft_fairseq.data.corruption`) with the generator ``rng``."""
        if self.shifted_target:
            inp = torch.cat([target.new_tensor([start]), target[:-1]])
            return corruption.shifted_input(inp, rng), target, None
        inp, corrupted, pseudo = corruption.target(target, rng, self.pseudo_block)
        if self.labels_only_corrupted:
            return inp, torch.where(corrupted, target, torch.full_like(target, pad)), pseudo
        return inp, target, pseudo

    def num_slots(self, src_len, tgt_len):
        """Length of the packed sequence (works on ints and numpy arrays)."""
        return src_len + (2 * tgt_len if self.pseudo_block else tgt_len)

    def block_ends(self, S: int, T: int) -> Tuple[int, ...]:
        """Where the row blocks of :func:`seq2seq_mask` end; no row sees a key beyond its block's end.

        Source rows see only source keys, target rows no ``[P]`` keys (see the drawing above), so
        the stack can attend block by block (:class:`~s2sft_fairseq.modules.attention.BlockMask`).
        """
        return (S, S + T, S + 2 * T) if self.pseudo_block else (S, S + T)

    def predict_offset(self, S: int, T: int) -> int:
        """First slot of the block whose slots carry the predictions."""
        return S + T if self.pseudo_block else S

    # ------------------------------------------------------------------ decoding
    @property
    def step_slots(self) -> int:
        """Slots fed per decoding step: the previous token (causal), or the previous token and a
        ``[MASK]`` at the next position whose output predicts (masked, pseudo-masked, s2s-ft §2.4)."""
        return 1 if self.shifted_target else 2

    def target_tokens_in_prefix(self, generated: int) -> int:
        """Real tokens of the target block after ``generated`` decoded tokens ([SOS] counts for causal)."""
        return generated + 1 if self.shifted_target else generated

    def step_inputs(self, generated: torch.Tensor, cached: int, start: int, mask_idx: int) -> torch.Tensor:
        """The slots a decoding step feeds, given the tokens generated so far (``(rows, k)``, without
        fairseq's start symbol) and how many real target tokens the cache already holds.

        Causal: the real target tokens not cached yet (``[SOS] y_1 ..`` from the start); the
        others: the generated tokens not cached yet, then a ``[MASK]`` at the next position. The
        last slot's output predicts the next token; :meth:`cached_after_step` says how many of
        the fed slots are real target tokens the cache keeps.
        """
        rows = generated.size(0)
        if self.shifted_target:
            if cached == 0:
                return torch.cat([generated.new_full((rows, 1), start), generated], dim=1)
            return generated[:, cached - 1:]
        return torch.cat([generated[:, cached:], generated.new_full((rows, 1), mask_idx)], dim=1)

    def cached_after_step(self, fed: int) -> int:
        """Of the ``fed`` slots of a step, the real target tokens (the ``[MASK]`` slot never is)."""
        return fed if self.shifted_target else fed - 1

    def prefix_to_target_block(self, generated: torch.Tensor, start: int, mask_idx: int) -> torch.Tensor:
        """The target block that makes the last slot predict the next token, exactly as in
        training (the full-recompute decoding path): ``[SOS] y`` (causal) or ``y [MASK]``."""
        return self.step_inputs(generated, 0, start, mask_idx)


CAUSAL = Method("causal", shifted_target=True, labels_only_corrupted=False, pseudo_block=False)
MASKED = Method("masked", shifted_target=False, labels_only_corrupted=True, pseudo_block=False)
PSEUDO_MASKED = Method("pseudo_masked", shifted_target=False, labels_only_corrupted=False, pseudo_block=True)
METHODS = {m.name: m for m in (CAUSAL, MASKED, PSEUDO_MASKED)}
METHOD_NAMES = tuple(METHODS)  # the --ft-method choices


def get_method(method: Union[str, Method], corruption: str = "paper") -> Method:
    """The :class:`Method` for a name (as configs store it) or a Method; with ``corruption``
    ``"reference"`` its reference-code variant (:meth:`Method.reference_variant`)."""
    if not isinstance(method, Method):
        found = METHODS.get(str(method))
        if found is None:
            raise S2SFTError(f"unknown fine-tuning method {method!r}; expected one of {', '.join(METHOD_NAMES)}")
        method = found
    return method.reference_variant() if corruption == "reference" else method


# ---------------------------------------------------------------------------- masks
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


def padding_attends_itself(mask: torch.Tensor, row_valid: torch.Tensor) -> torch.Tensor:
    """``mask`` (B, L, L) with every padding row replaced by "attend to yourself only", so no
    softmax row is empty; real rows are unchanged (they never attend to padding)."""
    self_only = torch.eye(mask.size(1), dtype=torch.bool, device=mask.device)[None]
    return torch.where(row_valid[:, :, None], mask, self_only)


def bidirectional_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, L, L): every real token sees every real token (the encoder over a source)."""
    return padding_attends_itself(valid[:, None, :].expand(-1, valid.size(1), -1), valid)


def causal_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, L, L): every real token sees the real tokens up to itself (a left-to-right decoder)."""
    L = valid.size(1)
    causal = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
    return padding_attends_itself(causal[None] & valid[:, None, :], valid)


def seq2seq_mask(src_valid: torch.Tensor, tgt_valid: torch.Tensor, method: Union[str, Method]) -> torch.Tensor:
    """The (B, L, L) boolean mask drawn in the module docstring."""
    method = get_method(method)
    B, S = src_valid.shape
    T = tgt_valid.size(1)
    dev = src_valid.device
    causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
    src_keys = src_valid[:, None, :]                       # (B, 1, S)
    tgt_keys = tgt_valid[:, None, :]                       # (B, 1, T)
    no_keys = torch.zeros(B, S + T, T, dtype=torch.bool, device=dev)
    src_rows = torch.cat([src_keys.expand(B, S, S), no_keys[:, :S]], dim=2)
    tgt_rows = torch.cat([src_keys.expand(B, T, S), causal[None] & tgt_keys], dim=2)
    blocks, row_valid = [src_rows, tgt_rows], [src_valid, tgt_valid]
    if method.pseudo_block:
        blocks = [torch.cat([rows, no_keys[:, :rows.size(1)]], dim=2) for rows in blocks]
        eye = torch.eye(T, dtype=torch.bool, device=dev)
        blocks.append(torch.cat(
            [src_keys.expand(B, T, S), causal.tril(-1)[None] & tgt_keys, eye[None].expand(B, T, T)], dim=2))
        row_valid.append(tgt_valid)
    return padding_attends_itself(torch.cat(blocks, dim=1), torch.cat(row_valid, dim=1))


def pack(src_tokens: torch.Tensor, tgt_input: torch.Tensor, method: Union[str, Method], pad: int,
         mask_idx: int, use_token_types: bool, type_ids: Tuple[int, int] = (0, 1),
         pseudo_input: Optional[torch.Tensor] = None) -> Packed:
    """Pack a batch for ``method``.

    ``src_tokens``: ``[CLS] s [SEP]`` per row, left- or right-padded. ``tgt_input``: the target
    block's input, right-padded (:meth:`Method.target_input_and_labels` in training,
    :meth:`Method.prefix_to_target_block` in decoding). ``type_ids``: the segment ids of source
    and target (the ``[P]`` slots take the target's), used with ``use_token_types``; padding
    slots take the source's. ``pseudo_input``: the ``[P]`` slots' tokens (default all ``[MASK]``;
    the reference corruption replaces some).
    """
    method = get_method(method)
    src_valid, src_pos = valid_positions(src_tokens, pad)
    tgt_valid, tgt_pos = valid_positions(tgt_input, pad)
    src_len = src_valid.long().sum(dim=1, keepdim=True)
    tgt_pos = (tgt_pos + src_len) * tgt_valid.long()
    tokens = [src_tokens, tgt_input]
    positions = [src_pos, tgt_pos]
    src_type, tgt_type = type_ids
    tgt_types = torch.where(tgt_valid, tgt_type, src_type)
    types = [torch.full_like(src_tokens, src_type), tgt_types]
    if method.pseudo_block:
        pseudo = torch.full_like(tgt_input, mask_idx) if pseudo_input is None else pseudo_input
        tokens.append(torch.where(tgt_valid, pseudo, tgt_input))
        positions.append(tgt_pos)
        types.append(tgt_types)
    S, T = src_tokens.size(1), tgt_input.size(1)
    return Packed(
        tokens=torch.cat(tokens, dim=1),
        positions=torch.cat(positions, dim=1),
        token_types=torch.cat(types, dim=1) if use_token_types else None,
        attn_mask=seq2seq_mask(src_valid, tgt_valid, method),
        predict_offset=method.predict_offset(S, T),
        block_ends=method.block_ends(S, T),
    )

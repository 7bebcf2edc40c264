"""Corruption of the target block during fine-tuning: the paper's rules and the reference code's.

``--corruption paper`` (default) follows the s2s-ft paper's text (§2.2-2.3):

* masked and pseudo-masked: of a target ``t_1 .. t_n``, ``k = max(1, round(p * n))`` slots are
  chosen (``p`` = ``--target-mask-prob``, paper range 0.4-0.7) and each is replaced by
  ``[MASK]`` (80 %), a random token (10 %, from the vocabulary without its special tokens) or
  kept (10 %); the ``[P]`` slots are all ``[MASK]``;
* causal: the teacher-forced input is the clean target.

``--corruption reference`` does what the public s2s-ft code does (microsoft/unilm, ``s2s-ft/``,
``s2s_ft/utils.py`` ``Seq2seqDatasetForBert`` at the commit named in the README; its
``mask_way`` v0 / v1 / v2 are our causal / masked / pseudo-masked):

* the 80/10/10 replacement draws its random token from the *whole* vocabulary, special tokens
  included (``get_masked_token``: ``randint(0, vocab_size - 1)``);
* pseudo-masked (v2): every ``[P]`` slot gets the 80/10/10 treatment, and each real target
  token, on its own coin flip with probability ``p``, takes the same replacement as its ``[P]``;
* masked (v1): ``k = min(cap, floor(p * n))`` slots, at least one, chosen uniformly
  (``--max-masked-tokens``, the reference's ``num_max_mask_token``; 0 here = no cap);
* causal (v0): every teacher-forced input after the first is corrupted on its own coin flip with
  probability ``p`` (labels stay clean); the start token and source convention of the reference
  (``pos_shift``) are the method's (:meth:`s2sft_fairseq.packing.Method.reference_variant`).

Draws come from the generator the caller passes (seeded per example, so the same example is
corrupted the same way in any process or batch); they cannot reproduce the reference's Python
``random`` draws one for one, only their distribution.
"""
import numpy as np
import torch

CORRUPTIONS = ("paper", "reference")


class PaperCorruption:
    """The paper's rules (see the module docstring)."""

    def __init__(self, dictionary, p: float):
        self.p = p
        self.mask_idx = dictionary.mask()
        specials = {dictionary.bos(), dictionary.eos(), dictionary.pad(), dictionary.unk(), self.mask_idx}
        self.random_pool = np.array([i for i in range(len(dictionary)) if i not in specials], dtype=np.int64)

    def shifted_input(self, inp: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Causal fine-tuning's teacher-forced input ``[SOS] t_1 .. t_{n-1}``: unchanged."""
        return inp

    def target(self, target: torch.Tensor, rng: np.random.Generator, pseudo_block: bool):
        """(input, bool mask of the corrupted slots, ``[P]`` tokens or None = all ``[MASK]``)."""
        n = len(target)
        k = min(n, max(1, int(round(self.p * n))))
        chosen = rng.choice(n, size=k, replace=False)
        inp = target.clone()
        roll = rng.random(k)
        for pos, r in zip(chosen, roll):
            if r < 0.8:
                inp[pos] = self.mask_idx
            elif r < 0.9:
                inp[pos] = int(self.random_pool[rng.integers(len(self.random_pool))])
        corrupted = torch.zeros(n, dtype=torch.bool)
        corrupted[torch.as_tensor(chosen)] = True
        return inp, corrupted, None


class ReferenceCorruption:
    """The public s2s-ft code's rules (see the module docstring)."""

    KEEP, RANDOM = 0.1, 0.1  # the reference's --keep_prob / --random_prob: [MASK] otherwise

    def __init__(self, dictionary, p: float, max_masked: int = 0):
        self.p = p
        self.max_masked = max_masked
        self.mask_idx = dictionary.mask()
        self.vocab_size = len(dictionary)

    def replacement(self, token: int, rng: np.random.Generator) -> int:
        """``get_masked_token``: keep (10 %), a random id of the whole vocabulary (10 %), else ``[MASK]``."""
        u = rng.random()
        if u < self.KEEP:
            return token
        if u < self.KEEP + self.RANDOM:
            return int(rng.integers(self.vocab_size))
        return self.mask_idx

    def shifted_input(self, inp: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """v0: each input after the start token, on a coin flip with probability p, is replaced."""
        out = inp.clone()
        for pos in range(1, len(inp)):
            if rng.random() < self.p:
                out[pos] = self.replacement(int(inp[pos]), rng)
        return out

    def target(self, target: torch.Tensor, rng: np.random.Generator, pseudo_block: bool):
        n = len(target)
        inp = target.clone()
        corrupted = torch.zeros(n, dtype=torch.bool)
        if pseudo_block:  # v2: every [P] replaced; a real token takes its [P]'s replacement w.p. p
            pseudo = target.clone()
            for pos in range(n):
                pseudo[pos] = self.replacement(int(target[pos]), rng)
                if rng.random() < self.p:
                    inp[pos] = pseudo[pos]
                    corrupted[pos] = True
            return inp, corrupted, pseudo
        k = int(self.p * n)  # v1: floor, capped, at least one
        if self.max_masked > 0:
            k = min(self.max_masked, k)
        k = max(k, 1)
        for pos in rng.permutation(n)[:k]:
            inp[pos] = self.replacement(int(target[pos]), rng)
            corrupted[pos] = True
        return inp, corrupted, None


def build_corruption(kind: str, dictionary, p: float, max_masked: int = 0):
    if kind == "paper":
        return PaperCorruption(dictionary, p)
    if kind == "reference":
        return ReferenceCorruption(dictionary, p, max_masked)
    raise ValueError(f"--corruption {kind!r}: expected one of {', '.join(CORRUPTIONS)}")

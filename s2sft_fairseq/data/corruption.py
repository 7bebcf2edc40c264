"""Corruption of the target block in masked and pseudo-masked fine-tuning (s2s-ft §2.2-2.3).

Of a target ``t_1 .. t_n``, ``k = max(1, round(p * n))`` slots are chosen (``p`` is
``--target-mask-prob``, paper range 0.4-0.7) and each is replaced by ``[MASK]`` (80 %), by a
random token (10 %, drawn from the vocabulary without its special tokens) or kept (10 %). The
method decides what is labelled (:meth:`s2sft_fairseq.packing.Method.target_input_and_labels`).
Draws come from the generator the caller passes (seeded per example, so the same example is
corrupted the same way in any process or batch).
"""
import numpy as np
import torch


class TargetCorruption:
    def __init__(self, dictionary, p: float):
        self.p = p
        self.mask_idx = dictionary.mask()
        specials = {dictionary.bos(), dictionary.eos(), dictionary.pad(), dictionary.unk(), self.mask_idx}
        self.random_pool = np.array([i for i in range(len(dictionary)) if i not in specials], dtype=np.int64)

    def __call__(self, target: torch.Tensor, rng: np.random.Generator):
        """Return (input, bool mask of the corrupted slots)."""
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
        return inp, corrupted

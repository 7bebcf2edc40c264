"""The s2s-ft beam search options as a fairseq ``SequenceGenerator`` subclass (paper §2.4).

:class:`S2SSequenceGenerator` is what ``pseudo_masked_lm``'s ``build_generator`` returns. Every
stock flag keeps fairseq's meaning; two s2s-ft options are added:

* ``--gnmt-length-penalty``: a finished hypothesis of ``len`` tokens (counting the final
  ``[SEP]``, as fairseq does) scores ``logprob / ((5 + len) / 6) ** lenpen`` (Wu et al.'s GNMT
  penalty, what s2s-ft's decoder uses) instead of fairseq's ``logprob / len ** lenpen``.
  ``--lenpen`` is alpha in both; ``--unnormalized`` switches normalisation off in both.
* ``--ngram-block-ignore "TOK ..."`` with ``--no-repeat-ngram-size N``: an n-gram that
  contains an ignored token is never blocked (s2s-ft's ``forbid_ignore_word``: when one of the
  last N-1 generated tokens is ignored nothing is blocked, and an ignored token is never
  blocked), so e.g. "." may repeat while every other repeated N-gram is forbidden.

``--min-len`` is fairseq's (the end symbol is forbidden while fewer than ``min_len`` tokens
precede it), which is also s2s-ft's ``min_len``.

``--reference-beam-search`` replaces fairseq's beam loop by the public s2s-ft code's rule (finished
hypotheses hold beam slots, no early stopping, unfinished hypotheses compete at the maximum
length, its length penalty and maximum-length convention): see
:mod:`s2sft_fairseq.reference_beam_search`.

n-gram blocking always uses :class:`NGramBlocker` here, also without an ignore list: fairseq
0.12's CPU fallback of ``NGramRepeatBlock`` compares the *padding* at the end of its token
buffer instead of the last generated tokens and so never blocks anything
(facebookresearch/fairseq#4709); the CUDA kernel is correct and this matches it.

Plain beam search (fairseq's default search) runs as :class:`RowTopKBeamSearch`: the same
candidates, found without adding the running scores to the whole ``(rows, vocabulary)``
log-probability matrix.
"""
import math
from typing import Iterable, List

import torch
from fairseq.search import BeamSearch
from fairseq.sequence_generator import SequenceGenerator
from torch import nn


def gnmt_length_penalty(length, alpha: float):
    """GNMT's ((5 + length) / 6) ** alpha (Wu et al. 2016), as in s2s-ft's beam search."""
    return ((5.0 + length) / 6.0) ** alpha


class NGramBlocker(nn.Module):
    """Forbid any token that would repeat an n-gram of the hypothesis, with an ignore list.

    Same call signature as fairseq's ``NGramRepeatBlock``. ``tokens`` is the generator's buffer
    ``(bsz * beam, >= step + 1)`` whose column 0 is the start symbol and columns 1..step the
    generated tokens. Vectorised: no Python loop over hypotheses.
    """

    def __init__(self, no_repeat_ngram_size: int, ignore: Iterable[int] = ()):
        super().__init__()
        if no_repeat_ngram_size < 1:
            raise ValueError("no_repeat_ngram_size must be >= 1")
        self.n = no_repeat_ngram_size
        self.ignore = sorted(set(int(i) for i in ignore))

    def banned_mask(self, generated: torch.Tensor):
        """For ``generated`` (rows, L): (next tokens (rows, L-n+1), bool mask of those to ban)."""
        n = self.n
        rows, L = generated.shape
        if L < n - 1 or L - n + 1 <= 0:
            return None, None
        nxt = generated[:, n - 1:]                                   # (rows, L-n+1)
        if n == 1:
            ban = torch.ones_like(nxt, dtype=torch.bool)
        else:
            tail = generated[:, L - n + 1:]                          # last n-1 tokens
            windows = generated[:, : L - 1].unfold(1, n - 1, 1)      # (rows, L-n+1, n-1)
            ban = windows.eq(tail[:, None, :]).all(dim=2)
        if self.ignore:
            ignore = torch.tensor(self.ignore, dtype=generated.dtype, device=generated.device)
            ban &= ~torch.isin(nxt, ignore)
            if n > 1:
                ban &= ~torch.isin(generated[:, L - n + 1:], ignore).any(dim=1, keepdim=True)
        return nxt, ban

    def forward(self, tokens, lprobs, bsz: int, beam_size: int, step: int):
        generated = tokens[:, 1: step + 1]
        nxt, ban = self.banned_mask(generated)
        if nxt is None or not bool(ban.any()):
            return lprobs
        rows = torch.arange(nxt.size(0), device=nxt.device)[:, None].expand_as(nxt)
        lprobs[rows[ban], nxt[ban]] = -math.inf
        return lprobs


class RowTopKBeamSearch(BeamSearch):
    """fairseq's ``BeamSearch.step`` with the same result, computed in two small steps.

    fairseq adds each hypothesis' running score to its whole row of log-probabilities and takes
    the top ``2 * beam`` over ``beam * vocab`` entries per sentence. The score is constant within
    a row, so the winners are among each row's own top ``2 * beam`` words: take those first
    (``topk`` per row), add the score to ``2 * beam`` numbers per row, and take the top
    ``2 * beam`` of ``beam * 2 * beam`` candidates. Saves a full pass over the
    ``(rows, vocab)`` matrix per step (what it saves: BENCHMARKS.md, decoding). Candidates come in
    the same order (by score; ties aside).
    """

    def step(self, step: int, lprobs, scores, prev_output_tokens=None, original_batch_idxs=None,
             candidate_multiple: int = 2):
        bsz, beam_size, vocab_size = lprobs.size()
        if step == 0:  # all hypotheses are the same: only the first beam
            lprobs = lprobs[:, ::beam_size, :]
        rows = lprobs.size(1)
        k = min(candidate_multiple * beam_size, beam_size * vocab_size - 1)  # fairseq: never pad
        row_k = min(k, vocab_size)
        row_scores, row_words = torch.topk(lprobs, k=row_k, dim=-1)        # (bsz, rows, row_k)
        if step > 0:
            row_scores = row_scores + scores[:, :, step - 1].unsqueeze(-1)
        scores_buf, flat = torch.topk(row_scores.reshape(bsz, rows * row_k), k=min(k, rows * row_k), dim=-1)
        beams_buf = torch.div(flat, row_k, rounding_mode="trunc")
        indices_buf = row_words.reshape(bsz, rows * row_k).gather(1, flat)
        return scores_buf, indices_buf, beams_buf


class S2SSequenceGenerator(SequenceGenerator):
    def __init__(self, models, tgt_dict, gnmt_length_penalty=False, ngram_block_ignore=(),
                 reference_beam_search=False, **kwargs):
        super().__init__(models, tgt_dict, **kwargs)
        if type(self.search) is BeamSearch:  # plain beam search (not sampling, diverse, constrained...)
            self.search = RowTopKBeamSearch(tgt_dict)
        self.reference_beam_search = bool(reference_beam_search)
        if self.reference_beam_search:
            if type(self.search) is not RowTopKBeamSearch or self.match_source_len:
                raise ValueError(f"--reference-beam-search is plain beam search; it cannot be combined with "
                                 f"{type(self.search).__name__} (--sampling, --diverse-beam-groups, --diversity-rate, "
                                 "--match-source-len, --constraints or a prefix-allowed-tokens function)")
            if self.lm_model is not None:
                raise ValueError("--reference-beam-search does not support a language model (--lm-path)")
        self.gnmt_length_penalty = bool(gnmt_length_penalty)
        self.ngram_block_ignore = sorted(set(int(i) for i in ngram_block_ignore))
        size = kwargs.get("no_repeat_ngram_size", 0) or 0
        self.repeat_ngram_blocker = NGramBlocker(size, self.ngram_block_ignore) if size > 0 else None

    def _generate(self, sample, prefix_tokens=None, constraints=None, bos_token=None):
        if not self.reference_beam_search:
            return super()._generate(sample, prefix_tokens, constraints, bos_token)
        if prefix_tokens is not None or constraints is not None:
            raise ValueError("--reference-beam-search does not support prefix tokens (--prefix-size) or --constraints")
        from .reference_beam_search import reference_beam_search
        return reference_beam_search(self, sample, bos_token)

    def finalize_hypos(self, step, bbsz_idx, eos_scores, tokens, scores, finalized: List, *args, **kwargs):
        """fairseq's finalisation; with the GNMT option the sentence score is re-normalised.

        fairseq divides by ``(step + 1) ** lenpen`` (``step + 1`` tokens including the end
        symbol); with ``gnmt_length_penalty`` the raw sum of log-probabilities of each newly
        finalised hypothesis is divided by ``((5 + step + 1) / 6) ** lenpen`` instead.
        """
        if not (self.gnmt_length_penalty and self.normalize_scores):
            return super().finalize_hypos(step, bbsz_idx, eos_scores, tokens, scores, finalized, *args, **kwargs)
        before = [len(f) for f in finalized]
        self.normalize_scores = False
        try:
            newly = super().finalize_hypos(step, bbsz_idx, eos_scores, tokens, scores, finalized, *args, **kwargs)
        finally:
            self.normalize_scores = True
        penalty = gnmt_length_penalty(step + 1, self.len_penalty)
        for sent, hypos in enumerate(finalized):
            for hypo in hypos[before[sent]:]:
                hypo["score"] = hypo["score"] / penalty
        return newly

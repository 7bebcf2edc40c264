"""Beam search as the public s2s-ft code decodes (``--reference-beam-search``).

The rule of the reference decoder (microsoft/unilm, ``s2s-ft/s2s_ft/modeling_decoding.py``,
``BertForSeq2SeqDecoder.beam_search``, and ``decode_seq2seq.py``; see the README, "Decoding"):

* **Beam.** At every step each of the K entries of a sentence's beam proposes its K best next
  tokens, and the new beam is the top K of these K×K candidates by cumulative log-probability,
  *end-symbol candidates included*: a hypothesis that has just ended occupies a beam slot for
  that step, and its continuations are excluded from then on (the reference adds -10000 to them;
  here they are -inf). The first step expands the single start state into its K best tokens.
* **No early stopping.** A sentence decodes until all K entries of its beam have ended or the
  maximum number of steps is reached.
* **Output.** Every hypothesis that ended at any step competes, plus, when the maximum length was
  reached, the K entries of the last step (these have no end token). The winner has the best
  length-penalised score; the ``--nbest`` list is ordered by the same score (ties: earlier step,
  then better beam rank, as the reference's scan keeps the first maximum).
* **Length penalty.** None when ``--lenpen`` (the reference's ``--length_penalty``) is <= 0 or
  with ``--unnormalized``: the raw sum of log-probabilities. Otherwise GNMT's
  ``score / ((5 + len) / 6) ** lenpen`` with ``len`` the number of generated tokens, the end
  token included.
* **Maximum length.** The number of decoding steps, the end token included: ``--max-len-b N``
  (``--max-len-a`` as in fairseq) is the reference's ``--max_tgt_length N``, capped by the
  model's ``--max-target-positions``. A finished output has at most N-1 tokens before its end
  token; an unfinished one has N. (fairseq's default loop allows N tokens plus a forced end.)
* ``--min-len`` forbids the end token while fewer than ``min_len`` tokens precede it, which is
  both fairseq's and the reference's ``min_len`` (the reference masks it at the 1-based steps
  ``<= min_len``). ``--no-repeat-ngram-size`` with ``--ngram-block-ignore`` is the reference's
  ``--forbid_duplicate_ngrams`` / ``--forbid_ignore_word``: the same n-gram rule, applied to the
  same partial sequences.

Why a loop of its own: fairseq's ``SequenceGenerator._generate`` draws 2K candidates and refills
the beam with K *unfinished* hypotheses (a finished one never holds a slot), retires a sentence
once K hypotheses have finished, forces and scores an end token at the maximum length, and
never lets an unfinished hypothesis compete. Each of these is a different line of its loop
body, so expressing the reference's rule would mean replacing the whole body. Everything else is
fairseq's: the ensemble's ``forward_encoder`` / ``forward_decoder`` / ``reorder_encoder_out`` /
``reorder_incremental_state`` (the decoder cache is reordered to the chosen parents every step
and shrinks when a sentence is done), the generator's log-probability restrictions (padding,
``--unkpen``, ``--min-len``, suppressed tokens, n-gram blocking) and its output format.

Known differences to the reference, all outside ordinary decoding: the padding symbol is never
chosen (the reference could emit ``[PAD]`` and cut the output there); a sentence with fewer than
K finite candidates leaves the empty slots out (the reference fills them with -10000-scored
tokens); scores are accumulated in fp32 (the reference in the model's precision); and with
``--beam 1`` this is the same rule with K = 1, whereas the reference runs a separate greedy loop
that ignores ``min_len`` and n-gram blocking.
"""
import math
from typing import Dict, List, Optional

import torch
from torch import Tensor

from .sequence_generator import gnmt_length_penalty


def reference_penalised_score(raw: float, length: int, alpha: float) -> float:
    """The reference's final score: the raw sum, or GNMT-normalised when ``alpha > 0``."""
    return raw / gnmt_length_penalty(length, alpha) if alpha > 0 else raw


def reference_steps(generator, src_len: int) -> int:
    """Decoding steps (end token included): ``max_len_a * src_len + max_len_b``, at most the
    model's target positions."""
    steps = min(int(generator.max_len_a * src_len + generator.max_len_b), generator.max_len)
    if steps < 1:
        raise ValueError(f"--reference-beam-search: --max-len-a {generator.max_len_a} / --max-len-b "
                         f"{generator.max_len_b} leave no decoding step for a source of {src_len} tokens")
    return steps


def restrict_lprobs(generator, lprobs: Tensor, tokens: Tensor, step: int, bsz: int, beam: int) -> Tensor:
    """The generator's restrictions of the next-token log-probabilities (fairseq's, minus its
    forced end token at the maximum length): NaN and padding excluded, ``--unkpen``,
    ``--min-len``, suppressed tokens, n-gram blocking."""
    lprobs[lprobs != lprobs] = -math.inf
    lprobs[:, generator.pad] = -math.inf
    lprobs[:, generator.unk] -= generator.unk_penalty
    if step < generator.min_len:
        lprobs[:, generator.eos] = -math.inf
    if generator.token_indices_to_suppress is not None:
        lprobs[:, generator.token_indices_to_suppress] = -math.inf
    if generator.repeat_ngram_blocker is not None:
        lprobs = generator.repeat_ngram_blocker(tokens, lprobs, bsz, beam, step)
    return lprobs


class _Pool:
    """Every hypothesis that may be output, per sentence of the batch, in the order found."""

    def __init__(self, bsz: int, alpha: float):
        self.alpha = alpha
        self.found: List[List[tuple]] = [[] for _ in range(bsz)]

    def add(self, sentences: List[int], tokens: Tensor, positional: Tensor, raw: List[float], length: int):
        for i, sent in enumerate(sentences):
            score = reference_penalised_score(raw[i], length, self.alpha)
            self.found[sent].append((score, tokens[i].clone(), positional[i].clone()))

    def best(self, n: int) -> List[List[Dict[str, Tensor]]]:
        out = []
        for hyps in self.found:
            ranked = sorted(hyps, key=lambda h: -h[0])[:n]  # stable: earlier step, better rank first
            out.append([{"tokens": toks, "score": torch.tensor(score, dtype=pos.dtype), "attention": torch.empty(0),
                         "alignment": torch.empty(0), "positional_scores": pos} for score, toks, pos in ranked])
        return out


@torch.no_grad()
def reference_beam_search(generator, sample: Dict[str, Dict[str, Tensor]],
                          bos_token: Optional[int] = None) -> List[List[Dict[str, Tensor]]]:
    """Decode ``sample`` with the reference's beam rule (module docstring) using ``generator``'s
    model ensemble and settings; fairseq's output format, at most ``beam`` hypotheses per
    sentence, best first."""
    model, K, V = generator.model, generator.beam_size, generator.vocab_size
    net_input = sample["net_input"]
    src_tokens = net_input["src_tokens"]
    bsz, src_len = src_tokens.size()[:2]
    device = src_tokens.device
    steps = reference_steps(generator, src_len)
    alpha = generator.len_penalty if generator.normalize_scores else 0.0
    pool = _Pool(bsz, alpha)

    incremental_states = [{} for _ in range(model.models_size)]
    encoder_outs = model.forward_encoder(net_input)
    encoder_outs = model.reorder_encoder_out(encoder_outs, torch.arange(bsz, device=device).repeat_interleave(K))
    tokens = torch.full((bsz * K, steps + 1), generator.pad, dtype=torch.long, device=device)
    tokens[:, 0] = generator.eos if bos_token is None else bos_token
    positional = torch.zeros(bsz * K, steps, device=device)  # each token's log-probability
    cum = torch.zeros(bsz * K, device=device)                 # running sum per beam entry
    ended = torch.zeros(bsz * K, dtype=torch.bool, device=device)
    sentence_of = torch.arange(bsz, device=device)            # batch index of each active sentence
    reorder: Optional[Tensor] = None

    for step in range(steps):
        n = sentence_of.numel()
        if reorder is not None:
            model.reorder_incremental_state(incremental_states, reorder)
            encoder_outs = model.reorder_encoder_out(encoder_outs, reorder)
        lprobs, _ = model.forward_decoder(tokens[:, : step + 1], encoder_outs, incremental_states,
                                          generator.temperature)
        lprobs = restrict_lprobs(generator, lprobs.float(), tokens, step, n, K)

        if step == 0:  # the K rows of a sentence are the same start state: expand the first
            lp, words = lprobs.view(n, K, V)[:, 0].topk(K, dim=-1)
            scores, parents = lp, torch.zeros_like(words)
        else:  # each entry's K best tokens, then the top K of the K×K per sentence
            row_lp, row_words = lprobs.topk(K, dim=-1)
            row_scores = (row_lp + cum[:, None]).masked_fill_(ended[:, None], -math.inf)
            scores, flat = row_scores.view(n, K * K).topk(K, dim=-1)
            parents = torch.div(flat, K, rounding_mode="floor")
            words = row_words.view(n, K * K).gather(1, flat)
            lp = row_lp.view(n, K * K).gather(1, flat)

        parent_rows = (parents + K * torch.arange(n, device=device)[:, None]).view(-1)
        tokens = tokens.index_select(0, parent_rows)
        tokens[:, step + 1] = words.view(-1)
        positional = positional.index_select(0, parent_rows)
        positional[:, step] = lp.view(-1)
        cum = scores.reshape(-1)
        dead = torch.isinf(cum)  # fewer than K finite candidates: the slot holds nothing
        ended = words.view(-1).eq(generator.eos) | dead
        last = step == steps - 1
        output = ~dead if last else ended & ~dead  # the step limit: the unfinished entries compete too
        if bool(output.any()):
            rows = output.nonzero().squeeze(1)
            pool.add(sentence_of[torch.div(rows, K, rounding_mode="floor")].tolist(), tokens[rows, 1: step + 2],
                     positional[rows, : step + 1], cum[rows].tolist(), step + 1)
        if last:
            break
        keep = ~ended.view(n, K).all(dim=1)  # a sentence is done when all K entries have ended
        if not bool(keep.any()):
            break
        reorder = parent_rows
        if not bool(keep.all()):
            keep_rows = keep.repeat_interleave(K)
            reorder, tokens, positional = reorder[keep_rows], tokens[keep_rows], positional[keep_rows]
            cum, ended, sentence_of = cum[keep_rows], ended[keep_rows], sentence_of[keep]
    return pool.best(K)

"""``--reference-beam-search``: beam search as the public s2s-ft code decodes (issue 12, item 5).

The oracle is the reference's rule written out plainly, one sentence at a time, over the
log-probabilities of the model's packed training computation (a full recompute of source +
prefix per step, no cache): every live hypothesis is extended by *every* word, the candidates
are sorted, the K best (end-symbol candidates included) form the next beam, decoding runs until
all K have ended or the step limit, and the output is the best length-penalised hypothesis
among all that ended plus the last beam's unfinished ones (microsoft/unilm
``s2s-ft/s2s_ft/modeling_decoding.py``, ``BertForSeq2SeqDecoder.beam_search``, the back-tracking
at the end). The generator under test decodes batches with the key/value cache, reorders and
batch shrinking.
"""
import math
import re

import pytest
import torch

from conftest import run_cli
from s2sft_fairseq.reference_beam_search import reference_penalised_score
from s2sft_fairseq.sequence_generator import NGramBlocker, S2SSequenceGenerator, gnmt_length_penalty
from test_generate import GEN, gen_args, load, one_thread, tiny_ckpt  # noqa: F401  (fixtures)
from test_incremental import make_source
from tiny import tiny_model

BEAM, STEPS = 3, 9


def peaky_model(method, eos_bias, seed=11):
    """A tiny random model with peaky, input-dependent distributions (as in test_incremental)."""
    model, d = tiny_model(method, seed=seed)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.stack.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3, generator=g)
        model.stack.lm_head.bias[d.eos()] = eos_bias
    return model, d


def batch(d, lengths=(9, 5, 7, 3, 8, 6, 4, 9), seed=5):
    src = make_source(d, list(lengths), width=max(lengths), left_pad=False, seed=seed)
    return {"net_input": {"src_tokens": src, "src_lengths": src.ne(d.pad()).sum(1)}}


# ---------------------------------------------------------------------------- the oracle
def repeated_ngram_bans(seq, n, ignore):
    """The words that would repeat an n-gram of ``seq`` (s2s-ft's forbid_duplicate_ngrams with
    its forbid_ignore_word set): nothing when the last n-1 words contain an ignored word, and an
    ignored word is never banned."""
    if n < 2 or len(seq) < n:
        return set()
    tail = seq[len(seq) - (n - 1):]
    if any(w in ignore for w in tail):
        return set()
    return {seq[i + n - 1] for i in range(len(seq) - n + 1)
            if seq[i:i + n - 1] == tail and seq[i + n - 1] not in ignore}


@torch.no_grad()
def full_recompute_lprobs(model, src_row, prefixes):
    """Next-word log-probabilities of each prefix, from the packed training computation."""
    d = model.decoder.dictionary
    prev = torch.tensor([[d.eos()] + p for p in prefixes])
    h = model.decoder.forward_packed(src_row[None].expand(len(prefixes), -1), model.decoder.prefix_to_tgt_input(prev))
    return torch.log_softmax(model.decoder.output_layer(h[:, -1]).double(), dim=-1)


def oracle(model, src_row, beam, steps, alpha, min_len=1, ngram=0, ignore=()):
    """All output candidates of the reference rule for one sentence, best first:
    [(penalised score, raw score, tokens)]."""
    d = model.decoder.dictionary
    src_row = src_row[src_row.ne(d.pad())]
    entries = [([], 0.0)]  # (tokens, raw score); the start state
    found = []
    for step in range(steps):
        live = [(toks, s) for toks, s in entries if not toks or toks[-1] != d.eos()]
        lp = full_recompute_lprobs(model, src_row, [toks for toks, _ in live])
        candidates = []
        for i, (toks, s) in enumerate(live):
            banned = repeated_ngram_bans(toks, ngram, set(ignore))
            for w in range(len(d)):
                if w == d.pad() or (w == d.eos() and step < min_len) or w in banned:
                    continue
                candidates.append((toks + [w], s + lp[i, w].item()))
        candidates.sort(key=lambda c: -c[1])
        entries = candidates[:beam]
        found += [(reference_penalised_score(s, step + 1, alpha), s, toks)
                  for toks, s in entries if toks[-1] == d.eos()]
        if all(toks[-1] == d.eos() for toks, _ in entries):
            break
    else:  # the step limit: the unfinished entries of the last step compete too
        found += [(reference_penalised_score(s, steps, alpha), s, toks)
                  for toks, s in entries if toks[-1] != d.eos()]
    return sorted(found, key=lambda f: -f[0])


def reference_generator(model, d, beam=BEAM, steps=STEPS, lenpen=0.0, unnormalized=False, **kw):
    return S2SSequenceGenerator([model], d, beam_size=beam, max_len_b=steps, len_penalty=lenpen,
                                normalize_scores=not unnormalized, reference_beam_search=True, **kw)


# ---------------------------------------------------------------------------- generator == oracle
CASES = {
    "no_penalty": dict(lenpen=0.0),
    "gnmt_0.9": dict(lenpen=0.9),
    "gnmt_1.2_min3": dict(lenpen=1.2, min_len=3),
    "unnormalized_ngram2": dict(lenpen=1.0, unnormalized=True, ngram=2),
    "ngram3_ignore": dict(lenpen=0.0, ngram=3, ignore=True),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", ["pseudo_masked", "masked", "causal"])
@torch.no_grad()
def test_reference_beam_search_equals_the_oracle(method, case):
    opts = dict(CASES[case])
    model, d = peaky_model(method, eos_bias=3.5)  # winners of both kinds: ended, and unfinished at the limit
    sample = batch(d)
    ngram, ignore = opts.pop("ngram", 0), [d.index("w3"), d.index("w7")] if opts.pop("ignore", False) else []
    min_len = opts.get("min_len", 1)
    gen = reference_generator(model, d, no_repeat_ngram_size=ngram, ngram_block_ignore=ignore, **opts)
    alpha = 0.0 if opts.get("unnormalized") else opts["lenpen"]
    hypos = gen.generate([model], sample)
    kinds = set()
    for row, hyps in enumerate(hypos):
        expect = oracle(model, sample["net_input"]["src_tokens"][row], BEAM, STEPS, alpha, min_len, ngram, ignore)
        assert len(hyps) == min(BEAM, len(expect))
        for rank, (h, (score, raw, toks)) in enumerate(zip(hyps, expect)):  # the whole n-best list, in order
            assert h["tokens"].tolist() == toks, f"row {row} rank {rank}"
            assert abs(h["score"].item() - score) < 1e-4, f"row {row} rank {rank}"
            assert abs(h["positional_scores"].sum().item() - raw) < 1e-4
            assert len(h["positional_scores"]) == len(toks)
        best = hyps[0]["tokens"].tolist()
        kinds.add("unfinished" if best[-1] != d.eos() else "finished")
        assert len(best) <= STEPS and (best[-1] == d.eos() or len(best) == STEPS)
        assert len(best) > min_len
    assert kinds == {"finished", "unfinished"}, f"winners all {kinds}: the max-length rule is not exercised"
    if ngram:
        free = reference_generator(model, d, **opts).generate([model], sample)
        assert any(a[0]["tokens"].tolist() != b[0]["tokens"].tolist() for a, b in zip(free, hypos)), \
            "n-gram blocking changed nothing: the blocking cases are vacuous"


# ---------------------------------------------------------------------------- vs fairseq's loop
@torch.no_grad()
def test_reference_finds_a_hypothesis_after_fairseq_stopped():
    """fairseq retires a sentence once K hypotheses have ended; the reference keeps its live
    entries going. Under the same criterion for both (GNMT, alpha 2, which rewards length:
    fairseq with --gnmt-length-penalty), the reference finds, for some sentences, a better
    hypothesis that is longer than anything fairseq's loop finished before it stopped."""
    model, d = peaky_model("pseudo_masked", eos_bias=4.0)
    sample = batch(d, lengths=(9, 5, 7, 3, 8, 6, 4, 9, 6, 7, 5, 8, 3, 4, 9, 8, 7, 6, 5, 4, 3, 9, 8, 7))
    beam, steps, alpha = 2, 14, 2.0
    ref = reference_generator(model, d, beam=beam, steps=steps, lenpen=alpha).generate([model], sample)
    fs = S2SSequenceGenerator([model], d, beam_size=beam, max_len_b=steps, len_penalty=alpha,
                              gnmt_length_penalty=True).generate([model], sample)
    later = 0
    for row, (r, f) in enumerate(zip(ref, fs)):
        best = r[0]["tokens"].tolist()
        if (best[-1] == d.eos() and len(best) > max(len(h["tokens"]) for h in f)
                and r[0]["score"].item() > f[0]["score"].item() + 1e-4):
            later += 1
            assert oracle(model, sample["net_input"]["src_tokens"][row], beam, steps, alpha)[0][2] == best
    assert later >= 1, "no sentence where the reference's winner was found after fairseq stopped"


@torch.no_grad()
def test_unfinished_hypothesis_wins_at_max_length():
    """When no hypothesis ends within the step limit the reference returns the best unfinished
    one, without an end token, of exactly ``--max-len-b`` tokens; fairseq forces an end token
    after ``--max-len-b`` tokens."""
    model, d = peaky_model("pseudo_masked", eos_bias=-20.0)
    sample = batch(d)
    ref = reference_generator(model, d, steps=6).generate([model], sample)
    fs = S2SSequenceGenerator([model], d, beam_size=BEAM, max_len_b=6, normalize_scores=False).generate([model], sample)
    for row, (r, f) in enumerate(zip(ref, fs)):
        toks = r[0]["tokens"].tolist()
        assert len(toks) == 6 and d.eos() not in toks
        assert f[0]["tokens"].tolist()[-1] == d.eos() and len(f[0]["tokens"]) == 7
        assert abs(r[0]["score"].item() - r[0]["positional_scores"].sum().item()) < 1e-5
        assert oracle(model, sample["net_input"]["src_tokens"][row], BEAM, 6, 0.0)[0][2] == toks


# ---------------------------------------------------------------------------- scores, n-best
@pytest.mark.parametrize("lenpen,unnormalized", [(0.0, False), (-0.5, False), (1.0, True), (0.6, False), (1.3, False)])
@torch.no_grad()
def test_score_is_raw_sum_or_gnmt(lenpen, unnormalized):
    model, d = peaky_model("pseudo_masked", eos_bias=3.0)
    hypos = reference_generator(model, d, lenpen=lenpen, unnormalized=unnormalized).generate([model], batch(d))
    gnmt = lenpen > 0 and not unnormalized
    for hyps in hypos:
        scores = [h["score"].item() for h in hyps]
        assert scores == sorted(scores, reverse=True), "n-best not ordered by the criterion"
        for h in hyps:
            raw, n = h["positional_scores"].sum().item(), len(h["tokens"])  # n counts the end token
            expect = raw / ((5 + n) / 6) ** lenpen if gnmt else raw
            assert math.isclose(h["score"].item(), expect, rel_tol=1e-5, abs_tol=1e-5)


@torch.no_grad()
def test_length_penalty_changes_the_winner():
    """A GNMT penalty must favour longer outputs than the raw sum does (else the cases above
    could pass with the penalty ignored in the search)."""
    model, d = peaky_model("pseudo_masked", eos_bias=3.0)
    sample = batch(d)
    raw = reference_generator(model, d, lenpen=0.0).generate([model], sample)
    long = reference_generator(model, d, lenpen=3.0).generate([model], sample)
    pairs = [(len(a[0]["tokens"]), len(b[0]["tokens"])) for a, b in zip(raw, long)]
    assert all(lb >= la for la, lb in pairs) and any(lb > la for la, lb in pairs), pairs


def test_penalty_formula_is_the_references():
    assert reference_penalised_score(-6.0, 7, 0.0) == -6.0
    assert reference_penalised_score(-6.0, 7, -1.0) == -6.0  # the reference applies it only when > 0
    assert math.isclose(reference_penalised_score(-6.0, 7, 1.0), -3.0)
    assert math.isclose(reference_penalised_score(-6.0, 13, 0.5), -6.0 / gnmt_length_penalty(13, 0.5))


def test_oracle_ngram_rule_equals_the_generators_blocker():
    """The oracle's n-gram rule and the generator's NGramBlocker agree (the oracle comparison
    with blocking on then checks the decoder uses the blocker on the right rows)."""
    g = torch.Generator().manual_seed(3)
    for n in (2, 3):
        blocker = NGramBlocker(n, ignore=[5])
        for _ in range(200):
            seq = torch.randint(4, 9, (int(torch.randint(0, 9, (1,), generator=g)),), generator=g).tolist()
            lprobs = blocker(torch.tensor([[0] + seq]), torch.zeros(1, 10), 1, 1, len(seq))
            assert set((lprobs[0] == -math.inf).nonzero().flatten().tolist()) == repeated_ngram_bans(seq, n, {5}), seq


def test_refuses_what_it_cannot_do():
    model, d = peaky_model("pseudo_masked", eos_bias=3.0)
    from fairseq.search import Sampling
    with pytest.raises(ValueError, match="plain beam search"):
        reference_generator(model, d, search_strategy=Sampling(d))
    gen = reference_generator(model, d)
    sample = batch(d)
    with pytest.raises(ValueError, match="prefix"):
        gen.generate([model], sample, prefix_tokens=torch.full((8, 1), 7))
    with pytest.raises(ValueError, match="no decoding step"):
        reference_generator(model, d, steps=0).generate([model], sample)


# ---------------------------------------------------------------------------- fairseq-generate
def hypotheses(stdout):
    """{id: [(score, text, n positional scores), ...]} in printed order."""
    out, pending = {}, None
    for line in stdout.splitlines():
        if line.startswith("H-"):
            key, score, *text = line.split("\t")
            pending = (int(key[2:]), float(score), text[0] if text else "")
        elif line.startswith("P-") and pending is not None:
            out.setdefault(pending[0], []).append((pending[1], pending[2], len(line.split("\t")[1].split())))
            pending = None
    return out


@pytest.mark.slow
@torch.no_grad()
def test_fairseq_generate_with_reference_beam_search(toy_data, tiny_ckpt):
    flags = ["--beam", "4", "--nbest", "3", "--batch-size", "8", "--lenpen", "0", "--max-len-b", "7",
             "--min-len", "2", "--no-repeat-ngram-size", "3", "--ngram-block-ignore", "."]
    proc = run_cli("fairseq-generate", toy_data, *GEN, "--path", tiny_ckpt, "--gen-subset", "test",
                   "--reference-beam-search", *flags)
    assert re.search(r"reference beam search: beam 4, length penalty none", proc.stderr)
    printed = hypotheses(proc.stdout)
    assert sorted(printed) == list(range(20))
    default = hypotheses(run_cli("fairseq-generate", toy_data, *GEN, "--path", tiny_ckpt, "--gen-subset", "test",
                                 *flags).stdout)
    # the same hypotheses as the generator in this process, and the max-length convention
    models, task = load(tiny_ckpt, toy_data)
    task.cfg.reference_beam_search = True
    task.cfg.ngram_block_ignore = "."
    task.load_dataset("test")
    ds = task.dataset("test")
    sample = ds.collater([ds[i] for i in range(len(ds))])
    gen = task.build_generator(models, gen_args(beam=4, lenpen=0.0, max_len_b=7, min_len=2, no_repeat_ngram_size=3))
    d, unfinished = task.dictionary, 0
    for sid, hyps in zip(sample["id"].tolist(), gen.generate(models, sample)):
        assert len(printed[sid]) == 3
        for (score, text, n_pos), h in zip(printed[sid], hyps):
            toks = h["tokens"].tolist()
            assert text == d.string(h["tokens"]), sid
            assert abs(score - h["score"].item() / math.log(2)) < 1e-3
            assert n_pos == len(toks) <= 7  # at most --max-len-b steps, the end token included
            unfinished += toks[-1] != d.eos()
        assert [s for s, _, _ in printed[sid]] == sorted((s for s, _, _ in printed[sid]), reverse=True)
    assert unfinished, "no unfinished hypothesis at the step limit: the max-length convention is not exercised"
    assert any(printed[i][0][1] != default[i][0][1] for i in printed), "same output as fairseq's loop everywhere"

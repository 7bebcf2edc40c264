"""fairseq-generate / fairseq-interactive with the s2s-ft generator (issue 4).

A tiny random ``unilm_seq2seq_tiny`` checkpoint (one fairseq-train update, then its weights
redrawn larger so outputs depend on the input and end at varied lengths) on the toy corpus.
"""
import functools
import math
import os
import re
import subprocess
from argparse import Namespace

import pytest
import torch

import s2sft_fairseq  # noqa: F401  (registers the plugin, allow-lists checkpoint globals)
from conftest import BIN, USER_DIR, make_toy_corpus, run_cli
from s2sft_fairseq.checkpoints.vocab import load_task_dictionary
from s2sft_fairseq.sequence_generator import (
    NGramBlocker, RowTopKBeamSearch, S2SSequenceGenerator, gnmt_length_penalty,
)

GEN = ["--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu", "--max-source-positions", "64",
       "--max-target-positions", "32"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models: one thread (here and per CLI process) is faster, and fairer on a shared machine."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_ckpt(toy_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("tiny_ckpt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        run_cli("fairseq-train", toy_data, *GEN, "--arch", "unilm_seq2seq_tiny", "--criterion",
                "s2s_label_smoothed_cross_entropy", "--ft-method", "pseudo_masked", "--optimizer", "adam",
                "--lr", "1e-4", "--batch-size", "16", "--max-update", "1", "--save-dir", save,
                "--num-workers", "0", "--disable-validation", "--no-epoch-checkpoints", "--seed", "1")
    path = str(save / "checkpoint_last.pt")
    state = torch.load(path)  # weights_only (the plugin allow-lists what fairseq needs)
    g = torch.Generator().manual_seed(0)
    d = load_task_dictionary(os.path.join(toy_data, "dict.src.txt"))
    for t in state["model"].values():  # larger weights: input-dependent, peaky outputs
        if t.dim() == 2:
            t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    bias = [k for k in state["model"] if k.endswith("lm_head.bias")]
    assert len(bias) == 1, bias
    state["model"][bias[0]][d.eos()] = 4.5  # ... that end at varied lengths (batch shrinking)
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def data101(minilm, tmp_path_factory):
    """A binarized corpus whose test split has 101 sentences (not a multiple of 8)."""
    return make_toy_corpus(str(tmp_path_factory.mktemp("toy101")), minilm, sizes=(("test", 101),), seed=5)


def parse(stdout, kind):
    """{id: (score, text)} of the ``kind-`` lines (H, D, S, T)."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith(f"{kind}-"):
            parts = line.split("\t")
            key = int(parts[0][len(kind) + 1:])
            assert key not in out, f"{kind}-{key} printed twice"
            out[key] = (float(parts[1]), parts[2] if len(parts) > 2 else "") if kind in "HD" else parts[1]
    return out


@functools.lru_cache(maxsize=None)
def generate(data, ckpt, *extra, subset="test", beam=3, batch=8):
    """fairseq-generate's stdout (memoised: tests that need the same run share it)."""
    proc = run_cli("fairseq-generate", data, *GEN, "--path", ckpt, "--beam", beam, "--batch-size", batch,
                   "--gen-subset", subset, "--max-len-b", 16, *extra)
    return proc.stdout


# ---------------------------------------------------------------------------- cache vs recompute
@pytest.mark.parametrize("method", ["pseudo_masked", "causal"])
def test_generate_incremental_equals_full_recompute(method, toy_data, tiny_ckpt):
    cached = generate(toy_data, tiny_ckpt, *(() if method == "pseudo_masked" else
                                             ("--model-overrides", f"{{'ft_method': '{method}'}}")))
    full = generate(toy_data, tiny_ckpt, "--model-overrides",
                    f"{{'ft_method': '{method}', 'incremental_decoding': False}}")
    h_cached, h_full = parse(cached, "H"), parse(full, "H")
    assert len(h_cached) == 20 and h_cached.keys() == h_full.keys()
    for i in h_cached:
        assert h_cached[i][1] == h_full[i][1], f"sentence {i}: {h_cached[i]} != {h_full[i]}"
        assert abs(h_cached[i][0] - h_full[i][0]) < 1e-4
    lengths = {len(text.split()) for _, text in h_cached.values()}
    assert len(lengths) > 2, f"outputs all of lengths {lengths}: batch shrinking not exercised"


# ---------------------------------------------------------------------------- beam 1 == greedy
def load(ckpt, data, **overrides):
    from fairseq import checkpoint_utils
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [ckpt], arg_overrides={"data": data, **overrides})
    for m in models:
        m.eval()
    return models, task


def gen_args(**kw):
    base = dict(beam=1, max_len_a=0, max_len_b=200, min_len=1, lenpen=1.0, unkpen=0.0,
                no_repeat_ngram_size=0, unnormalized=False)
    base.update(kw)
    return Namespace(**base)


@pytest.mark.parametrize("method", ["pseudo_masked", "causal", "masked"])
@torch.no_grad()
def test_beam1_equals_greedy_argmax_over_full_forward(method, toy_data, tiny_ckpt):
    models, task = load(tiny_ckpt, toy_data, ft_method=method)
    model, d = models[0], task.dictionary
    task.load_dataset("test")
    ds = task.dataset("test")
    batch = ds.collater([ds[i] for i in range(12)])
    max_len = 12
    hypos = task.build_generator(models, gen_args(beam=1, max_len_b=max_len)).generate(models, batch)
    # our own greedy loop: argmax of the packed training computation over the whole prefix
    src = batch["net_input"]["src_tokens"]
    prev = torch.full((src.size(0), 1), d.eos())
    done = torch.zeros(src.size(0), dtype=torch.bool)
    for step in range(max_len + 1):
        h = model.decoder.forward_packed(src, model.decoder.prefix_to_tgt_input(prev))
        lprobs = torch.log_softmax(model.decoder.output_layer(h[:, -1]), dim=-1)
        lprobs[:, d.pad()] = -math.inf
        if step < 1:  # --min-len 1
            lprobs[:, d.eos()] = -math.inf
        nxt = lprobs.argmax(dim=-1) if step < max_len else torch.full((src.size(0),), d.eos())
        nxt = torch.where(done, torch.full_like(nxt, d.pad()), nxt)
        prev = torch.cat([prev, nxt[:, None]], dim=1)
        done |= nxt.eq(d.eos())
        if done.all():
            break
    for row in range(src.size(0)):
        greedy = [t for t in prev[row, 1:].tolist() if t != d.pad()]
        assert hypos[row][0]["tokens"].tolist() == greedy, f"row {row}"


# ---------------------------------------------------------------------------- beam search step
@pytest.mark.parametrize("step", [0, 3])
def test_row_topk_beam_search_step_equals_fairseqs(step):
    from fairseq.data import Dictionary
    from fairseq.search import BeamSearch
    g = torch.Generator().manual_seed(step)
    bsz, beam, vocab = 3, 4, 50
    lprobs = torch.log_softmax(torch.randn(bsz, beam, vocab, generator=g) * 3, dim=-1)
    lprobs[0, :, 7] = -math.inf      # a banned word everywhere in sentence 0
    lprobs[1, 2, :45] = -math.inf    # a row with only 5 allowed words (< 2 * beam)
    scores = torch.randn(bsz, beam, step + 1, generator=g) - 5
    ref = BeamSearch(Dictionary()).step(step, lprobs, scores)
    ours = RowTopKBeamSearch(Dictionary()).step(step, lprobs, scores)
    assert torch.equal(ours[0], ref[0])  # the same candidate scores, in the same order
    finite = ref[0].isfinite()
    assert torch.equal(ours[1][finite], ref[1][finite]) and torch.equal(ours[2][finite], ref[2][finite])


def test_generator_with_row_topk_search_equals_fairseqs_beam_search(toy_data, tiny_ckpt):
    from fairseq.search import BeamSearch
    models, task = load(tiny_ckpt, toy_data)
    task.load_dataset("test")
    ds = task.dataset("test")
    batch = ds.collater([ds[i] for i in range(12)])
    ours = task.build_generator(models, gen_args(beam=4, max_len_b=12))
    assert type(ours.search) is RowTopKBeamSearch
    stock = task.build_generator(models, gen_args(beam=4, max_len_b=12))
    stock.search = BeamSearch(task.target_dictionary)
    with torch.no_grad():
        a, b = ours.generate(models, batch), stock.generate(models, batch)
    for ha, hb in zip(a, b):
        assert [h["tokens"].tolist() for h in ha] == [h["tokens"].tolist() for h in hb]
        assert torch.allclose(torch.tensor([h["score"] for h in ha]), torch.tensor([h["score"] for h in hb]))


# ---------------------------------------------------------------------------- nothing dropped
def test_generate_keeps_all_101_sentences_with_batch_size_8(data101, tiny_ckpt):
    out = generate(data101, tiny_ckpt, beam=2, batch=8)
    hyps = parse(out, "H")
    assert sorted(hyps) == list(range(101))
    assert len(parse(out, "D")) == 101


def test_batch_iterator_keeps_every_example_and_truncates_to_model_limits(data101, tiny_ckpt):
    _, task = load(tiny_ckpt, data101)
    task.load_dataset("test")
    ds = task.dataset("test")
    for bs in (1, 3, 8, 16, 64):
        itr = task.get_batch_iterator(ds, max_sentences=bs, max_positions=(6, 4), ignore_invalid_inputs=True,
                                      required_batch_size_multiple=8).next_epoch_itr(shuffle=False)
        ids = [i for batch in itr for i in batch["id"].tolist()]
        assert sorted(ids) == list(range(101)), bs
    assert ds[0]["source"].numel() <= 6 and ds[0]["target"].numel() <= 4


# ---------------------------------------------------------------------------- readable output
def test_generate_prints_detokenized_text(toy_data, tiny_ckpt, minilm):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(minilm, local_files_only=True)
    out = generate(toy_data, tiny_ckpt)
    hyps, detok, targets = parse(out, "H"), parse(out, "D"), parse(out, "T")
    assert len(detok) == len(hyps) == 20
    merged = 0
    for i, (_, pieces) in hyps.items():
        assert detok[i][1] == tok.convert_tokens_to_string(pieces.split()).strip()
        merged += " ##" in pieces
    assert merged, "no wordpiece to merge in any hypothesis: the check proves nothing"
    # references are plain text too (the toy target is lower-case words)
    assert all("##" not in t for t in targets.values())


def test_interactive_round_trip_raw_text(toy_data, tiny_ckpt, minilm, tmp_path):
    lines = ["The cat sat on the mat.", "big red dog", " ".join(["green tree"] * 110), "sky"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([os.path.join(BIN, "fairseq-interactive"), toy_data, *map(str, GEN), "--path", tiny_ckpt,
                           "--beam", "2", "--batch-size", "2", "--buffer-size", "3", "--max-source-positions", "200",
                           "--max-target-positions", "16", "--max-len-b", "10"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    src, hyps, detok = parse(proc.stdout, "S"), parse(proc.stdout, "H"), parse(proc.stdout, "D")
    assert sorted(src) == sorted(hyps) == sorted(detok) == list(range(len(lines)))
    assert src[0] == "the cat sat on the mat ."  # tokenized with the checkpoint tokenizer (uncased)
    assert len(src[2].split()) == 62  # truncated to the model's 64 source positions, not dropped
    assert re.search(r"WARNING.*longer than --max-source-positions", proc.stderr)
    assert re.search(r"WARNING.*model accepts at most 64 source", proc.stderr)
    from s2sft_fairseq.tokenizer import CheckpointTokenizerBPE
    bpe = CheckpointTokenizerBPE.from_dir(minilm)
    for i in hyps:
        assert detok[i][1] == bpe.decode(hyps[i][1])
        assert len(hyps[i][1].split()) <= 10


# ---------------------------------------------------------------------------- s2s-ft options
def test_gnmt_length_penalty_formula():
    assert gnmt_length_penalty(1, 0.0) == 1.0
    assert gnmt_length_penalty(1, 1.0) == 1.0
    assert math.isclose(gnmt_length_penalty(7, 1.0), 2.0)
    assert math.isclose(gnmt_length_penalty(13, 0.6), 3.0 ** 0.6)


@pytest.mark.parametrize("gnmt", [False, True])
@torch.no_grad()
def test_hypothesis_scores_use_the_chosen_length_normalisation(gnmt, toy_data, tiny_ckpt):
    models, task = load(tiny_ckpt, toy_data)
    task.cfg.gnmt_length_penalty = gnmt
    task.load_dataset("test")
    ds = task.dataset("test")
    batch = ds.collater([ds[i] for i in range(8)])
    gen = task.build_generator(models, gen_args(beam=3, lenpen=0.7))
    assert isinstance(gen, S2SSequenceGenerator) and gen.gnmt_length_penalty == gnmt
    for hypos in gen.generate(models, batch):
        for h in hypos:
            n = len(h["tokens"])  # includes the final [SEP]
            raw = h["positional_scores"].sum().item()
            expect = raw / (gnmt_length_penalty(n, 0.7) if gnmt else n ** 0.7)
            assert math.isclose(h["score"].item(), expect, rel_tol=1e-5, abs_tol=1e-5)


def blocked(blocker, generated, vocab=20):
    tokens = torch.tensor([[0] + generated])
    lprobs = blocker(tokens, torch.zeros(1, vocab), 1, 1, len(generated))
    return sorted(torch.nonzero(lprobs[0] == -math.inf).flatten().tolist())


def test_ngram_blocking_with_ignore_list():
    DOT, A, B, C = 5, 6, 7, 8
    plain = NGramBlocker(3)
    dot_ok = NGramBlocker(3, ignore=[DOT])
    # "A B C A B" -> C would repeat the trigram "A B C"
    assert blocked(plain, [A, B, C, A, B]) == [C]
    assert blocked(dot_ok, [A, B, C, A, B]) == [C]
    # "A . A ." : the trigram ". A ." would repeat; it contains "." so it is never blocked
    assert blocked(plain, [A, DOT, A, DOT]) == [A]
    assert blocked(dot_ok, [A, DOT, A, DOT]) == []
    # ". . " repeated dots may go on
    assert blocked(plain, [DOT, DOT, DOT]) == [DOT]
    assert blocked(dot_ok, [DOT, DOT, DOT]) == []
    # "A B . A B" -> "." would repeat "A B ." : contains "." -> allowed; but "A B C" still blocked
    assert blocked(dot_ok, [A, B, DOT, A, B, C, A, B]) == [C]
    # too short to repeat anything
    assert blocked(plain, [A, B]) == []
    assert blocked(NGramBlocker(1), [A, B]) == [A, B]


def test_ngram_blocker_matches_fairseq_cuda_semantics_per_row():
    """Batched rows, each blocked on its own history (what fairseq's CUDA kernel does)."""
    blocker = NGramBlocker(2)
    tokens = torch.tensor([[0, 5, 6, 9, 5, 1], [0, 7, 7, 8, 7, 1]])  # column 5: unused buffer
    lprobs = blocker(tokens, torch.zeros(2, 10), 1, 2, 4)
    assert (lprobs[0] == -math.inf).nonzero().flatten().tolist() == [6]
    assert (lprobs[1] == -math.inf).nonzero().flatten().tolist() == [7, 8]


@torch.no_grad()
def test_generator_blocks_repeats_except_ignored(toy_data, tiny_ckpt):
    models, task = load(tiny_ckpt, toy_data)
    task.load_dataset("test")
    ds = task.dataset("test")
    batch = ds.collater([ds[i] for i in range(20)])
    d = task.dictionary
    free = task.build_generator(models, gen_args(beam=2)).generate(models, batch)
    assert any(len(set(zip(h[0]["tokens"][:-1].tolist(), h[0]["tokens"][1:].tolist())))
               < len(h[0]["tokens"]) - 1 for h in free), "no repeated bigram without blocking: test is vacuous"
    # ignore the most frequent output token: it may repeat, no other bigram does
    counts = {}
    for h in free:
        for t in h[0]["tokens"][:-1].tolist():
            counts[t] = counts.get(t, 0) + 1
    top = max(counts, key=counts.get)
    task.cfg.ngram_block_ignore = d[top]
    gen = task.build_generator(models, gen_args(beam=2, no_repeat_ngram_size=2))
    assert gen.ngram_block_ignore == [top]
    for h in gen.generate(models, batch):
        toks = h[0]["tokens"][:-1].tolist()
        grams = [g for g in zip(toks, toks[1:]) if top not in g]
        assert len(grams) == len(set(grams)), toks


def test_unknown_ignore_token_is_a_clear_error(toy_data, tiny_ckpt):
    models, task = load(tiny_ckpt, toy_data)
    task.cfg.ngram_block_ignore = "no-such-token-xyz"
    with pytest.raises(ValueError, match="not in the dictionary"):
        task.build_generator(models, gen_args(beam=2, no_repeat_ngram_size=3))

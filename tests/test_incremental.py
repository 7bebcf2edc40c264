"""Oracle tests of the incremental decoder (docs/design.md §4).

For every fine-tuning method, a tiny random model in eval mode: the cached decoder's next-token
log-probabilities equal a full forward pass over the packed sequence built exactly as in training
(:func:`s2sft_fairseq.masks.pack`), over several steps with beam reorders and fairseq's batch
shrinking in between; the decoder's full-recompute path equals the same oracle.
"""
import pytest
import torch

from s2sft_fairseq.packing import METHOD_NAMES, pack
from s2sft_fairseq.modules.bert_stack import LMHead
from tiny import tiny_model

TOL = 1e-5


def make_source(d, lengths, width, left_pad, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), width), d.pad())
    for i, n in enumerate(lengths):
        row = torch.cat([torch.tensor([d.bos()]), torch.randint(5, len(d), (n - 2,), generator=g),
                         torch.tensor([d.eos()])])
        if left_pad:
            src[i, width - n:] = row
        else:
            src[i, :n] = row
    return src


def oracle_lprobs(model, rows_src, prev):
    """Next-token log-probabilities from the packed training computation."""
    dec = model.decoder
    tgt_in = dec.prefix_to_tgt_input(prev)
    c = dec.stack.cfg
    p = pack(rows_src, tgt_in, dec.method, dec.dictionary.pad(), dec.dictionary.mask(), dec.stack.uses_token_types,
             type_ids=(c.source_type_id, c.target_type_id))
    h, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
    last = h[:, p.predict_offset + tgt_in.size(1) - 1]
    return torch.log_softmax(model.stack.lm_head(last).float(), dim=-1)


def lprobs_of(logits):
    return torch.log_softmax(logits[:, -1].float(), dim=-1)


def run_decode(model, src, beam, steps, shrink_at=None, keep=None, seed=0):
    """Decode ``steps`` steps with random tokens, random beam reorders and one batch shrink;
    return the largest deviation of the cached and the full-recompute paths from the oracle.

    Runs on ``src``'s device (bench/gpu_check.py runs it on CUDA, in fp16 / bf16 too); the random
    draws are made on the CPU, so every device sees the same tokens and reorders."""
    g = torch.Generator().manual_seed(seed)
    d = model.decoder.dictionary
    device = src.device
    enc = model.encoder(src)
    order = torch.arange(src.size(0), device=device).repeat_interleave(beam)
    enc = model.encoder.reorder_encoder_out(enc, order)
    rows_src = src[order]
    prev = torch.full((rows_src.size(0), 1), d.eos(), device=device)
    state = {}
    worst = {"incremental": 0.0, "full": 0.0}
    for step in range(steps):
        inc, _ = model.decoder(prev, encoder_out=enc, incremental_state=state)
        full, _ = model.decoder(prev, encoder_out=enc)
        ref = oracle_lprobs(model, rows_src, prev)
        worst["incremental"] = max(worst["incremental"], (lprobs_of(inc) - ref).abs().max().item())
        worst["full"] = max(worst["full"], (lprobs_of(full) - ref).abs().max().item())
        n_sent = prev.size(0) // beam
        # a beam reorder: each new row continues a random row of the same sentence
        new_order = (torch.randint(0, beam, (n_sent, beam), generator=g)
                     + torch.arange(n_sent)[:, None] * beam)
        if step == shrink_at:  # fairseq drops finished sentences from the batch
            new_order = new_order[keep]
        new_order = new_order.reshape(-1).to(device)
        model.decoder.reorder_incremental_state_scripting(state, new_order)
        enc = model.encoder.reorder_encoder_out(enc, new_order)
        rows_src = rows_src[new_order]
        nxt = torch.randint(5, len(d), (new_order.numel(), 1), generator=g).to(device)
        prev = torch.cat([prev[new_order], nxt], dim=1)
    return worst, enc


@pytest.mark.parametrize("rel_pos", [0, 16], ids=["abs_pos", "rel_pos_bias"])
@pytest.mark.parametrize("left_pad", [False, True], ids=["right_pad", "left_pad"])
@pytest.mark.parametrize("types", [2, 1], ids=["two_types", "one_type"])
@pytest.mark.parametrize("method", METHOD_NAMES)
@torch.no_grad()
def test_incremental_equals_packed_forward_with_reorder_and_shrink(method, types, left_pad, rel_pos):
    model, d = tiny_model(method, seed=3, type_vocab_size=types, rel_pos_bins=rel_pos, max_rel_pos=2 * rel_pos)
    src = make_source(d, [9, 5, 7, 3], width=9, left_pad=left_pad)
    worst, enc = run_decode(model, src, beam=3, steps=7, shrink_at=3, keep=torch.tensor([0, 2, 3]))
    assert worst["incremental"] <= TOL, worst
    assert worst["full"] <= TOL, worst
    # after the shrink the per-sentence source keys were compacted, never expanded to the beam
    assert enc["src_keys"][0].size(0) == 3
    assert enc["src_index"][0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("rel_pos", [0, 16], ids=["abs_pos", "rel_pos_bias"])
@pytest.mark.parametrize("method", METHOD_NAMES)
@torch.no_grad()
def test_incremental_greedy_and_second_shrink(method, rel_pos):
    """beam 1 (one row per sentence) and two successive shrinks down to one sentence."""
    model, d = tiny_model(method, seed=5, rel_pos_bins=rel_pos, max_rel_pos=2 * rel_pos)
    src = make_source(d, [6, 8, 4], width=8, left_pad=False, seed=1)
    g = torch.Generator().manual_seed(2)
    enc = model.encoder(src)
    rows_src, prev, state = src, torch.full((3, 1), d.eos()), {}
    for step, keep in enumerate([None, [0, 2], None, [1], None]):
        inc, _ = model.decoder(prev, encoder_out=enc, incremental_state=state)
        assert (lprobs_of(inc) - oracle_lprobs(model, rows_src, prev)).abs().max() <= TOL
        order = torch.arange(prev.size(0)) if keep is None else torch.tensor(keep)
        model.decoder.reorder_incremental_state_scripting(state, order)
        enc = model.encoder.reorder_encoder_out(enc, order)
        rows_src = rows_src[order]
        prev = torch.cat([prev[order], torch.randint(5, len(d), (order.numel(), 1), generator=g)], dim=1)
    assert enc["src_keys"][0].size(0) == 1


@pytest.mark.parametrize("rel_pos", [0, 16], ids=["abs_pos", "rel_pos_bias"])
@pytest.mark.parametrize("method", METHOD_NAMES)
@torch.no_grad()
def test_incremental_irregular_row_order_and_late_start(method, rel_pos):
    """Rows that are not grouped by sentence (falls back to per-row source keys), and a cache
    started in the middle of a prefix (the uncached prefix is fed at once)."""
    model, d = tiny_model(method, seed=7, rel_pos_bins=rel_pos, max_rel_pos=2 * rel_pos)
    src = make_source(d, [7, 4], width=7, left_pad=True, seed=3)
    enc = model.encoder(src)
    order = torch.tensor([1, 0, 1, 0, 0])
    enc = model.encoder.reorder_encoder_out(enc, order)
    rows_src = src[order]
    g = torch.Generator().manual_seed(4)
    prev = torch.cat([torch.full((5, 1), d.eos()), torch.randint(5, len(d), (5, 3), generator=g)], dim=1)
    state = {}
    for _ in range(3):
        inc, _ = model.decoder(prev, encoder_out=enc, incremental_state=state)
        assert (lprobs_of(inc) - oracle_lprobs(model, rows_src, prev)).abs().max() <= TOL
        prev = torch.cat([prev, torch.randint(5, len(d), (5, 1), generator=g)], dim=1)


@pytest.mark.parametrize("rel_pos", [0, 16], ids=["abs_pos", "rel_pos_bias"])
@torch.no_grad()
def test_incremental_cache_grows_past_max_target_positions(rel_pos):
    model, d = tiny_model("pseudo_masked", seed=1, max_target_positions=4, rel_pos_bins=rel_pos, max_rel_pos=2 * rel_pos)
    model.decoder.max_target_positions = 2  # a tiny initial capacity forces a reallocation
    src = make_source(d, [5, 6], width=6, left_pad=False)
    enc = model.encoder(src)
    g = torch.Generator().manual_seed(0)
    prev, state = torch.full((2, 1), d.eos()), {}
    for _ in range(8):
        inc, _ = model.decoder(prev, encoder_out=enc, incremental_state=state)
        assert (lprobs_of(inc) - oracle_lprobs(model, src, prev)).abs().max() <= TOL
        prev = torch.cat([prev, torch.randint(5, len(d), (2, 1), generator=g)], dim=1)


@pytest.mark.parametrize("method", METHOD_NAMES)
@torch.no_grad()
def test_incremental_sequence_generator_equals_full_recompute(method):
    """fairseq's SequenceGenerator (beam search, finished sentences leave the batch) returns the
    same hypotheses with the cache and with a full recompute per step."""
    from fairseq.sequence_generator import SequenceGenerator
    model, d = tiny_model(method, seed=11)
    with torch.no_grad():  # peaky, input-dependent distributions with varied lengths
        g = torch.Generator().manual_seed(0)
        for p in model.stack.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3, generator=g)
        model.stack.lm_head.bias[d.eos()] = 4.0
    src = make_source(d, [9, 5, 7, 3, 8, 6], width=9, left_pad=False, seed=5)
    sample = {"net_input": {"src_tokens": src, "src_lengths": src.ne(d.pad()).sum(1)}}
    out = {}
    for incremental in (True, False):
        model.decoder.incremental = incremental
        gen = SequenceGenerator([model], d, beam_size=3, max_len_b=12)
        out[incremental] = gen.generate([model], sample)
    lengths = set()
    for a, b in zip(out[True], out[False]):
        assert [h["tokens"].tolist() for h in a] == [h["tokens"].tolist() for h in b]
        for ha, hb in zip(a, b):
            assert abs(ha["score"].item() - hb["score"].item()) < 1e-4
        lengths.add(len(a[0]["tokens"]))
    assert len(lengths) > 1, "all hypotheses have the same length: batch shrinking not exercised"


@pytest.mark.parametrize("chunk", [8192, 7])
@torch.no_grad()
def test_inference_logits_equal_lm_head(chunk, monkeypatch):
    """The decoder's no-grad vocabulary projection (chunked W @ x^T) equals the stack's LM head."""
    model, d = tiny_model("pseudo_masked", seed=2)
    monkeypatch.setattr(LMHead, "LOGITS_CHUNK", chunk)
    x = torch.randn(6, 1, model.stack.cfg.hidden_size)
    fast = model.stack.lm_head.decode_logits(x)
    assert fast.shape == (6, 1, len(d)) and fast.is_contiguous()
    assert (fast - model.stack.lm_head(x)).abs().max() <= 1e-5
    assert model.decoder.output_layer(x).equal(model.stack.lm_head(x))  # training/validation: the stack's head

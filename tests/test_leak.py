"""Perturbation tests: a position cannot see what the s2s-ft mask forbids (s2s-ft §2; docs/design.md §2).

transformers cannot be the oracle for these masks (its BertModel ignores a per-example 4-D mask
in 5.23), so each test changes one input and checks exactly which outputs move.
"""
import pytest
import torch

from s2sft_fairseq.packing import pack
from tiny import tiny_model

TOL = 1e-6
# every test runs with absolute positions only and with a (UniLMv2-style) relative position bias
REL_POS = pytest.mark.parametrize("rel_pos", [0, 16], ids=["abs_pos", "rel_pos_bias"])


def model_for(method, rel_pos):
    return tiny_model(method, rel_pos_bins=rel_pos, max_rel_pos=2 * rel_pos)


def changed(a, b):
    return (a - b).abs().amax(dim=-1) > TOL  # per slot


def full_output(model, src, tgt_input):
    d = model.decoder
    c = d.stack.cfg
    p = pack(src, tgt_input, d.method, d.dictionary.pad(), d.dictionary.mask(), d.stack.uses_token_types,
             type_ids=(c.source_type_id, c.target_type_id))
    h, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
    return h, p


def example(d):
    w = [d.index(f"w{i}") for i in range(10)]
    src = torch.tensor([[d.bos(), w[0], w[1], w[2], d.eos()]])
    tgt = torch.tensor([[w[3], w[4], w[5], w[6], d.eos()]])
    return src, tgt, w


@REL_POS
@pytest.mark.parametrize("method", ["masked", "pseudo_masked", "causal"])
def test_leak_changing_target_token_j(method, rel_pos):
    model, d = model_for(method, rel_pos)
    src, tgt, w = example(d)
    if method == "causal":
        tgt = torch.cat([torch.tensor([[d.bos()]]), tgt[:, :-1]], dim=1)  # [SOS] t1..t4
    n_s, n_t = src.size(1), tgt.size(1)
    with torch.no_grad():
        j = 2  # slot of t_3 (0-based) in the target block
        base, p = full_output(model, src, tgt)
        tgt2 = tgt.clone()
        tgt2[0, j] = w[9]
        pert, _ = full_output(model, src, tgt2)
    moved = changed(base, pert)[0]
    assert not moved[:n_s].any(), "a source position saw the target"
    if method == "pseudo_masked":
        pseudo = moved[n_s + n_t:]
        # [P]_i (predicting t_i) sees t_<i: [P]_1..[P]_{j+1} (0-based 0..j) must not move
        assert not pseudo[: j + 1].any()
        assert pseudo[j + 1:].all(), "later [P] slots should see t_j (test is sensitive)"
        assert not moved[n_s: n_s + j].any()  # earlier real target slots
    else:
        # masked: slot i sees t_<=i; causal: slot i (input t_i) predicts t_{i+1}
        assert not moved[n_s: n_s + j].any()
        assert moved[n_s + j:n_s + n_t].all()


@REL_POS
def test_leak_pseudo_mask_only_changes_its_own_output(rel_pos):
    model, d = model_for("pseudo_masked", rel_pos)
    src, tgt, w = example(d)
    with torch.no_grad():
        base, p = full_output(model, src, tgt)
        n_s, n_t = src.size(1), tgt.size(1)
        for j in range(n_t):
            tokens = p.tokens.clone()
            tokens[0, n_s + n_t + j] = w[8]  # replace [P]_j by another token
            h, _ = model.stack(tokens, p.positions, p.token_types, p.attn_mask)
            moved = changed(base, h)[0]
            assert moved[n_s + n_t + j]
            moved[n_s + n_t + j] = False
            assert not moved.any(), f"[P]_{j} was seen by another slot"


@REL_POS
@pytest.mark.parametrize("method", ["masked", "pseudo_masked", "causal"])
def test_leak_source_padding_amount_and_side_change_nothing(method, rel_pos):
    model, d = model_for(method, rel_pos)
    src, tgt, _ = example(d)
    pad = d.pad()
    with torch.no_grad():
        base = model(src, None, tgt)[0]
        for padded in (torch.cat([src, torch.full((1, 3), pad)], 1),      # right
                       torch.cat([torch.full((1, 4), pad), src], 1)):     # left
            out = model(padded, None, tgt)[0]
            assert (out - base).abs().max() < 1e-5
        # target padding: extra pad slots change nothing for the real slots
        tgt_p = torch.cat([tgt, torch.full((1, 2), pad)], 1)
        out = model(src, None, tgt_p)[0][:, : tgt.size(1)]
        assert (out - base).abs().max() < 1e-5

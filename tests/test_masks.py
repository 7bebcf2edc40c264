"""Packed layout per method equals matrices written out by hand (docs/design.md §2, s2s-ft Fig. 2)."""
import torch

from s2sft_fairseq.packing import pack, seq2seq_mask

PAD, MASK, CLS, SEP, A, X, Y, SOS = 0, 9, 1, 2, 5, 6, 7, 1


def M(rows):
    return torch.tensor([[c == "1" for c in r.replace(" ", "")] for r in rows], dtype=torch.bool)


def test_pseudo_masked_layout_by_hand():
    src = torch.tensor([[CLS, A, SEP]])
    tgt = torch.tensor([[X, Y, SEP]])
    p = pack(src, tgt, "pseudo_masked", PAD, MASK, use_token_types=True)
    assert p.tokens.tolist() == [[CLS, A, SEP, X, Y, SEP, MASK, MASK, MASK]]
    assert p.positions.tolist() == [[0, 1, 2, 3, 4, 5, 3, 4, 5]]
    assert p.token_types.tolist() == [[0, 0, 0, 1, 1, 1, 1, 1, 1]]
    assert p.predict_offset == 6
    expected = M([
        "111 000 000",
        "111 000 000",
        "111 000 000",
        "111 100 000",
        "111 110 000",
        "111 111 000",
        "111 000 100",
        "111 100 010",
        "111 110 001",
    ])
    assert torch.equal(p.attn_mask[0], expected)


def test_masked_layout_by_hand():
    src = torch.tensor([[CLS, A, SEP]])
    tgt = torch.tensor([[X, MASK, SEP]])  # t_2 corrupted
    p = pack(src, tgt, "masked", PAD, MASK, use_token_types=True)
    assert p.tokens.tolist() == [[CLS, A, SEP, X, MASK, SEP]]
    assert p.positions.tolist() == [[0, 1, 2, 3, 4, 5]]
    assert p.predict_offset == 3
    expected = M([
        "111 000",
        "111 000",
        "111 000",
        "111 100",
        "111 110",
        "111 111",
    ])
    assert torch.equal(p.attn_mask[0], expected)


def test_causal_layout_by_hand():
    src = torch.tensor([[CLS, A, SEP]])
    tgt = torch.tensor([[SOS, X, Y]])
    p = pack(src, tgt, "causal", PAD, MASK, use_token_types=False)
    assert p.tokens.tolist() == [[CLS, A, SEP, SOS, X, Y]]
    assert p.positions.tolist() == [[0, 1, 2, 3, 4, 5]]
    assert p.token_types is None  # single-type checkpoints (RoBERTa, XLM-R): no token types
    expected = M([
        "111 000",
        "111 000",
        "111 000",
        "111 100",
        "111 110",
        "111 111",
    ])
    assert torch.equal(p.attn_mask[0], expected)


def test_padding_never_shifts_positions_and_pads_only_see_themselves():
    # left-padded source of 2 real tokens, right-padded target of 2 real tokens
    src = torch.tensor([[PAD, CLS, SEP]])
    tgt = torch.tensor([[X, SEP, PAD]])
    p = pack(src, tgt, "pseudo_masked", PAD, MASK, use_token_types=True)
    # real tokens get positions 0,1 | 2,3 | 2,3 ; pads are never attended
    assert p.positions[0, 1:3].tolist() == [0, 1]
    assert p.positions[0, 3:5].tolist() == [2, 3]
    assert p.positions[0, 6:8].tolist() == [2, 3]
    pad_slots = [0, 5, 8]
    m = p.attn_mask[0]
    for s in pad_slots:
        assert m[s].tolist() == [i == s for i in range(9)]  # a pad row sees only itself
        real_rows = [r for r in range(9) if r not in pad_slots]
        assert not m[real_rows, s].any()  # no real row sees a pad


def test_every_row_allows_one_key():
    src_valid = torch.tensor([[True, True, False, False]])
    tgt_valid = torch.tensor([[True, False, False]])
    for method in ("causal", "masked", "pseudo_masked"):
        m = seq2seq_mask(src_valid, tgt_valid, method)
        assert m.any(dim=-1).all()

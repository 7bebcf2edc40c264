"""The training attention path: block-split attention and the written-out dropout attention.

Oracles: the block-split packed forward equals the plain full-mask forward (eval and train
without dropout); the dropout path equals softmax -> keep-mask -> rescale -> matmul written out
with the same draws; the keep mask drops the requested fraction; and, in training mode with
dropout (same seed per forward, so the same draws), changing a target token still moves only
the slots the s2s-ft mask lets see it.
"""
import pytest
import torch

from s2sft_fairseq.packing import get_method, pack
from s2sft_fairseq.modules.attention import BlockMask, attention, keep_mask
from tiny import tiny_model

METHODS = ["causal", "masked", "pseudo_masked"]


def batch(d, method):
    w = [d.index(f"w{i}") for i in range(10)]
    pad = d.pad()
    src = torch.tensor([[d.bos(), w[0], w[1], w[2], d.eos()], [d.bos(), w[3], d.eos(), pad, pad]])
    tgt = torch.tensor([[w[3], w[4], w[5], d.eos()], [w[6], d.eos(), pad, pad]])
    if method == "causal":
        tgt = torch.cat([torch.full((2, 1), d.bos()), tgt[:, :-1]], dim=1)
    return src, tgt


def plain_forward(model, src, tgt):
    d = model.decoder
    p = pack(src, tgt, d.method, d.dictionary.pad(), d.dictionary.mask(), d.stack.uses_token_types)
    h, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
    return h[:, p.predict_offset: p.predict_offset + tgt.size(1)]


@pytest.mark.parametrize("method", METHODS)
def test_block_ends_match_the_mask(method):
    """No row attends to a key at or beyond its block's end, and the blocks cover every row."""
    model, d = tiny_model(method)
    src, tgt = batch(d, method)
    p = pack(src, tgt, method, d.pad(), model.decoder.dictionary.mask(), True)
    assert p.block_ends == get_method(method).block_ends(src.size(1), tgt.size(1))
    assert p.block_ends[-1] == p.attn_mask.size(1)
    start = 0
    for end in p.block_ends:
        assert not p.attn_mask[:, start:end, end:].any()
        start = end


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("training", [False, True])
def test_block_split_forward_equals_full_mask_forward(method, training):
    model, d = tiny_model(method)
    for layer in model.stack.layers:
        layer.attention_dropout = 0.0
    model.train(training)
    for m in model.modules():  # hidden dropout off: the two forwards must be comparable
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    src, tgt = batch(d, method)
    with torch.no_grad():
        split = model.decoder.forward_packed(src, tgt)
        full = plain_forward(model, src, tgt)
    assert (split - full).abs().max() <= 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_packed_forward_gives_the_gradients_of_the_full_forward(method):
    """Block-split attention and a last layer computed only for the predicting rows
    (``output_from``) leave every parameter's gradient unchanged."""
    model, d = tiny_model(method)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for layer in model.stack.layers:
        layer.attention_dropout = 0.0
    model.train()
    src, tgt = batch(d, method)
    weights = torch.randn(2, tgt.size(1), model.stack.cfg.hidden_size, generator=torch.Generator().manual_seed(3))
    grads = []
    for forward in (model.decoder.forward_packed, lambda s, t: plain_forward(model, s, t)):
        model.zero_grad()
        (forward(src, tgt) * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    scale = max(g.abs().max().item() for g in grads[1].values())
    diff = max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0])
    assert diff <= 1e-6 * scale, (diff, scale)  # float rounding only


def test_stack_output_from_with_a_plain_mask_and_a_bad_boundary():
    model, d = tiny_model("pseudo_masked")
    src, tgt = batch(d, "pseudo_masked")
    p = pack(src, tgt, "pseudo_masked", d.pad(), model.decoder.dictionary.mask(), True)
    with torch.no_grad():
        full, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
        part, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask, output_from=7)
    assert part.shape[1] == full.shape[1] - 7 and (part - full[:, 7:]).abs().max() <= 1e-6
    with pytest.raises(ValueError, match="not a block boundary"):
        model.stack(p.tokens, p.positions, p.token_types, p.attn_mask, block_ends=p.block_ends, output_from=7)


def test_block_mask_rejects_ends_that_do_not_cover_the_rows():
    with pytest.raises(ValueError, match="do not cover"):
        BlockMask.split(torch.ones(1, 1, 6, 6, dtype=torch.bool), (2, 5))


@pytest.mark.parametrize("additive", [False, True])
def test_dropout_attention_is_softmax_keep_rescale_matmul(additive):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    allowed = torch.rand(2, 1, 5, 7) > 0.3
    allowed[..., 0] = True
    mask = torch.zeros(allowed.shape).masked_fill_(~allowed, float("-inf")) if additive else allowed
    p = 0.25
    torch.manual_seed(1)
    out = attention(q, k, v, mask, p)
    torch.manual_seed(1)
    keep = keep_mask((2, 3, 5, 7), p)
    probs = torch.softmax((q @ k.transpose(-1, -2)) / 8 ** 0.5 + torch.where(allowed, 0.0, float("-inf")), dim=-1)
    ref = (probs * keep / (1 - p)) @ v
    assert (out - ref).abs().max() <= 1e-5
    assert 0 < (~keep).sum() < keep.numel()
    # p = 0 is exactly SDPA without dropout
    assert torch.allclose(attention(q, k, v, mask, 0.0),
                          torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_drops_the_requested_fraction(p):
    torch.manual_seed(0)
    keep = keep_mask((1000, 1001), p)  # odd size: the last 32-bit draw is half used
    assert keep.shape == (1000, 1001) and keep.dtype == torch.bool
    dropped = 1 - keep.float().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / keep.numel()) ** 0.5 + 2 ** -16
    assert keep_mask((3, 4), 0.0).all()


@pytest.mark.parametrize("method", METHODS)
def test_training_with_dropout_does_not_leak_the_future(method):
    """Train mode, attention + hidden dropout on, same seed per forward: changing t_j moves only
    slots allowed to see it (the block-split dropout path respects the mask)."""
    model, d = tiny_model(method)
    for layer in model.stack.layers:
        layer.attention_dropout = 0.3
    model.train()
    src, tgt = batch(d, method)
    j = 1

    def run(t):
        torch.manual_seed(5)
        with torch.no_grad():
            return model.decoder.forward_packed(src, t)
    base = run(tgt)
    tgt2 = tgt.clone()
    tgt2[0, j] = d.index("w9")
    moved = ((run(tgt2) - base).abs().amax(dim=-1) > 1e-6)[0]
    n_t = int(tgt[0].ne(d.pad()).sum())
    # predicting slot i sees t_<i (pseudo) / t_<=i (masked, causal input slots)
    first_allowed = j + 1 if method == "pseudo_masked" else j
    assert not moved[:first_allowed].any(), "a slot saw a later target token"
    assert moved[first_allowed:n_t].all(), "the test is not sensitive"
    # the other example in the batch is untouched
    assert torch.equal(run(tgt2)[1], base[1])

"""The paper's own checkpoints: UniLMv2 relative position bias, UniLM segment ids, s2s-ft's files.

No UniLM weights can be had offline: every check here runs on small models built in the test in
the layouts of the public s2s-ft code (microsoft/unilm, ``s2s-ft/``), against oracles written
independently in the test (transformers' T5 bucketing; attention written out by hand).
"""
import math

import pytest
import torch
import torch.nn.functional as F

from s2sft_fairseq.modules.relative_position import relative_position_bucket
from s2sft_fairseq.packing import pack
from tiny import tiny_model


# --------------------------------------------------------------------------- bucketing
@pytest.mark.parametrize("bins,max_distance", [(32, 128), (64, 256), (16, 40), (8, 20)])
def test_relative_position_buckets_equal_t5s(bins, max_distance):
    """Oracle: transformers' T5 bucketing (bidirectional, the same bins / max distance)."""
    from transformers.models.t5.modeling_t5 import T5Attention
    rel = torch.arange(-3 * max_distance, 3 * max_distance + 1)[None, :]
    ours = relative_position_bucket(rel, bins, max_distance)
    t5 = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=bins, max_distance=max_distance)
    assert torch.equal(ours, t5)


def test_relative_position_buckets_are_asymmetric():
    """key after its query (key - query > 0) -> upper half; before it -> lower half: a sign flip fails."""
    bins, max_distance = 32, 128
    b = {d: int(relative_position_bucket(torch.tensor(d), bins, max_distance)) for d in (-100, -9, -3, -1, 0, 1, 3, 9, 100)}
    assert b[0] == 0
    assert all(b[d] >= bins // 2 for d in (1, 3, 9, 100)), b
    assert all(b[d] < bins // 2 for d in (-1, -3, -9, -100)), b
    assert b[1] == bins // 2 + 1 and b[-1] == 1 and b[3] != b[-3]
    # the values the public s2s-ft code's bucketing gives for 32 bins / 128 (worked out by hand)
    assert b[100] == 31 and b[-100] == 15 and b[9] == 24 and b[-9] == 8


# --------------------------------------------------------------------------- stack forward
def reference_forward(stack, tokens, positions, types, mask):
    """The stack's forward written out independently: embeddings, then per layer plain attention
    with ``scores = q k^T / sqrt(d) + bias[h, bucket(key pos - query pos)]`` (T5 bucketing),
    masked, softmax, output + residual + LayerNorm, feed-forward + residual + LayerNorm."""
    from transformers.models.t5.modeling_t5 import T5Attention
    c = stack.cfg
    e = stack.embeddings
    x = e.word(tokens) + e.position(positions) + (e.token_type(types) if types is not None else 0)
    x = F.layer_norm(x, (c.hidden_size,), e.layer_norm.weight, e.layer_norm.bias, c.layer_norm_eps)
    B, L, H = x.shape
    h, d = c.num_heads, H // c.num_heads
    rel = positions[:, None, :] - positions[:, :, None]  # key - query
    buckets = T5Attention._relative_position_bucket(rel, True, c.rel_pos_bins, c.max_rel_pos)
    bias = stack.rel_pos_bias.weight[:, buckets].permute(1, 0, 2, 3)  # (B, h, L, L)
    for layer in stack.layers:
        def heads(t):
            return t.view(B, L, h, d).transpose(1, 2)
        q, k, v = heads(layer.query(x)), heads(layer.key(x)), heads(layer.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + bias
        scores = scores.masked_fill(~mask[:, None], float("-inf"))
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, H)
        x = F.layer_norm(x + layer.attn_out(ctx), (H,), layer.attn_layer_norm.weight, layer.attn_layer_norm.bias,
                         c.layer_norm_eps)
        ff = layer.ffn_out(F.gelu(layer.ffn_in(x)))
        x = F.layer_norm(x + ff, (H,), layer.ffn_layer_norm.weight, layer.ffn_layer_norm.bias, c.layer_norm_eps)
    return x


def packed_example(model, d, method):
    w = [d.index(f"w{i}") for i in range(12)]
    pad = d.pad()
    src = torch.tensor([[pad, pad, d.bos(), w[0], w[1], w[2], d.eos()],
                        [d.bos(), w[3], w[4], w[5], w[6], w[7], d.eos()]])  # left padding
    tgt = torch.tensor([[w[8], w[9], d.eos(), pad], [w[10], w[11], w[1], d.eos()]])
    c = model.stack.cfg
    return pack(src, tgt, method, pad, d.mask(), True, type_ids=(c.source_type_id, c.target_type_id))


@pytest.mark.parametrize("method", ["causal", "masked", "pseudo_masked"])
@torch.no_grad()
def test_stack_with_relative_position_bias_equals_written_out_forward(method):
    model, d = tiny_model(method, rel_pos_bins=16, max_rel_pos=24, seed=4)
    p = packed_example(model, d, method)
    ours, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
    ref = reference_forward(model.stack, p.tokens, p.positions, p.token_types, p.attn_mask)
    real = p.attn_mask.diagonal(dim1=1, dim2=2) & p.tokens.ne(d.pad())
    assert (ours - ref)[real].abs().max() <= 1e-5
    # the bias matters (the test is sensitive to it)
    model.stack.rel_pos_bias.weight.zero_()
    off, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
    assert (off - ours)[real].abs().max() > 1e-2


@torch.no_grad()
def test_block_split_and_dropout_paths_with_relative_position_bias():
    """Training paths: block-split attention and the written-out (dropout) attention give the
    full-mask forward with the bias (dropout probability 0 but the training code path)."""
    model, d = tiny_model("pseudo_masked", rel_pos_bins=16, max_rel_pos=24, seed=6)
    p = packed_example(model, d, "pseudo_masked")
    full, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
    split, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask, block_ends=p.block_ends,
                           output_from=p.predict_offset)
    assert (split - full[:, p.predict_offset:]).abs().max() <= 1e-5
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for layer in model.stack.layers:
        layer.attention_dropout = 1e-9  # the written-out dropout attention, dropping (almost surely) nothing
    written, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask, block_ends=p.block_ends,
                             output_from=p.predict_offset)
    assert (written - full[:, p.predict_offset:]).abs().max() <= 1e-5


def test_relative_position_bias_gets_gradients():
    model, d = tiny_model("pseudo_masked", rel_pos_bins=16, max_rel_pos=24, seed=2)
    model.train()
    p = packed_example(model, d, "pseudo_masked")
    h, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask, block_ends=p.block_ends,
                       output_from=p.predict_offset)
    h.pow(2).sum().backward()
    assert model.stack.rel_pos_bias.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- segment ids
@pytest.mark.parametrize("method", ["causal", "pseudo_masked"])
@torch.no_grad()
def test_segment_ids_from_the_config(method):
    """A checkpoint whose config says source 4 / target 5 (UniLM v1) gets those embeddings, in
    training and in decoding: rows 4 and 5 of the type table are read, rows 0 and 1 never."""
    model, d = tiny_model(method, type_vocab_size=6, source_type_id=4, target_type_id=5, seed=8)
    p = packed_example(model, d, method)
    S = 7
    assert p.token_types[:, :S].eq(4).all()
    tgt_real = p.tokens[:, S:].ne(d.pad())
    assert p.token_types[:, S:][tgt_real].eq(5).all()
    # decoding: the encoder and the decode step use the same ids
    table = model.stack.embeddings.token_type.weight
    used = []
    hook = model.stack.embeddings.token_type.register_forward_hook(lambda m, inp, out: used.append(inp[0]))
    enc = model.encoder(p.tokens[:, :S])
    model.decoder(torch.full((2, 1), d.eos()), encoder_out=enc, incremental_state={})
    hook.remove()
    assert set(torch.cat([u.flatten() for u in used]).tolist()) == {4, 5}
    # with 0 / 1 the outputs differ (the test would fail with hard-coded 0 / 1)
    h, _ = model.stack(p.tokens, p.positions, p.token_types, p.attn_mask)
    h01, _ = model.stack(p.tokens, p.positions, torch.where(p.token_types.eq(4), 0, 1), p.attn_mask)
    assert (h - h01).abs().max() > 1e-3
    assert not torch.equal(table[4], table[0])

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


# --------------------------------------------------------------------------- corruption
# The public s2s-ft code, microsoft/unilm at 768a3c873f598bb9b4d4dfb9267b099e35f8fe56, file
# s2s-ft/s2s_ft/utils.py: get_masked_token (lines 82-89), mask_way v2 / pseudo-masked (159-173),
# v1 / masked (136-158), v0 / causal (115-135).
import numpy as np  # noqa: E402

from s2sft_fairseq.data.corruption import PaperCorruption, ReferenceCorruption  # noqa: E402
from s2sft_fairseq.packing import CAUSAL, MASKED, PSEUDO_MASKED, get_method  # noqa: E402
from tiny import tiny_dictionary  # noqa: E402


def target_of(d, n=8):
    return torch.tensor([d.index(f"w{i}") for i in range(n - 1)] + [d.eos()])


def masked_token_by_hand(token, rng, d):
    """get_masked_token (utils.py:82-89): u < keep_prob keeps, u < keep + random_prob draws
    randint(0, vocab_size - 1) over the whole vocabulary, otherwise [MASK]."""
    u = rng.random()
    if u < 0.1:
        return token
    if u < 0.2:
        return int(rng.integers(len(d)))
    return d.mask()


@pytest.mark.parametrize("seed", range(5))
def test_reference_pseudo_masked_rule_by_hand(seed):
    """v2 (utils.py:159-173): for each target token in order, its [P] gets get_masked_token; then a
    coin flip with target_mask_prob replaces the real token by the *same* token as its [P]."""
    d = tiny_dictionary()
    t = target_of(d)
    inp, labels, pseudo = PSEUDO_MASKED.target_input_and_labels(
        t, d.bos(), d.pad(), ReferenceCorruption(d, 0.5), np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    exp_inp, exp_pseudo = t.clone(), t.clone()
    for j in range(len(t)):
        exp_pseudo[j] = masked_token_by_hand(int(t[j]), rng, d)
        if rng.random() < 0.5:
            exp_inp[j] = exp_pseudo[j]
    assert torch.equal(pseudo, exp_pseudo) and torch.equal(inp, exp_inp)
    assert torch.equal(labels, t)  # every [P] predicts its token


@pytest.mark.parametrize("seed", range(5))
def test_reference_masked_rule_by_hand(seed):
    """v1 (utils.py:136-158): k = min(num_max_mask_token, int(p * n)), at least 1, positions
    shuffled and the first k taken, each replaced by get_masked_token; labels only there."""
    d = tiny_dictionary()
    t = target_of(d, 9)
    for cap in (0, 2):
        inp, labels, pseudo = MASKED.target_input_and_labels(
            t, d.bos(), d.pad(), ReferenceCorruption(d, 0.7, max_masked=cap), np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        k = int(0.7 * 9) if cap == 0 else min(cap, int(0.7 * 9))
        chosen = rng.permutation(9)[:max(k, 1)]
        exp = t.clone()
        for pos in chosen:
            exp[pos] = masked_token_by_hand(int(t[pos]), rng, d)
        assert pseudo is None and torch.equal(inp, exp)
        assert labels.ne(d.pad()).sum() == max(k, 1) == (6 if cap == 0 else 2)
        assert torch.equal(labels[torch.as_tensor(sorted(chosen))], t[torch.as_tensor(sorted(chosen))])


@pytest.mark.parametrize("seed", range(5))
def test_reference_causal_rule_by_hand(seed):
    """v0 (utils.py:115-135): the target block starts with [SEP] (pos_shift); every input after
    the first is, on a coin flip with target_mask_prob, replaced by get_masked_token; labels clean."""
    d = tiny_dictionary()
    t = target_of(d)
    method = get_method("causal", "reference")
    start = method.start_token(d)
    assert start == d.eos() and CAUSAL.start_token(d) == d.bos()
    inp, labels, pseudo = method.target_input_and_labels(t, start, d.pad(), ReferenceCorruption(d, 0.5),
                                                         np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    exp = torch.cat([torch.tensor([d.eos()]), t[:-1]])
    for pos in range(1, len(exp)):
        if rng.random() < 0.5:
            exp[pos] = masked_token_by_hand(int(exp[pos]), rng, d)
    assert pseudo is None and torch.equal(inp, exp) and torch.equal(labels, t)
    # the paper setting: clean inputs after [CLS]
    inp, labels, _ = CAUSAL.target_input_and_labels(t, d.bos(), d.pad(), PaperCorruption(d, 0.5),
                                                    np.random.default_rng(seed))
    assert torch.equal(inp, torch.cat([torch.tensor([d.bos()]), t[:-1]])) and torch.equal(labels, t)


@pytest.mark.parametrize("seed", range(3))
def test_paper_rule_by_hand(seed):
    """The paper's rule (our default): k = max(1, round(p n)) distinct slots, 80/10/10 with random
    tokens from the vocabulary without specials; [P] slots all [MASK] (no pseudo tokens)."""
    d = tiny_dictionary()
    t = target_of(d, 9)
    corruption = PaperCorruption(d, 0.5)
    inp, labels, pseudo = MASKED.target_input_and_labels(t, d.bos(), d.pad(), corruption, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(9, size=round(0.5 * 9), replace=False)
    exp = t.clone()
    for pos, r in zip(chosen, rng.random(len(chosen))):
        if r < 0.8:
            exp[pos] = d.mask()
        elif r < 0.9:
            exp[pos] = int(corruption.random_pool[rng.integers(len(corruption.random_pool))])
    assert pseudo is None and torch.equal(inp, exp)
    assert labels.ne(d.pad()).sum() == len(chosen)
    _, _, pseudo = PSEUDO_MASKED.target_input_and_labels(t, d.bos(), d.pad(), corruption, np.random.default_rng(seed))
    assert pseudo is None


def test_corruption_statistics_over_many_examples():
    """~10k seeded examples: rate ~ p, 80/10/10, shared [P] replacement (reference), whole-vocabulary
    random tokens (reference: specials do occur) vs no specials (paper)."""
    d = tiny_dictionary(200)
    t = torch.tensor([d.index(f"w{i}") for i in range(19)] + [d.eos()])
    specials = {d.bos(), d.eos(), d.pad(), d.unk(), d.mask()}
    p, n_examples = 0.6, 10_000
    ref, paper = ReferenceCorruption(d, p), PaperCorruption(d, p)
    counts = {"real": 0, "shared": 0, "mask": 0, "keep": 0, "random": 0, "special": 0, "paper_special": 0}
    for seed in range(n_examples):
        rng = np.random.default_rng(seed)
        inp, _, pseudo = PSEUDO_MASKED.target_input_and_labels(t, d.bos(), d.pad(), ref, rng)
        counts["real"] += int((inp.ne(t)).sum())
        counts["shared"] += int((inp.ne(t) & inp.ne(pseudo)).sum())  # a corrupted real token not equal to its [P]
        counts["mask"] += int(pseudo.eq(d.mask()).sum())
        counts["keep"] += int(pseudo.eq(t).sum())
        counts["random"] += int((pseudo.ne(t) & pseudo.ne(d.mask())).sum())
        counts["special"] += sum(int(x) in specials - {d.mask()} for x in pseudo[pseudo.ne(t)])
        inp_p, _, _ = MASKED.target_input_and_labels(t, d.bos(), d.pad(), paper, np.random.default_rng(seed))
        counts["paper_special"] += sum(int(x) in specials - {d.mask()} for x in inp_p[inp_p.ne(t)])
    slots = n_examples * len(t)
    assert counts["shared"] == 0, "a corrupted real token differs from its [P]"
    assert abs(counts["mask"] / slots - 0.8) < 0.01
    # keep = the 10 % kept plus random draws that hit the token itself (1/V of 10 %)
    assert abs(counts["keep"] / slots - 0.1) < 0.01 and abs(counts["random"] / slots - 0.1) < 0.01
    # a real token is replaced w.p. p, and then differs from itself unless the replacement kept it
    assert abs(counts["real"] / slots - p * 0.9) < 0.01
    assert counts["special"] > 0 and counts["paper_special"] == 0


@pytest.mark.parametrize("left_pad", [False, True], ids=["right_pad", "left_pad"])
@torch.no_grad()
def test_reference_causal_uses_pos_shift_in_training_and_decoding(left_pad):
    """--corruption reference, causal: the source loses its closing [SEP] and the target block starts
    with [SEP] (the reference's pos_shift); training, full recompute and the cache agree."""
    model, d = tiny_model("causal", corruption="reference", seed=12, rel_pos_bins=16, max_rel_pos=24)
    assert not model.decoder.method.source_closing_sep and model.encoder.method.start == "eos"
    w = [d.index(f"w{i}") for i in range(6)]
    body = torch.tensor([d.bos(), w[0], w[1], w[2], d.eos()])
    pad = torch.full((2,), d.pad())
    src = torch.cat([pad, body])[None] if left_pad else torch.cat([body, pad])[None]
    tgt_in = torch.tensor([[d.eos(), w[3], w[4]]])
    h = model.decoder.forward_packed(src, tgt_in)
    # the same computation written as a plain packed sequence: [CLS] s | [SEP] t, positions 0..
    tokens = torch.tensor([[d.bos(), w[0], w[1], w[2], d.eos(), w[3], w[4]]])
    positions = torch.arange(7)[None]
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    mask = torch.ones(7, 7, dtype=torch.bool).tril()
    mask[:4, :4] = True
    ref, _ = model.stack(tokens, positions, types, mask[None])
    assert (h - ref[:, 4:]).abs().max() <= 1e-5
    # decoding: cached == full recompute, first step fed [SEP] after the source without its [SEP]
    enc = model.encoder(src)
    prev, state = torch.full((1, 1), d.eos()), {}
    for nxt in (w[3], w[4], w[5]):
        inc, _ = model.decoder(prev, encoder_out=enc, incremental_state=state)
        full, _ = model.decoder(prev, encoder_out=enc)
        assert (inc - full).abs().max() <= 1e-4
        prev = torch.cat([prev, torch.tensor([[nxt]])], dim=1)
    first = model.decoder.forward_packed(src, torch.tensor([[d.eos()]]))
    assert (first[:, -1] - ref[:, 4]).abs().max() <= 1e-5


# --------------------------------------------------------------------------- importing the reference's files
# Checkpoints in the layouts of the public s2s-ft code (microsoft/unilm at
# 768a3c873f598bb9b4d4dfb9267b099e35f8fe56, s2s-ft/): built here from a perturbed transformers
# BertForMaskedLM, renamed / fused the way the reference stores them (s2s_ft/convert_state_dict.py
# unilm_to_hf_bert reads the fused form; modeling.py's BertForSequenceToSequence writes the
# fine-tuned form), plus a random relative position bias table and UniLM v1's segment ids 4 / 5 of 6.
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import checkpoint_factory as cf  # noqa: E402
from s2sft_fairseq.checkpoints import CheckpointError, load_into_stack, load_pretrained  # noqa: E402
from s2sft_fairseq.modules.bert_stack import BertStack  # noqa: E402

BINS, MAX_REL, SRC_TYPE, TGT_TYPE, TYPES = 32, 128, 4, 5, 6


def unilm_vocab():
    """The factory's BERT vocabulary with one token listed twice, as unilm1.2-base-uncased's vocab.txt
    lists "[unused99]" twice (microsoft/unilm issue 74): the embedding has a row per line."""
    vocab = cf.bert_vocab()
    return vocab[:12] + ["[unused0]"] + vocab[12:]


def unilm_bert(seed, scale=None):
    """A perturbed BertForMaskedLM with 6 token types and zero key biases (UniLMv2's fused layout has
    q / v biases only), and a random bias table (heads, bins). ``scale`` redraws every matrix larger
    (peaky, input-dependent predictions for the decoding test)."""
    from transformers import BertConfig, BertForMaskedLM
    cfg = BertConfig(**cf._common(vocab_size=len(unilm_vocab()), max_position_embeddings=cf.MAX_POS,
                                  type_vocab_size=TYPES, pad_token_id=0))
    torch.manual_seed(seed)
    model = cf.perturb(BertForMaskedLM(cfg), seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if scale:
            for name, p in model.named_parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=g) * scale)
        for layer in model.bert.encoder.layer:
            layer.attention.self.key.bias.zero_()
    return model, torch.randn(cf.HEADS, BINS, generator=g)


def reference_state_dict(model, table, fused, table_key, fine_tuned=False, pretraining_heads=False):
    """The model's tensors under the reference's names: fused ``qkv_linear`` + ``q_bias`` / ``v_bias``
    (raw UniLMv2) or split q / k / v (s2s-ft's fine-tuned files); a fine-tuned file also stores the
    tied word embedding as ``cls.predictions.decoder_weight`` and its label-smoothing buffer."""
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    del sd["cls.predictions.decoder.weight"], sd["cls.predictions.decoder.bias"]  # tied: the word embeddings / bias
    if fused:
        for i in range(cf.LAYERS):
            p = f"bert.encoder.layer.{i}.attention.self."
            sd[p + "qkv_linear.weight"] = torch.cat([sd.pop(p + n + ".weight") for n in ("query", "key", "value")])
            sd[p + "q_bias"], sd[p + "v_bias"] = sd.pop(p + "query.bias"), sd.pop(p + "value.bias")
            del sd[p + "key.bias"]
    sd[table_key] = table.clone()
    g = torch.Generator().manual_seed(1)
    if pretraining_heads:  # a raw pretrained file: pooler and next-sentence head
        sd["bert.pooler.dense.weight"] = torch.randn(cf.HIDDEN, cf.HIDDEN, generator=g)
        sd["bert.pooler.dense.bias"] = torch.randn(cf.HIDDEN, generator=g)
        sd["cls.seq_relationship.weight"] = torch.randn(2, cf.HIDDEN, generator=g)
        sd["cls.seq_relationship.bias"] = torch.randn(2, generator=g)
    if fine_tuned:
        vocab = sd["bert.embeddings.word_embeddings.weight"].size(0)
        sd["cls.predictions.decoder_weight"] = sd["bert.embeddings.word_embeddings.weight"].clone()
        one_hot = torch.full((1, vocab), 0.1 / (vocab - 2))
        one_hot[0, 0] = 0
        sd["crit_mask_lm_smoothed.one_hot"] = one_hot
    return sd


def reference_config(model, fine_tuned):
    """config.json as the reference writes it: a UnilmConfig (model_type "unilm") or the
    BertForSeq2SeqConfig dump of a fine-tuned checkpoint (model_type "bert" plus its keys)."""
    cfg = {k: v for k, v in model.config.to_dict().items() if k in (
        "attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob", "hidden_size", "initializer_range",
        "intermediate_size", "layer_norm_eps", "max_position_embeddings", "num_attention_heads",
        "num_hidden_layers", "type_vocab_size", "vocab_size")}
    cfg.update(rel_pos_bins=BINS, max_rel_pos=MAX_REL, source_type_id=SRC_TYPE, target_type_id=TGT_TYPE)
    if fine_tuned:
        cfg.update(model_type="bert", label_smoothing=0.1, fix_word_embedding=False,
                   vocab_size_or_config_json_file=cfg["vocab_size"])
    else:
        cfg.update(model_type="unilm")
    return cfg


def write_reference_files(folder, sd, config, form, lowercase=True):
    """``hf``: a Hugging Face directory (model.safetensors + tokenizer files); ``s2sft-dir``: s2s-ft's
    ckpt directory (pytorch_model.bin + config.json + vocab.txt); ``s2sft-named``: a named .bin beside
    config.json + vocab.txt. The s2s-ft forms record their casing in tokenizer_config.json (README)."""
    from safetensors.torch import save_file
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(unilm_vocab()) + "\n")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if form == "hf":
        from transformers import BertTokenizer
        BertTokenizer(os.path.join(folder, "vocab.txt"), do_lower_case=lowercase).save_pretrained(folder)
        save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
        return folder
    if lowercase is not None:
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"do_lower_case": lowercase}, f)
    path = os.path.join(folder, "pytorch_model.bin" if form == "s2sft-dir" else "cnndm.unilm-tiny.bin")
    torch.save(sd, path)
    return folder if form == "s2sft-dir" else path


def hf_as_stack(model, table):
    """The transformers model's own modules under the names reference_forward reads (so the oracle
    uses the original weights, not what the importer made of them)."""
    b, c = model.bert, model.config
    layers = [SimpleNamespace(query=l.attention.self.query, key=l.attention.self.key, value=l.attention.self.value,
                              attn_out=l.attention.output.dense, attn_layer_norm=l.attention.output.LayerNorm,
                              ffn_in=l.intermediate.dense, ffn_out=l.output.dense, ffn_layer_norm=l.output.LayerNorm)
              for l in b.encoder.layer]
    return SimpleNamespace(
        cfg=SimpleNamespace(hidden_size=c.hidden_size, num_heads=c.num_attention_heads, layer_norm_eps=c.layer_norm_eps,
                            rel_pos_bins=BINS, max_rel_pos=MAX_REL),
        embeddings=SimpleNamespace(word=b.embeddings.word_embeddings, position=b.embeddings.position_embeddings,
                                   token_type=b.embeddings.token_type_embeddings, layer_norm=b.embeddings.LayerNorm),
        layers=layers, rel_pos_bias=SimpleNamespace(weight=table))


FORMS = {  # form: (layout, bias table name, fine-tuned extras, pretraining heads)
    "hf-fused": ("hf", True, "bert.encoder.rel_pos_bias.weight", False, False),
    "s2sft-dir-fine-tuned": ("s2sft-dir", False, "bert.rel_pos_bias.weight", True, False),
    "s2sft-named-bin-raw-fused": ("s2sft-named", True, "bert.encoder.rel_pos_bias.weight", False, True),
}


def build_reference_checkpoint(tmp_path, name, seed=11):
    form, fused, table_key, fine_tuned, heads = FORMS[name]
    model, table = unilm_bert(seed)
    sd = reference_state_dict(model, table, fused, table_key, fine_tuned, heads)
    path = write_reference_files(str(tmp_path / name), sd, reference_config(model, fine_tuned), form)
    return path, model, table, sd


@pytest.mark.parametrize("name", list(FORMS))
@torch.no_grad()
def test_reference_layouts_import_and_match_a_written_out_forward(tmp_path, name):
    """Each layout imports (relative position bias, segment ids 4 / 5 of 6, fused or split q/k/v) and
    the stack's forward over a packed pseudo-masked example equals reference_forward run on the
    transformers model's own modules and the original bias table (hidden states), and the MLM
    logits equal the transformers head's (<= 1e-5): every imported tensor landed where it belongs."""
    path, model, table, _ = build_reference_checkpoint(tmp_path, name)
    ck = load_pretrained(path)
    assert ck.family.startswith("s2s-ft") == name.startswith("s2sft")
    c = ck.config
    assert (c.rel_pos_bins, c.max_rel_pos, c.type_vocab_size, c.source_type_id, c.target_type_id) == (
        BINS, MAX_REL, TYPES, SRC_TYPE, TGT_TYPE)
    stack = BertStack(c)
    load_into_stack(stack, ck)
    stack.eval()
    # packed_example's layout, its words w0..w11 being twelve syllables of the checkpoint's vocabulary
    d = ck.dictionary
    words = SimpleNamespace(index=lambda w: d.index(cf._SYLLABLES[3 * int(w[1:])]), pad=d.pad, bos=d.bos,
                            eos=d.eos, mask=d.mask)
    p = packed_example(SimpleNamespace(stack=stack), words, "pseudo_masked")
    assert set(p.token_types[:, :7].flatten().tolist()) == {SRC_TYPE} and TGT_TYPE in p.token_types[:, 7:]
    ours, _ = stack(p.tokens, p.positions, p.token_types, p.attn_mask)
    ref = reference_forward(hf_as_stack(model.eval(), table), p.tokens, p.positions, p.token_types, p.attn_mask)
    real = p.attn_mask.diagonal(dim1=1, dim2=2) & p.tokens.ne(0)
    hidden_diff = (ours - ref)[real].abs().max().item()
    logits_diff = (stack.lm_head(ours) - model.cls(ref))[real].abs().max().item()
    print(f"{name}: max abs diff hidden {hidden_diff:.1e}, logits {logits_diff:.1e}")
    assert hidden_diff <= 1e-5 and logits_diff <= 1e-5
    # the bias table and the segment ids matter here (the comparison is sensitive to both)
    wrong = reference_forward(hf_as_stack(model, table.roll(1, dims=1)), p.tokens, p.positions, p.token_types,
                              p.attn_mask)
    assert (wrong - ref)[real].abs().max() > 1e-2
    wrong = reference_forward(hf_as_stack(model, table), p.tokens, p.positions, p.token_types - 4, p.attn_mask)
    assert (wrong - ref)[real].abs().max() > 1e-2


def test_every_tensor_is_consumed_or_knowingly_skipped(tmp_path):
    """The importer's report covers every tensor of an s2s-ft file exactly once: the bias table is
    consumed into the stack's table (a silently ignored rel_pos_bias fails here), the fine-tuned
    extras are skipped by name with their reason, and the imported table is the file's."""
    path, _, table, sd = build_reference_checkpoint(tmp_path, "s2sft-dir-fine-tuned")
    ck = load_pretrained(path)
    assert set(ck.consumed) | set(ck.skipped) == set(sd) and not set(ck.consumed) & set(ck.skipped)
    assert ck.consumed["bert.rel_pos_bias.weight"] == ["rel_pos_bias.weight"]
    assert set(ck.skipped) == {"cls.predictions.decoder_weight", "crit_mask_lm_smoothed.one_hot"}
    assert "equal to 'bert.embeddings.word_embeddings.weight'" in ck.skipped["cls.predictions.decoder_weight"]
    assert "label-smoothing buffer" in ck.skipped["crit_mask_lm_smoothed.one_hot"]
    stack = BertStack(ck.config)
    load_into_stack(stack, ck)
    assert torch.equal(stack.rel_pos_bias.weight, table)
    # every stack parameter came from exactly the file's tensors it says
    assert sorted(n for names in ck.consumed.values() for n in names) == sorted(ck.state_dict)
    # the raw pretrained form: fused q/k/v consumed into three parameters each, pooler / NSP skipped
    path, _, _, sd = build_reference_checkpoint(tmp_path, "s2sft-named-bin-raw-fused")
    ck = load_pretrained(path)
    assert set(ck.consumed) | set(ck.skipped) == set(sd)
    assert ck.consumed["bert.encoder.layer.1.attention.self.qkv_linear.weight"] == [
        "layers.1.query.weight", "layers.1.key.weight", "layers.1.value.weight"]
    assert ck.consumed["bert.encoder.rel_pos_bias.weight"] == ["rel_pos_bias.weight"]
    assert {k for k, why in ck.skipped.items() if "pooler" in why or "next-sentence" in why} == {
        "bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.seq_relationship.weight", "cls.seq_relationship.bias"}


def _resave(path, edit):
    sd = torch.load(os.path.join(path, "pytorch_model.bin"), weights_only=True)
    edit(sd)
    torch.save(sd, os.path.join(path, "pytorch_model.bin"))


def test_s2sft_files_refuse_unknown_tensors_and_note_an_untied_decoder_weight(tmp_path):
    path, _, _, _ = build_reference_checkpoint(tmp_path, "s2sft-dir-fine-tuned")
    _resave(path, lambda sd: sd.__setitem__("bert.encoder.layer.0.attention.self.extra.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: tensor 'bert.encoder.layer.0.attention.self.extra"
                                              r".weight' \(2,\) is not used by the stack and is not one of the known "
                                              r"extras of this format; refusing to skip it silently"):
        load_pretrained(path)
    _resave(path, lambda sd: sd.pop("bert.encoder.layer.0.attention.self.extra.weight"))
    _resave(path, lambda sd: sd.__setitem__("bert.rel_pos_bias.bias", torch.zeros(cf.HEADS)))
    with pytest.raises(CheckpointError, match=r"'bert.rel_pos_bias.bias' is a relative position tensor in a layout"):
        load_pretrained(path)
    _resave(path, lambda sd: sd.pop("bert.rel_pos_bias.bias"))

    def untie(sd):
        sd["cls.predictions.decoder_weight"] = sd["cls.predictions.decoder_weight"] + 1
    _resave(path, untie)
    ck = load_pretrained(path)
    assert any("'cls.predictions.decoder_weight' is not tied to its word embeddings" in n for n in ck.notes)
    assert "NOT equal" in ck.skipped["cls.predictions.decoder_weight"]
    # the table dropped from the file while the config keeps rel_pos_bins: an error, not a silent skip
    _resave(path, lambda sd: sd.pop("bert.rel_pos_bias.weight"))
    with pytest.raises(CheckpointError, match=r"rel_pos_bins is 32 .* has no bias table"):
        load_pretrained(path)


def test_casing_of_a_bare_vocab_and_duplicate_vocabulary_lines(tmp_path):
    """A raw .bin + vocab.txt does not record casing: the directory must (tokenizer_config.json, or a
    do_lower_case key in config.json); the duplicate line keeps the rows aligned with the lines."""
    model, table = unilm_bert(3)
    sd = reference_state_dict(model, table, False, "bert.rel_pos_bias.weight", fine_tuned=True)
    config = reference_config(model, fine_tuned=True)
    path = write_reference_files(str(tmp_path / "bare"), sd, config, "s2sft-dir", lowercase=None)
    with pytest.raises(CheckpointError, match=r"bare: the tokenizer is a bare vocab.txt, which does not record whether "
                                              r"the checkpoint is cased; write \{\"do_lower_case\": true\}.*tokenizer_config.json"):
        load_pretrained(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(dict(config, do_lower_case=False), f)
    from s2sft_fairseq.checkpoints.tokenizers import load_checkpoint_tokenizer
    assert load_checkpoint_tokenizer(path).tokenize("Bako") == ["[UNK]"]  # cased: "Bako" is not in the vocabulary
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)  # tokenizer_config.json wins
    assert load_checkpoint_tokenizer(path).tokenize("Bako") == ["ba", "##ko"]
    ck = load_pretrained(path)
    vocab = unilm_vocab()
    d = ck.dictionary
    assert len(d) == len(vocab) == ck.config.vocab_size
    assert d[1] == "<s2sft-unused-1>" and d[12] == "[unused0]"  # BERT's tokenizer: the later line wins
    assert all(d[i] == vocab[i] for i in range(len(vocab)) if i != 1)
    assert any("'[unused0]' is listed 2 times (0-based lines 1, 12)" in n for n in ck.notes)


def test_inspect_shows_relative_bias_segments_and_skipped_tensors(tmp_path, capsys):
    from s2sft_fairseq.checkpoints import cli
    path, _, _, sd = build_reference_checkpoint(tmp_path, "s2sft-dir-fine-tuned")
    assert cli.cli_main(["--pretrained", path, "--inspect"]) == 0
    out = capsys.readouterr().out
    assert "family:       s2s-ft bert" in out
    assert "token types:  6 (segment ids: source 4, target 5)" in out
    assert "rel. bias:    32 buckets, max distance 128, one table shared by all layers ('bert.rel_pos_bias.weight'" in out
    assert f"tensors:      {len(sd) - 2} consumed, 2 skipped" in out
    assert "crit_mask_lm_smoothed.one_hot: the label-smoothing buffer" in out
    assert cli.cli_main(["--pretrained", path, "--list-tensors"]) == 0
    rows = {line.split()[0]: line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()}
    assert set(rows) == set(sd)  # every tensor of the file, once
    assert rows["bert.rel_pos_bias.weight"] == "-> rel_pos_bias.weight"
    assert rows["crit_mask_lm_smoothed.one_hot"].startswith("skipped: the label-smoothing buffer")


# --------------------------------------------------------------------------- decoding a fine-tuned s2s-ft model
def raw_greedy(sd, config, source, steps, vocab):
    """s2s-ft's greedy decoding (modeling_decoding.py, BertForSeq2SeqDecoder: beam 1) written out on
    the raw tensors of a fine-tuned file: ``[CLS] source [SEP]`` at positions 0.., segment
    ``source_type_id``; each step appends ``[MASK]`` at the next target position (segment
    ``target_type_id``), which sees the source, the tokens chosen so far and itself, and the
    argmax of its logits is the next token; stop at ``[SEP]`` (or after ``steps``). Attention: q k^T /
    sqrt(d), -10000 where hidden, plus the shared bias table at T5's bidirectional bucket of (key
    position - query position). Returns the tokens and, per step, the margin between the two best
    logits (how safely the argmax is determined)."""
    from transformers.models.t5.modeling_t5 import T5Attention
    ids = {tok: i for i, tok in enumerate(vocab)}  # a later duplicate line wins, as in BERT's load_vocab
    cls_, sep, mask = ids["[CLS]"], ids["[SEP]"], ids["[MASK]"]
    H, heads = config["hidden_size"], config["num_attention_heads"]
    d, eps = H // heads, config["layer_norm_eps"]

    def ln(x, name):
        return F.layer_norm(x, (H,), sd[name + ".weight"], sd[name + ".bias"], eps)

    def linear(x, name):
        return x @ sd[name + ".weight"].t() + sd[name + ".bias"]

    src = [cls_] + [ids[t] for t in source] + [sep]
    out, margins = [], []
    for _ in range(steps):
        tokens = torch.tensor(src + out + [mask])
        L, n_src = len(tokens), len(src)
        pos = torch.arange(L)
        types = torch.tensor([config["source_type_id"]] * n_src + [config["target_type_id"]] * (L - n_src))
        i, j = torch.arange(L)[:, None], torch.arange(L)[None, :]
        visible = torch.where(i < n_src, j < n_src, j <= i)
        buckets = T5Attention._relative_position_bucket(pos[None, :] - pos[:, None], True, config["rel_pos_bins"],
                                                        config["max_rel_pos"])
        bias = sd["bert.rel_pos_bias.weight"][:, buckets] + (~visible).float() * -10000.0  # (heads, L, L)
        x = (sd["bert.embeddings.word_embeddings.weight"][tokens] + sd["bert.embeddings.position_embeddings.weight"][pos]
             + sd["bert.embeddings.token_type_embeddings.weight"][types])
        x = ln(x, "bert.embeddings.LayerNorm")
        for layer in range(config["num_hidden_layers"]):
            p = f"bert.encoder.layer.{layer}."
            q, k, v = (linear(x, p + f"attention.self.{n}").view(L, heads, d).transpose(0, 1)
                       for n in ("query", "key", "value"))
            probs = (q @ k.transpose(-1, -2) / math.sqrt(d) + bias).softmax(-1)
            ctx = (probs @ v).transpose(0, 1).reshape(L, H)
            x = ln(x + linear(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            x = ln(x + linear(F.gelu(linear(x, p + "intermediate.dense")), p + "output.dense"), p + "output.LayerNorm")
        h = ln(F.gelu(linear(x[-1], "cls.predictions.transform.dense")), "cls.predictions.transform.LayerNorm")
        logits = h @ sd["bert.embeddings.word_embeddings.weight"].t() + sd["cls.predictions.bias"]
        top = logits.topk(2)
        margins.append((top.values[0] - top.values[1]).item())
        nxt = int(top.indices[0])
        if nxt == sep:
            break
        out.append(nxt)
    return [vocab[t] for t in out], margins


def fine_tuned_for_decoding(folder):
    """A fine-tuned s2s-ft checkpoint (fine-tuned layout and extras, bias table, segments 4 / 5 of 6)
    whose larger random weights give input-dependent predictions that end at varied lengths:
    [PAD] and [CLS] are never predicted (as by a trained model; fairseq would never print a [CLS],
    its dictionary's bos) and [SEP] is made likelier."""
    model, table = unilm_bert(22, scale=0.5)
    sd = reference_state_dict(model, table, False, "bert.rel_pos_bias.weight", fine_tuned=True)
    vocab = unilm_vocab()
    sd["cls.predictions.bias"][vocab.index("[PAD]")] = -30.0
    sd["cls.predictions.bias"][vocab.index("[CLS]")] = -30.0
    sd["cls.predictions.bias"][vocab.index("[SEP]")] += 2.0
    config = reference_config(model, fine_tuned=True)
    write_reference_files(folder, sd, config, "s2sft-dir")
    return sd, config, vocab


@pytest.mark.slow
def test_fine_tuned_s2sft_checkpoint_decodes_through_fairseq_generate_like_the_reference(tmp_path):
    """s2sft-prepare (s2s-ft's JSON) -> s2sft-import --to-fairseq-checkpoint (zero updates) ->
    fairseq-generate --beam 1 gives, for every sentence of a batched test set, the tokens of
    raw_greedy on the file's own tensors (pseudo-masked, and masked: both decode with a [MASK]
    slot); with the margin of every argmax far above float error, so equal tokens mean equal logits'
    winners, not luck."""
    from transformers import BertTokenizer

    from conftest import USER_DIR, run_cli
    ckpt = str(tmp_path / "ckpt")
    sd, config, vocab = fine_tuned_for_decoding(ckpt)
    rng = __import__("random").Random(0)
    rows = []
    for _ in range(8):
        words = ["".join(rng.choice(cf._SYLLABLES) for _ in range(rng.randint(1, 2))) for _ in range(rng.randint(2, 6))]
        rows.append({"src": " ".join(words).capitalize(), "tgt": " ".join(reversed(words))})
    with open(tmp_path / "test.json", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    data = str(tmp_path / "data")
    run_cli("s2sft-prepare", "--pretrained", ckpt, "--jsonl", "--testpref", tmp_path / "test.json", "--destdir", data)
    model_pt = str(tmp_path / "model.pt")
    proc = run_cli("s2sft-import", "--pretrained", ckpt, "--to-fairseq-checkpoint", model_pt, "--ft-method",
                   "pseudo_masked", "--max-source-positions", 24, "--max-target-positions", 16)
    assert "wrote" in proc.stdout and "position table extended" not in proc.stderr
    tok = BertTokenizer(os.path.join(ckpt, "vocab.txt"), do_lower_case=True)  # the reference's tokenizer
    steps = 10
    expected = []
    for r in rows:
        out, margins = raw_greedy(sd, config, tok.tokenize(r["src"]), steps, vocab)
        assert min(margins) > 1e-3, "an argmax too close to call: choose another seed"
        expected.append(out)
    lengths = [len(e) for e in expected]
    assert len(set(lengths)) > 2 and min(lengths) < steps and max(lengths) == steps, lengths  # natural ends and the cap
    for method in ("pseudo_masked", "masked"):
        gen = run_cli("fairseq-generate", data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--path", model_pt,
                      "--gen-subset", "test", "--beam", 1, "--max-len-a", 0, "--max-len-b", steps, "--batch-size", 3,
                      "--max-source-positions", 24, "--max-target-positions", 16, "--cpu", "--min-len", 0,
                      "--model-overrides", f"{{'ft_method': '{method}'}}").stdout
        hyps = {int(line.split("\t")[0][2:]): line.split("\t")[2].split() for line in gen.splitlines()
                if line.startswith("H-")}
        detok = {int(line.split("\t")[0][2:]): line.split("\t")[2] for line in gen.splitlines() if line.startswith("D-")}
        n_scores = {int(line.split("\t")[0][2:]): len(line.split("\t")[1].split()) for line in gen.splitlines()
                    if line.startswith("P-")}
        assert sorted(hyps) == list(range(len(rows)))
        for i, want in enumerate(expected):
            assert hyps[i] == want, f"{method}, sentence {i}: fairseq {hyps[i]} != reference greedy {want}"
            assert n_scores[i] == len(want) + 1  # nothing hidden from the printed line: the tokens and [SEP]
            assert detok[i] == tok.convert_tokens_to_string(want)

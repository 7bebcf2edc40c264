"""bert2bert / BERTShare (Rothe et al., docs/design.md §5): warm start, sharing, cache, CLI end to end."""
import os
import re
import types

import pytest
import torch

import s2sft_fairseq  # noqa: F401 - registers the components
from fairseq.data import Dictionary
from s2sft_fairseq.checkpoints import load_pretrained
from s2sft_fairseq.models.bert2bert import (
    Bert2BertConfig, Bert2BertModel, CrossAttention,
)
from s2sft_fairseq.modules.bert_stack import Layer, StackConfig

from conftest import USER_DIR, run_cli

SELF_ATTN = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attn_out": "attention.output.dense", "attn_layer_norm": "attention.output.LayerNorm"}
FFN = {"ffn_in": "intermediate.dense", "ffn_out": "output.dense", "ffn_layer_norm": "output.LayerNorm"}


def _task(dictionary, method="causal"):
    return types.SimpleNamespace(cfg=types.SimpleNamespace(ft_method=method),
                                 source_dictionary=dictionary, target_dictionary=dictionary)


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- tiny random model
def _tiny_dictionary():
    d = Dictionary(bos="[CLS]", pad="[PAD]", eos="[SEP]", unk="[UNK]")
    for i in range(40):
        d.add_symbol(f"w{i}")
    return d


def _tiny_model(share, method="causal", seed=0, **overrides):
    d = _tiny_dictionary()
    cfg = Bert2BertConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=64,
                          max_source_positions=24, max_target_positions=16, share_encoder_decoder=share,
                          **overrides)
    torch.manual_seed(seed)
    return Bert2BertModel.build_model(cfg, _task(d, method)).eval(), d


def test_bert2bert_layer_halves_reproduce_layer_forward():
    """Layer.attend + Layer.feed_forward (the decoder's pieces) are exactly Layer.forward."""
    torch.manual_seed(0)
    cfg = StackConfig(vocab_size=10, hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64)
    layer = Layer(cfg).eval()
    x = torch.randn(2, 5, 32)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()[None, None].expand(2, 1, 5, 5)
    ref, kv = layer(x, mask)
    k, v = layer.project_kv(x)
    assert torch.equal(k, kv[0]) and torch.equal(v, kv[1])
    assert torch.allclose(layer.feed_forward(layer.attend(x, k, v, mask)), ref, atol=1e-6)
    cross = CrossAttention(cfg)
    assert set(n for n, _ in cross.named_parameters()) == {
        f"{m}.{p}" for m in SELF_ATTN for p in ("weight", "bias")}


@pytest.mark.parametrize("share", [False, True])
def test_bert2bert_incremental_equals_full_forward_with_reorders(share):
    model, d = _tiny_model(share)
    B, steps = 4, 7
    g = torch.Generator().manual_seed(1)
    src = torch.randint(5, len(d), (B, 9), generator=g)
    src[0, :3] = d.pad()          # left padding
    src[2, -2:] = d.pad()         # right padding
    prev = torch.randint(5, len(d), (B, steps), generator=g)
    prev[:, 0] = d.eos()          # fairseq's start symbol
    with torch.no_grad():
        enc = model.encoder(src)
        state = {}
        for s in range(steps):
            if s == 2:            # beam reorder: duplicate and permute hypotheses
                order = torch.tensor([3, 0, 0, 1])
            elif s == 5:          # a sentence finished: the batch shrinks
                order = torch.tensor([2, 0, 3])
            else:
                order = None
            if order is not None:
                model.decoder.reorder_incremental_state_scripting(state, order)
                enc = model.encoder.reorder_encoder_out(enc, order)
                src, prev = src[order], prev[order]
            inc, _ = model.decoder(prev[:, : s + 1], encoder_out=enc, incremental_state=state)
            full, _ = model.decoder(prev[:, : s + 1], encoder_out=model.encoder(src))
            assert inc.shape == (src.size(0), 1, len(d))
            assert (inc[:, -1] - full[:, -1]).abs().max().item() <= 1e-5, f"step {s}"
            # what fairseq's generator does with the step's output
            lp = model.get_normalized_probs((inc, None), log_probs=True)
            assert torch.allclose(lp.exp().sum(-1), torch.ones(src.size(0), 1), atol=1e-5)


def test_bert2bert_training_forward_matches_decoding_and_is_causal():
    model, d = _tiny_model(share=False)
    g = torch.Generator().manual_seed(2)
    src = torch.randint(5, len(d), (3, 8), generator=g)
    tgt = torch.randint(5, len(d), (3, 6), generator=g)
    tgt_input = torch.cat([torch.full((3, 1), d.bos()), tgt[:, :-1]], dim=1)
    prev = torch.cat([torch.full((3, 1), d.eos()), tgt[:, :-1]], dim=1)
    with torch.no_grad():
        h, _ = model(src, tgt_input=tgt_input, features_only=True)
        h_prev, _ = model(src, prev_output_tokens=prev, features_only=True)
        assert torch.equal(h, h_prev)  # fairseq's eos start symbol is read as [SOS]
        # changing a later target token never changes an earlier slot
        changed = tgt_input.clone()
        changed[:, 4] = 7
        h2, _ = model(src, tgt_input=changed, features_only=True)
        assert torch.allclose(h[:, :4], h2[:, :4], atol=1e-6) and not torch.allclose(h[:, 4:], h2[:, 4:])
        # right padding of the target does not move anything
        padded = torch.cat([tgt_input, torch.full((3, 3), d.pad())], dim=1)
        h3, _ = model(src, tgt_input=padded, features_only=True)
        assert torch.allclose(h3[:, :6], h, atol=1e-6)
        # left- vs right-padded sources give the same result (positions count real tokens)
        short = src[:1, :5]
        left = torch.cat([torch.full((1, 3), d.pad()), short], dim=1)
        right = torch.cat([short, torch.full((1, 3), d.pad())], dim=1)
        a, _ = model(left, tgt_input=tgt_input[:1], features_only=True)
        b, _ = model(right, tgt_input=tgt_input[:1], features_only=True)
        c, _ = model(short, tgt_input=tgt_input[:1], features_only=True)
        assert torch.allclose(a, c, atol=1e-5) and torch.allclose(b, c, atol=1e-5)
        # the source matters (cross-attention is wired in)
        other, _ = model(src.flip(0), tgt_input=tgt_input, features_only=True)
        assert not torch.allclose(other, h)


def test_bert2bert_parameter_layouts():
    """Rothe BERT2BERT (one word-embedding matrix) vs two full towers vs BERTShare."""
    default, _ = _tiny_model(share=False)
    separate, _ = _tiny_model(share=False, separate_word_embeddings=True)
    shared, _ = _tiny_model(share=True)
    word = default.decoder.stack.embeddings.word.weight.numel()
    assert _n_params(separate) - _n_params(default) == word
    assert separate.encoder.stack.embeddings.word is not separate.decoder.stack.embeddings.word
    stack = sum(p.numel() for p in shared.stack.parameters())
    head = sum(p.numel() for n, p in shared.stack.named_parameters() if n.startswith("lm_head."))
    assert _n_params(separate) - _n_params(shared) == stack - head  # a second tower, minus its MLM head
    for m in (default, separate, shared):
        sd = m.state_dict()
        assert len({t.data_ptr() for t in sd.values()}) == len(sd)


def test_bert2bert_refuses_non_causal_training():
    model, d = _tiny_model(share=False, method="pseudo_masked")  # random init: built (generation)
    src = torch.randint(5, len(d), (2, 6))
    with pytest.raises(ValueError, match="--ft-method causal"):
        model(src, tgt_input=src)


# --------------------------------------------------------------------------- real MiniLM
@pytest.fixture(scope="module")
def minilm_models(minilm):
    from safetensors.torch import load_file
    ck = load_pretrained(minilm)
    raw = load_file(os.path.join(minilm, "model.safetensors"))
    task = _task(ck.dictionary)
    models = {}
    for share in (False, True):
        cfg = Bert2BertConfig(pretrained_checkpoint=minilm, share_encoder_decoder=share,
                              max_source_positions=128, max_target_positions=64)
        models[share] = Bert2BertModel.build_model(cfg, task)
    return models, raw


def _check_layer_from_checkpoint(layer, raw, i):
    for ours, theirs in {**SELF_ATTN, **FFN}.items():
        mod = getattr(layer, ours)
        assert torch.equal(mod.weight, raw[f"encoder.layer.{i}.{theirs}.weight"]), (i, ours)
        assert torch.equal(mod.bias, raw[f"encoder.layer.{i}.{theirs}.bias"]), (i, ours)


def _check_cross_attention_is_new(model):
    self_weights = [getattr(layer, n).weight for layer in model.decoder.stack.layers
                    for n in ("query", "key", "value", "attn_out")]
    for cross in model.decoder.cross_attention:
        for name in ("query", "key", "value", "attn_out"):
            w = getattr(cross, name).weight
            assert 0.018 < w.std().item() < 0.022 and abs(w.mean().item()) < 2e-3, name
            assert torch.count_nonzero(getattr(cross, name).bias) == 0
            assert not any(torch.equal(w, s) for s in self_weights)
        assert torch.all(cross.attn_layer_norm.weight == 1) and torch.all(cross.attn_layer_norm.bias == 0)


def test_bert2bert_minilm_warm_start(minilm_models):
    models, raw = minilm_models
    model = models[False]
    enc, dec = model.encoder.stack, model.decoder.stack
    assert enc is not dec and len(enc.layers) == len(dec.layers) == 6
    for i in range(6):
        _check_layer_from_checkpoint(enc.layers[i], raw, i)
        _check_layer_from_checkpoint(dec.layers[i], raw, i)
        assert enc.layers[i].query.weight.data_ptr() != dec.layers[i].query.weight.data_ptr()
    for stack in (enc, dec):
        assert torch.equal(stack.embeddings.word.weight, raw["embeddings.word_embeddings.weight"])
        assert torch.equal(stack.embeddings.position.weight, raw["embeddings.position_embeddings.weight"])
    _check_cross_attention_is_new(model)
    # Rothe's BERT2BERT: one word-embedding matrix, registered once; the output layer is tied to it
    assert enc.embeddings.word is dec.embeddings.word
    assert dec.lm_head.word_embeddings is dec.embeddings.word and enc.lm_head is None
    keys = model.state_dict().keys()
    assert sum(k.endswith("embeddings.word.weight") for k in keys) == 1
    assert not any(k.startswith("encoder.stack.lm_head") for k in keys)
    assert len({t.data_ptr() for t in model.state_dict().values()}) == len(keys)


def test_bert2bert_minilm_bertshare(minilm_models):
    models, raw = minilm_models
    shared, unshared = models[True], models[False]
    assert shared.encoder.stack is shared.decoder.stack is shared.stack
    for i in range(6):
        _check_layer_from_checkpoint(shared.stack.layers[i], raw, i)
    _check_cross_attention_is_new(shared)
    enc_params = dict(shared.encoder.stack.named_parameters())
    for name, p in shared.decoder.stack.named_parameters():
        assert p is enc_params[name] and p.data_ptr() == enc_params[name].data_ptr()
    # every shared tensor appears once in the state dict: the stack, plus the cross-attention
    sd = shared.state_dict()
    assert all(k.startswith(("stack.", "decoder.cross_attention.")) for k in sd), \
        [k for k in sd if not k.startswith(("stack.", "decoder.cross_attention."))][:5]
    assert len({t.data_ptr() for t in sd.values()}) == len(sd)
    n_cross = sum(p.numel() for p in shared.decoder.cross_attention.parameters())
    n_stack = sum(p.numel() for p in shared.stack.parameters())
    assert _n_params(shared) == n_stack + n_cross
    assert _n_params(shared) < _n_params(unshared)


# --------------------------------------------------------------------------- CLI end to end
@pytest.mark.parametrize("share", [False, True], ids=["bert2bert", "bertshare"])
def test_bert2bert_train_and_generate_cli(share, toy_data, minilm, tmp_path):
    save = tmp_path / "ckpt"
    run_cli("fairseq-train", toy_data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm",
            "--ft-method", "causal", "--arch", "bert2bert", "--pretrained-checkpoint", minilm,
            *(["--share-encoder-decoder"] if share else []),
            "--criterion", "s2s_label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "1e-4",
            "--max-tokens", "160", "--max-update", "2", "--max-source-positions", "64",
            "--max-target-positions", "32", "--save-dir", save, "--no-epoch-checkpoints",
            "--no-save-optimizer-state", "--disable-validation", "--num-workers", "0", "--seed", "1",
            "--log-format", "simple", "--log-interval", "1")
    ckpt = save / "checkpoint_last.pt"
    assert ckpt.exists()
    proc = run_cli("fairseq-generate", toy_data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm",
                   "--path", ckpt, "--gen-subset", "test", "--beam", "2", "--max-len-b", "12",
                   "--batch-size", "20", "--num-workers", "0", "--max-source-positions", "64",
                   "--max-target-positions", "32")
    hyps = [line for line in proc.stdout.splitlines() if line.startswith("H-")]
    ids = sorted(int(re.match(r"H-(\d+)", h).group(1)) for h in hyps)
    assert ids == list(range(20)), proc.stdout[-2000:]

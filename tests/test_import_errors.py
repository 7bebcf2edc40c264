"""What the importer does with checkpoints that do not simply fit (README, 'Supported
checkpoints').

Missing MLM head and short position tables are handled and logged; everything else that does
not fit is a :class:`CheckpointError` (or a ``VocabularyMismatchError`` for the data's
dictionary) saying what is wrong and where.
"""
import json
import logging
import os
import types

import pytest
import torch
from safetensors.torch import load_file, save_file

import checkpoint_factory as cf
from s2sft_fairseq.checkpoints import CheckpointError, load_into_stack, load_pretrained
from s2sft_fairseq.checkpoints.vocab import CheckpointDictionary, VocabularyMismatchError
from s2sft_fairseq.modules.bert_stack import BertStack


def build_fairseq_model(path, dictionary, max_source=24, max_target=16):
    """The model the way fairseq-train builds it (fake task holding the data's dictionary)."""
    import fairseq.models
    from omegaconf import OmegaConf
    root = OmegaConf.create({
        "task": {"_name": "pseudo_masked_lm", "max_source_positions": max_source,
                 "max_target_positions": max_target},
        "model": {"_name": "unilm_seq2seq", "pretrained_checkpoint": path},
    })
    task = types.SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary,
                                 cfg=types.SimpleNamespace(ft_method="pseudo_masked"))
    return fairseq.models.build_model(root.model, task)


def _messages(caplog):
    return [r.getMessage() for r in caplog.records]


# --------------------------------------------------------------------------- handled + logged
def test_no_mlm_head_is_logged_head_fresh_output_tied(caplog):
    path, hf = cf.get("electra-discriminator")
    ck = load_pretrained(path)
    assert not ck.has_lm_head
    with caplog.at_level(logging.INFO, logger="s2sft_fairseq"):
        model = build_fairseq_model(path, ck.dictionary)
    assert any("no MLM head" in m and "tied to the word embeddings" in m for m in _messages(caplog))
    head, stack = model.stack.lm_head, model.stack
    assert head.word_embeddings is stack.embeddings.word
    # the transform is freshly initialised (BERT init), not taken from the discriminator head
    assert torch.equal(head.layer_norm.weight, torch.ones_like(head.layer_norm.weight))
    assert torch.equal(head.layer_norm.bias, torch.zeros_like(head.layer_norm.bias))
    assert torch.equal(head.dense.bias, torch.zeros_like(head.dense.bias)) and head.dense.weight.std() > 0.01
    assert torch.equal(head.bias, torch.zeros_like(head.bias))
    disc = hf.discriminator_predictions.dense.weight
    assert head.dense.weight.shape != disc.shape or not torch.equal(head.dense.weight, disc)
    # the output layer is the (imported) word embedding matrix itself
    assert torch.equal(stack.embeddings.word.weight, hf.electra.embeddings.word_embeddings.weight)


def test_short_position_table_is_extended_by_copying_rows(caplog):
    path, hf = cf.get("bert")
    ck = load_pretrained(path)
    old = ck.config.max_positions
    assert old == cf.MAX_POS == 64
    with caplog.at_level(logging.INFO, logger="s2sft_fairseq"):
        model = build_fairseq_model(path, ck.dictionary, max_source=80, max_target=20)
    table = model.stack.embeddings.position.weight.detach()
    assert table.shape == (100, cf.HIDDEN)
    pretrained = hf.bert.embeddings.position_embeddings.weight.detach()
    assert torch.equal(table[:old], pretrained)
    assert torch.equal(table[old:], table[: 100 - old])  # rows [old:] repeat the first rows
    assert any("position table extended from 64 to 100 rows" in m for m in _messages(caplog))


def test_short_position_table_roberta_offset(tmp_path):
    """RoBERTa's table loses its two padding rows before it is extended."""
    path, hf = cf.get("roberta")
    ck = load_pretrained(path)
    assert ck.config.max_positions == cf.MAX_POS
    ck.config.max_positions = 70
    stack = BertStack(ck.config)
    log = load_into_stack(stack, ck)
    table = stack.embeddings.position.weight.detach()
    assert torch.equal(table[:64], hf.roberta.embeddings.position_embeddings.weight[2:].detach())
    assert torch.equal(table[64:], table[:6])
    assert "position table extended from 64 to 70 rows" in " ".join(log)


# --------------------------------------------------------------------------- errors
def test_tensor_that_does_not_fit_the_config(tmp_path):
    path = cf.copy_of("bert", str(tmp_path / "bert"))
    st = os.path.join(path, "model.safetensors")
    sd = load_file(st)
    name = "bert.encoder.layer.1.intermediate.dense.weight"
    assert tuple(sd[name].shape) == (cf.FFN, cf.HIDDEN)
    sd[name] = torch.zeros(cf.FFN, 48)  # config says hidden 32
    save_file(sd, st)
    with pytest.raises(CheckpointError) as e:
        load_pretrained(path)
    msg = str(e.value)
    assert name in msg and "(64, 48)" in msg and "(64, 32)" in msg and "model.safetensors" in msg


def test_stack_that_does_not_fit_the_checkpoint():
    """load_into_stack names the checkpoint's tensor when the stack was built differently."""
    path, _ = cf.get("unilmv2")
    ck = load_pretrained(path)
    cfg = type(ck.config)(**{**vars(ck.config), "intermediate_size": 80})
    with pytest.raises(CheckpointError) as e:
        load_into_stack(BertStack(cfg), ck)
    msg = str(e.value)
    assert "tensor 'bert.encoder.layer.0.intermediate.dense." in msg and "(stack: 'layers.0.ffn_in." in msg
    assert ("(64,)" in msg and "(80,)" in msg) or ("(64, 32)" in msg and "(80, 32)" in msg)


def test_data_dictionary_that_does_not_match(caplog):
    path, _ = cf.get("bert")
    ck = load_pretrained(path)
    symbols = list(ck.dictionary.symbols)
    symbols[20] = "zzzz"
    with pytest.raises(VocabularyMismatchError, match=r"index 20: data has 'zzzz', checkpoint has "
                                                      + repr(ck.dictionary[20])):
        build_fairseq_model(path, CheckpointDictionary(symbols))


def test_path_that_does_not_exist(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint s2sft-fairseq reads .*; or a Hugging Face directory"):
        load_pretrained(str(tmp_path / "empty"))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_safetensors(tmp_path, damage):
    path = cf.copy_of("roberta", str(tmp_path / "roberta"))
    st = os.path.join(path, "model.safetensors")
    data = open(st, "rb").read()
    with open(st, "wb") as f:
        f.write(data[: len(data) // 2] if damage == "truncated" else b"\x00not a safetensors file" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read the safetensors file"):
        load_pretrained(path)


def test_missing_weights_and_missing_tensor(tmp_path):
    path = cf.copy_of("bert", str(tmp_path / "bert"))
    st = os.path.join(path, "model.safetensors")
    sd = load_file(st)
    del sd["bert.encoder.layer.1.output.LayerNorm.weight"]
    save_file(sd, st)
    with pytest.raises(CheckpointError, match=r"lacks 1 tensors the stack needs, first 'layers.1.ffn_layer_norm.weight'"):
        load_pretrained(path)
    os.remove(st)
    with pytest.raises(CheckpointError, match="no model.safetensors or pytorch_model.bin"):
        load_pretrained(path)


def test_unsupported_model_type(tmp_path):
    path = cf.copy_of("bert", str(tmp_path / "gpt2"))
    cfg_path = os.path.join(path, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["model_type"] = "gpt2"
    json.dump(cfg, open(cfg_path, "w"))
    with pytest.raises(CheckpointError, match=r"model_type 'gpt2' is not a supported bidirectional encoder"):
        load_pretrained(path)


# --------------------------------------------------------------------------- relative position bias
@pytest.mark.parametrize("key", ["bert.encoder.rel_pos_bias.weight", "bert.rel_pos_bias.weight"])
def test_relative_position_bias_is_accepted(tmp_path, key):
    """UniLMv2's table under the raw fused checkpoints' name and under s2s-ft's lands in the stack's
    shared table; the config's bins / distance are the stack's (the forward is checked against a
    written-out one in tests/test_unilm_checkpoints.py)."""
    path, hf = cf.make_unilmv2(str(tmp_path / "unilm-rel"), rel_pos=True, rel_pos_key=key)
    ck = load_pretrained(path)
    assert (ck.config.rel_pos_bins, ck.config.max_rel_pos) == (32, 128)
    assert ck.consumed[key] == ["rel_pos_bias.weight"]
    stack = BertStack(ck.config)
    load_into_stack(stack, ck)
    assert torch.equal(stack.rel_pos_bias.weight, hf.rel_pos_table)


def _edit(tmp_path, name, config=None, tensors=None, rel_pos=True):
    """A UniLMv2 checkpoint with its config updated by ``config`` and ``tensors(sd)`` applied."""
    path, _ = cf.make_unilmv2(str(tmp_path / name), rel_pos=rel_pos)
    if config:
        cfg_path = os.path.join(path, "config.json")
        cfg = json.load(open(cfg_path))
        cfg.update(config)
        cfg = {k: v for k, v in cfg.items() if v is not None}
        json.dump(cfg, open(cfg_path, "w"))
    if tensors:
        st = os.path.join(path, "model.safetensors")
        sd = load_file(st)
        tensors(sd)
        save_file(sd, st)
    return path


def test_relative_position_config_without_table(tmp_path):
    path = _edit(tmp_path, "cfg-only", config={"rel_pos_bins": 32, "max_rel_pos": 128}, rel_pos=False)
    with pytest.raises(CheckpointError, match=r"config.json: rel_pos_bins is 32 \(relative position bias\), but "
                                              r".*model.safetensors has no bias table .*shape \(4, 32\)"):
        load_pretrained(path)


def test_relative_position_table_without_config(tmp_path):
    path = _edit(tmp_path, "table-only", config={"rel_pos_bins": None, "max_rel_pos": None})
    with pytest.raises(CheckpointError, match=r"'bert.encoder.rel_pos_bias.weight' .*is a relative position bias "
                                              r"table \(4, 32\), but .*config.json sets no rel_pos_bins / max_rel_pos; "
                                              r"add both .*rel_pos_bins 32 by the table's shape"):
        load_pretrained(path)


def test_relative_position_table_of_the_wrong_shape(tmp_path):
    def transpose(sd):
        sd["bert.encoder.rel_pos_bias.weight"] = sd["bert.encoder.rel_pos_bias.weight"].t().contiguous()
    path = _edit(tmp_path, "transposed", tensors=transpose)
    with pytest.raises(CheckpointError, match=r"has shape \(32, 4\), but .*config.json implies "
                                              r"\(num_attention_heads, rel_pos_bins\) = \(4, 32\) \(it looks transposed\)"):
        load_pretrained(path)
    path = _edit(tmp_path, "16-bins", config={"rel_pos_bins": 16, "max_rel_pos": 64})
    with pytest.raises(CheckpointError, match=r"has shape \(4, 32\), but .* = \(4, 16\); the checkpoint does not fit"):
        load_pretrained(path)
    path = _edit(tmp_path, "bad-distance", config={"max_rel_pos": 8})
    with pytest.raises(CheckpointError, match=r"rel_pos_bins 32 / max_rel_pos 8: .*max_rel_pos > rel_pos_bins / 4"):
        load_pretrained(path)


def test_both_table_names_and_other_relative_layouts_are_refused(tmp_path):
    def both(sd):
        sd["bert.rel_pos_bias.weight"] = sd["bert.encoder.rel_pos_bias.weight"].clone()
    with pytest.raises(CheckpointError, match="'bert.encoder.rel_pos_bias.weight' and 'bert.rel_pos_bias.weight' "
                                              "both map to 'rel_pos_bias.weight'|'bert.rel_pos_bias.weight' and "
                                              "'bert.encoder.rel_pos_bias.weight' both map"):
        load_pretrained(_edit(tmp_path, "both", tensors=both))

    def per_layer(sd):
        sd["bert.encoder.layer.0.attention.self.distance_embedding.weight"] = torch.zeros(127, 8)
    with pytest.raises(CheckpointError, match=r"'bert.encoder.layer.0.attention.self.distance_embedding.weight' is a "
                                              r"relative position tensor in a layout s2sft-fairseq does not know"):
        load_pretrained(_edit(tmp_path, "per-layer", tensors=per_layer))
    with pytest.raises(CheckpointError, match=r"position_embedding_type 'relative_key' is not supported"):
        load_pretrained(_edit(tmp_path, "relative-key", config={"position_embedding_type": "relative_key"}))


def test_segment_ids_must_exist(tmp_path):
    path = _edit(tmp_path, "types", config={"type_vocab_size": 2, "source_type_id": 4, "target_type_id": 5})
    with pytest.raises(CheckpointError, match=r"source_type_id 4 / target_type_id 5 do not exist with type_vocab_size 2"):
        load_pretrained(path)


def test_untied_output_layer_is_noted(tmp_path):
    path = cf.copy_of("bert", str(tmp_path / "bert-untied"))
    st = os.path.join(path, "model.safetensors")
    sd = load_file(st)
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"] + 1.0
    save_file(sd, st)
    notes = " ".join(load_pretrained(path).notes)
    assert "'cls.predictions.decoder.weight' is not tied to its word embeddings" in notes


def test_fairseq_dictionary_longer_than_the_embedding(tmp_path):
    path = cf.copy_of("fairseq-roberta", str(tmp_path / "fs"))
    with open(os.path.join(path, "dict.txt"), "a") as f:
        f.write("9998 1\n9999 1\n")
    with pytest.raises(CheckpointError, match=r"dict.txt: the dictionary \(\+<mask>\) has 127 entries .*"
                                              r"first token without a row: '9999' at index 125"):
        load_pretrained(path)


def test_fairseq_prenorm_is_refused(tmp_path):
    path = cf.copy_of("fairseq-roberta", str(tmp_path / "fs"))
    pt = os.path.join(path, "model.pt")
    state = torch.load(pt, weights_only=True)
    state["args"].encoder_normalize_before = True
    torch.save(state, pt)
    with pytest.raises(CheckpointError, match="pre-LayerNorm"):
        load_pretrained(path)

"""Tiny random models and dictionaries for fast oracle tests."""
from types import SimpleNamespace

import torch

from s2sft_fairseq.checkpoints.vocab import CheckpointDictionary
from s2sft_fairseq.models.unilm_seq2seq import UnilmSeq2SeqConfig, UnilmSeq2SeqModel


def tiny_dictionary(n_words=40):
    return CheckpointDictionary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(n_words)])


def tiny_model(method, dictionary=None, seed=0, type_vocab_size=2, hidden=32, layers=2, heads=4,
               max_source_positions=32, max_target_positions=16, rel_pos_bins=0, max_rel_pos=0,
               source_type_id=0, target_type_id=1, corruption="paper"):
    dictionary = dictionary or tiny_dictionary()
    torch.manual_seed(seed)
    cfg = UnilmSeq2SeqConfig()
    cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size = hidden, layers, heads, 2 * hidden
    cfg.type_vocab_size = type_vocab_size
    cfg.rel_pos_bins, cfg.max_rel_pos = rel_pos_bins, max_rel_pos
    cfg.source_type_id, cfg.target_type_id = source_type_id, target_type_id
    cfg.max_source_positions, cfg.max_target_positions = max_source_positions, max_target_positions
    cfg.max_positions = max_source_positions + max_target_positions
    task = SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary,
                           cfg=SimpleNamespace(ft_method=method, corruption=corruption))
    model = UnilmSeq2SeqModel.build_model(cfg, task)
    if rel_pos_bins:  # a bias table far from its N(0, 0.02) init, so that it matters
        with torch.no_grad():
            model.stack.rel_pos_bias.weight.normal_(0, 1.0)
    model.eval()
    return model, dictionary

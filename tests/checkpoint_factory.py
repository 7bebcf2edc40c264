"""Tiny pretrained checkpoints of every supported family, built locally (no downloads).

Each ``make_*`` function builds a random model from a config with ``transformers`` (or
``fairseq`` for the fairseq RoBERTa format), perturbs *every* parameter (so a LayerNorm or bias
mapped to the wrong place cannot hide behind its ones/zeros initialisation), saves it to disk
in the layout users have, and returns ``(directory, model)``: the in-memory model is the oracle
of the parity tests.

Sizes: hidden 32, 2 layers, 4 heads, feed-forward 64, vocabularies of ~150-300 tokens.
"""
import json
import os
import random
from typing import List, Tuple

import torch

HIDDEN, LAYERS, HEADS, FFN = 32, 2, 4, 64
MAX_POS = 64

_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


def corpus(n: int = 300, seed: int = 0, n_words: int = 300) -> List[str]:
    """Lines of pseudo-words made of syllables (enough variety to train tiny subword vocabularies)."""
    rng = random.Random(seed)
    words = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(n_words)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(n)]


SENTENCES = [
    "the dog sat on the mat",
    "bako ridu",
    "sela mo kavi tunedo ra pefi sazu nobi lare",
]


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter distinctive random values (LayerNorms not all ones, biases not zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "LayerNorm" in name or "layer_norm" in name or "layernorm" in name:
                p.copy_(1.0 + 0.1 * noise if name.endswith("weight") else 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.05 * noise)
    return model.eval()


def _save_hf(model, tokenizer, folder: str, safetensors: bool = True) -> str:
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    if not safetensors:  # the legacy pickle layout: pytorch_model.bin instead of model.safetensors
        st = os.path.join(folder, "model.safetensors")
        if os.path.exists(st):
            os.remove(st)
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()},
                   os.path.join(folder, "pytorch_model.bin"))
    tokenizer.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- tokenizers
def bert_vocab() -> List[str]:
    specials = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = ["the", "dog", "sat", "on", "mat", ".", ","]
    return specials + words + letters + ["##" + c for c in letters] + _SYLLABLES + ["##" + s for s in _SYLLABLES]


def bert_tokenizer(folder: str):
    from transformers import BertTokenizer
    os.makedirs(folder, exist_ok=True)
    vocab_file = os.path.join(folder, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(bert_vocab()) + "\n")
    return BertTokenizer(vocab=vocab_file)


def roberta_tokenizer(folder: str):
    """A byte-level BPE trained on the toy corpus (RoBERTa's <s> <pad> </s> <unk> <mask> first)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizer
    os.makedirs(folder, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus(300, seed=1) + SENTENCES, vocab_size=300, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe.save_model(folder)
    return RobertaTokenizer(vocab=os.path.join(folder, "vocab.json"), merges=os.path.join(folder, "merges.txt"))


def xlmr_tokenizer(folder: str):
    """A sentencepiece unigram model trained here, laid out as XLM-R does (fairseq's offset of 1).

    transformers 5 ignores ``vocab_file=`` and needs protobuf to convert a ``.model`` file, so the
    vocabulary is built as its XLM-R converter does: ``<s> <pad> </s> <unk>``, the sentencepiece
    pieces from id 3 on with their scores, then ``<mask>``.
    """
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer
    os.makedirs(folder, exist_ok=True)
    text = os.path.join(folder, "spm_corpus.txt")
    with open(text, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus(400, seed=2) + SENTENCES) + "\n")
    prefix = os.path.join(folder, "sentencepiece.bpe")
    spm.SentencePieceTrainer.train(input=text, model_prefix=prefix, vocab_size=200, model_type="unigram",
                                   character_coverage=1.0, minloglevel=2, num_threads=1)
    os.remove(text)
    os.remove(prefix + ".vocab")
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(sp.id_to_piece(i), sp.get_score(i)) for i in range(3, sp.get_piece_size())]
    vocab += [("<mask>", 0.0)]
    return XLMRobertaTokenizer(vocab=vocab)


# --------------------------------------------------------------------------- families
def _common(**kw):
    base = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                intermediate_size=FFN, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    base.update(kw)
    return base


def make_bert(folder: str, safetensors: bool = True, seed: int = 0, **config) -> Tuple[str, torch.nn.Module]:
    from transformers import BertConfig, BertForMaskedLM
    tok = bert_tokenizer(folder)
    cfg = BertConfig(**_common(vocab_size=len(tok.get_vocab()), max_position_embeddings=MAX_POS,
                               type_vocab_size=2, pad_token_id=0, **config))
    torch.manual_seed(seed)
    model = perturb(BertForMaskedLM(cfg), seed)
    return _save_hf(model, tok, folder, safetensors), model


def make_roberta(folder: str, seed: int = 1, **config):
    from transformers import RobertaConfig, RobertaForMaskedLM
    tok = roberta_tokenizer(folder)
    cfg = RobertaConfig(**_common(vocab_size=len(tok.get_vocab()), max_position_embeddings=MAX_POS + 2,
                                  type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                  layer_norm_eps=1e-5, **config))
    torch.manual_seed(seed)
    model = perturb(RobertaForMaskedLM(cfg), seed)
    return _save_hf(model, tok, folder), model


def make_xlmr(folder: str, seed: int = 2):
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM
    tok = xlmr_tokenizer(folder)
    cfg = XLMRobertaConfig(**_common(vocab_size=len(tok.get_vocab()), max_position_embeddings=MAX_POS + 2,
                                     type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                     layer_norm_eps=1e-5))
    torch.manual_seed(seed)
    model = perturb(XLMRobertaForMaskedLM(cfg), seed)
    return _save_hf(model, tok, folder), model


def _electra_config(tok, **kw):
    from transformers import ElectraConfig
    return ElectraConfig(**_common(vocab_size=len(tok.get_vocab()), embedding_size=16,
                                   max_position_embeddings=MAX_POS, type_vocab_size=2, pad_token_id=0, **kw))


def make_electra_discriminator(folder: str, seed: int = 3):
    """ELECTRA discriminator: 16-wide embeddings projected to the 32-wide stack, no MLM head."""
    from transformers import ElectraForPreTraining
    tok = bert_tokenizer(folder)
    torch.manual_seed(seed)
    model = perturb(ElectraForPreTraining(_electra_config(tok)), seed)
    return _save_hf(model, tok, folder), model


def make_electra_generator(folder: str, safetensors: bool = False, seed: int = 4, **config):
    """ELECTRA generator (MLM head), saved as ``pytorch_model.bin`` by default (the pickle path)."""
    from transformers import ElectraForMaskedLM
    tok = bert_tokenizer(folder)
    torch.manual_seed(seed)
    model = perturb(ElectraForMaskedLM(_electra_config(tok, **config)), seed)
    return _save_hf(model, tok, folder, safetensors), model


def make_unilmv2(folder: str, rel_pos: bool = False, seed: int = 5,
                 rel_pos_key: str = "bert.encoder.rel_pos_bias.weight"):
    """A UniLMv2-style checkpoint: BERT with q/k/v fused into ``qkv_linear`` and q/v biases only.

    Built from a BertForMaskedLM whose key biases are zeroed (UniLMv2 has none), so the BERT
    model stays the oracle (without ``rel_pos``). ``rel_pos=True`` adds a relative position bias
    table ``(HEADS, 32)`` under ``rel_pos_key`` (the raw UniLMv2 name by default) and
    ``rel_pos_bins`` 32 / ``max_rel_pos`` 128 to the config; the table is returned as
    ``model.rel_pos_table``.
    """
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForMaskedLM
    tok = bert_tokenizer(folder)
    cfg = BertConfig(**_common(vocab_size=len(tok.get_vocab()), max_position_embeddings=MAX_POS,
                               type_vocab_size=2, pad_token_id=0))
    torch.manual_seed(seed)
    model = perturb(BertForMaskedLM(cfg), seed)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.self.key.bias.zero_()
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}.attention.self."
        sd[p + "qkv_linear.weight"] = torch.cat([sd.pop(p + n + ".weight") for n in ("query", "key", "value")], 0)
        sd[p + "q_bias"] = sd.pop(p + "query.bias")
        sd[p + "v_bias"] = sd.pop(p + "value.bias")
        sd.pop(p + "key.bias")
    if rel_pos:
        model.rel_pos_table = sd[rel_pos_key] = torch.randn(HEADS, 32, generator=torch.Generator().manual_seed(seed))
    sd.pop("cls.predictions.decoder.weight", None)  # tied to the word embeddings
    sd.pop("cls.predictions.decoder.bias", None)
    os.makedirs(folder, exist_ok=True)
    save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    config = cfg.to_dict()
    config.update({"model_type": "unilm", "architectures": ["UnilmForSeq2Seq"]})
    if rel_pos:
        config.update({"rel_pos_bins": 32, "max_rel_pos": 128})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    tok.save_pretrained(folder)
    return folder, model


def fairseq_dictionary(symbols: List[str]):
    from fairseq.data import Dictionary
    d = Dictionary()
    for i, s in enumerate(symbols):
        d.add_symbol(s, n=1000 - i)
    return d


def make_fairseq_roberta(folder: str, seed: int = 6, legacy_args: bool = True):
    """A tiny fairseq ``RobertaModel`` built with fairseq itself, saved as ``model.pt`` + ``dict.txt``.

    ``legacy_args=True`` stores the hyper-parameters as an ``argparse.Namespace`` under ``args``
    (the released RoBERTa / XLM-R files); otherwise under ``cfg['model']`` as a plain dict.
    Returns ``(folder, model, dictionary)``; the dictionary has ``<mask>`` appended, as the
    masked-LM task does.
    """
    import argparse
    import types
    from fairseq.models.roberta import RobertaModel
    os.makedirs(folder, exist_ok=True)
    # GPT-2 BPE ids as strings, the way the released dict.txt files look
    d = fairseq_dictionary([str(i) for i in range(100, 220)])
    d.save(os.path.join(folder, "dict.txt"))
    d.add_symbol("<mask>")
    args = argparse.Namespace(
        arch="roberta", encoder_layers=LAYERS, encoder_embed_dim=HIDDEN, encoder_ffn_embed_dim=FFN,
        encoder_attention_heads=HEADS, max_positions=MAX_POS, dropout=0.1, attention_dropout=0.1,
        activation_fn="gelu", encoder_normalize_before=False)
    task = types.SimpleNamespace(source_dictionary=d, target_dictionary=d, max_positions=lambda: MAX_POS)
    torch.manual_seed(seed)
    model = RobertaModel.build_model(args, task)
    perturb(model, seed)
    state = {"model": model.state_dict(), "extra_state": {"train_iterator": {"epoch": 1}},
             "optimizer_history": [{"criterion_name": "MaskedLmLoss", "num_updates": 0}]}
    if legacy_args:
        state["args"] = args
    else:
        state["args"] = None
        state["cfg"] = {"model": dict(vars(args)), "task": {"_name": "masked_lm"}}
    torch.save(state, os.path.join(folder, "model.pt"))
    return folder, model, d


# --------------------------------------------------------------------------- shared cache
_BUILDERS = {
    "bert": make_bert,
    "roberta": make_roberta,
    "xlm-roberta": make_xlmr,
    "electra-discriminator": make_electra_discriminator,
    "electra-generator": make_electra_generator,  # saved as pytorch_model.bin
    "unilmv2": make_unilmv2,
    "fairseq-roberta": lambda folder: make_fairseq_roberta(folder, legacy_args=True),
    "fairseq-roberta-cfg": lambda folder: make_fairseq_roberta(folder, legacy_args=False),
}
HF_FAMILIES = ["bert", "roberta", "xlm-roberta", "electra-discriminator", "electra-generator", "unilmv2"]
FAIRSEQ_FAMILIES = ["fairseq-roberta", "fairseq-roberta-cfg"]
_CACHE = {}
_ROOT = []


def _root() -> str:
    if not _ROOT:
        import atexit
        import shutil
        import tempfile
        _ROOT.append(tempfile.mkdtemp(prefix="s2sft-ckpt-"))
        atexit.register(shutil.rmtree, _ROOT[0], ignore_errors=True)
    return _ROOT[0]


def get(family: str):
    """Build a family's checkpoint once per test session; returns the ``make_*`` result.

    Tests must not modify the returned directory (copy it first: :func:`copy_of`).
    """
    if family not in _CACHE:
        _CACHE[family] = _BUILDERS[family](os.path.join(_root(), family))
    return _CACHE[family]


def copy_of(family: str, dest: str) -> str:
    """A private copy of a family's checkpoint directory, to corrupt or edit."""
    import shutil
    shutil.copytree(get(family)[0], dest)
    return dest

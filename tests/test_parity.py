"""Imported checkpoints compute what their reference implementation computes (README,
'Supported checkpoints').

Every family is built as a tiny random model (``checkpoint_factory``), saved to disk the way
users have it, imported the way a user's run imports it (``load_pretrained`` -> ``BertStack`` ->
``load_into_stack``) and compared with ``transformers`` (or fairseq itself for ``model.pt``) on a
right-padded batch in eval mode: last hidden states and, where the checkpoint has an MLM head,
MLM logits, over the non-pad positions. The real all-MiniLM-L6-v2 is compared with
``transformers.BertModel``. ``transformers`` is an oracle for padding masks only: its
``BertModel`` ignores a per-example 4-D attention mask (README, 'Tests').

Also here: the dictionary bridge (checkpoint vocabulary <-> fairseq ``Dictionary``), the fairseq
model built from a checkpoint (one stack, every parameter once) and the ``s2sft-import`` CLI.
"""
import types

import pytest
import torch

import checkpoint_factory as cf
from s2sft_fairseq.checkpoints import cli
from s2sft_fairseq.checkpoints import load_into_stack, load_pretrained
from s2sft_fairseq.checkpoints.vocab import (
    CheckpointDictionary, VocabularyMismatchError, check_dictionary_matches, load_task_dictionary,
)
from s2sft_fairseq.packing import valid_positions
from s2sft_fairseq.modules.bert_stack import BertStack

TOL = 1e-5
#: family -> (max |hidden diff|, max |logit diff| or None); printed by ``pytest -s``
DIFFS = {}


def import_stack(path):
    """What a user's run does: read the checkpoint, build the stack from its config, load it."""
    ck = load_pretrained(path)
    stack = BertStack(ck.config)
    log = load_into_stack(stack, ck)
    return ck, stack.eval(), log


def run_stack(stack, pad, ids):
    valid, positions = valid_positions(ids, pad)
    mask = valid[:, None, :].expand(-1, ids.size(1), -1)  # padding mask only
    with torch.no_grad():
        h, _ = stack(ids, positions, None, mask)
        logits = stack.lm_head(h)
    return h, logits, valid


def hf_batch(path):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    assert tok.padding_side == "right"
    enc = tok(cf.SENTENCES, padding=True, return_tensors="pt")
    lengths = enc["attention_mask"].sum(1)
    assert len(set(lengths.tolist())) == len(cf.SENTENCES) and lengths.min() < enc["input_ids"].size(1)
    return tok, enc


def compare(family, h, ref_h, valid, logits=None, ref_logits=None):
    assert h.shape == ref_h.shape
    dh = (h - ref_h)[valid].abs().max().item()
    dl = None if ref_logits is None else (logits - ref_logits)[valid].abs().max().item()
    DIFFS[family] = (dh, dl)
    print(f"\n[parity] {family}: hidden {dh:.2e}" + ("" if dl is None else f", logits {dl:.2e}"))
    assert ref_h[valid].abs().max() > 0.1  # the comparison is not between two zero tensors
    assert dh <= TOL, f"{family}: hidden states differ by {dh}"
    if dl is not None:
        assert dl <= TOL, f"{family}: MLM logits differ by {dl}"


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize("family", cf.HF_FAMILIES)
def test_parity_hf_family(family):
    path, model = cf.get(family)
    _, enc = hf_batch(path)
    ck, stack, _ = import_stack(path)
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
    h, logits, valid = run_stack(stack, ck.dictionary.pad(), enc["input_ids"])
    assert torch.equal(valid, enc["attention_mask"].bool())
    has_head = family not in ("electra-discriminator",)
    assert ck.has_lm_head == has_head
    compare(family, h, out.hidden_states[-1], valid, logits, out.logits if has_head else None)
    if family == "electra-generator":
        assert ck.weights_file.endswith("pytorch_model.bin")  # the pickle path
    else:
        assert ck.weights_file.endswith("model.safetensors")
    if family.startswith("electra"):
        assert stack.embeddings.project is not None and ck.config.embed_dim == 16


@pytest.mark.parametrize("maker,head_act", [("make_bert", "relu"), ("make_roberta", "gelu"),
                                             ("make_electra_generator", "gelu")])
def test_parity_mlm_head_activation_with_non_gelu_hidden_act(maker, head_act, tmp_path):
    """hidden_act relu: BERT's head follows it, RoBERTa's / ELECTRA's heads stay GELU (transformers);
    the imported head does the same, and the choice survives the model config (generation)."""
    from s2sft_fairseq.models.unilm_seq2seq import UnilmSeq2SeqConfig
    from s2sft_fairseq.models.warm_start import build_stack_from_config
    path, model = getattr(cf, maker)(str(tmp_path / "ck"), hidden_act="relu")
    _, enc = hf_batch(path)
    ck, stack, _ = import_stack(path)
    assert ck.config.hidden_act == "relu" and (ck.config.head_act or ck.config.hidden_act) == head_act
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
    h, logits, valid = run_stack(stack, ck.dictionary.pad(), enc["input_ids"])
    compare(f"{maker} relu", h, out.hidden_states[-1], valid, logits, out.logits)
    # fairseq saves the config, generation rebuilds the stack from it without the checkpoint
    cfg = UnilmSeq2SeqConfig(pretrained_checkpoint=path, max_source_positions=8, max_target_positions=8)
    build_stack_from_config(cfg, ck.dictionary, 16)
    cfg.pretrained_checkpoint = ""
    rebuilt = build_stack_from_config(cfg, ck.dictionary, 16)
    assert rebuilt.lm_head.act(torch.tensor([-1.0])).item() == stack.lm_head.act(torch.tensor([-1.0])).item()


@pytest.mark.parametrize("family", cf.FAIRSEQ_FAMILIES)
def test_parity_fairseq_roberta(family):
    path, model, fs_dict = cf.get(family)
    ids = torch.full((3, 12), fs_dict.pad())
    g = torch.Generator().manual_seed(0)
    for row, n in enumerate((12, 5, 8)):  # right-padded: <s> ... </s> <pad> ...
        ids[row, :n] = torch.randint(fs_dict.nspecial, len(fs_dict) - 1, (n,), generator=g)
        ids[row, 0], ids[row, n - 1] = fs_dict.bos(), fs_dict.eos()
    ck, stack, _ = import_stack(path)
    with torch.no_grad():
        ref_h, _ = model(ids, features_only=True)
        ref_logits, _ = model(ids)
    h, logits, valid = run_stack(stack, ck.dictionary.pad(), ids)
    compare(family, h, ref_h, valid, logits, ref_logits)


def test_parity_minilm(minilm):
    """The real all-MiniLM-L6-v2 (sentence-transformers layout: no prefix, no MLM head)."""
    from transformers import BertModel
    tok, enc = hf_batch(minilm)
    ck, stack, log = import_stack(minilm)
    assert not ck.has_lm_head and any("no MLM head" in line for line in log)
    ref = BertModel.from_pretrained(minilm, local_files_only=True).eval()
    with torch.no_grad():
        ref_h = ref(**enc).last_hidden_state
    h, _, valid = run_stack(stack, ck.dictionary.pad(), enc["input_ids"])
    compare("minilm", h, ref_h, valid)


def test_parity_full_model_has_every_parameter_once(tmp_path):
    """fairseq's own build path: one stack, registered once, warm-started from the checkpoint."""
    import fairseq.models
    from omegaconf import OmegaConf
    path, hf = cf.get("bert")
    ck = load_pretrained(path)
    ck.dictionary.save(str(tmp_path / "dict.src.txt"))
    data_dict = load_task_dictionary(str(tmp_path / "dict.src.txt"))
    root = OmegaConf.create({
        "task": {"_name": "pseudo_masked_lm", "max_source_positions": 24, "max_target_positions": 16},
        "model": {"_name": "unilm_seq2seq", "pretrained_checkpoint": path},
    })
    task = types.SimpleNamespace(source_dictionary=data_dict, target_dictionary=data_dict,
                                 cfg=types.SimpleNamespace(ft_method="pseudo_masked"))
    model = fairseq.models.build_model(root.model, task)
    assert model.encoder.stack is model.decoder.stack is model.stack
    sd = model.state_dict()
    assert sd and all(k.startswith("stack.") for k in sd), [k for k in sd if not k.startswith("stack.")]
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(sd)
    assert len({p.data_ptr() for p in params.values()}) == len(params)
    n_unique = sum(p.numel() for p in params.values())
    assert n_unique == sum(t.numel() for t in sd.values())
    assert model.stack.lm_head.word_embeddings is model.stack.embeddings.word  # tied, not a copy
    # and the warm-started stack is the checkpoint's model
    _, enc = hf_batch(path)
    h, logits, valid = run_stack(model.stack.eval(), data_dict.pad(), enc["input_ids"])
    with torch.no_grad():
        out = hf(**enc, output_hidden_states=True)
    assert (h - out.hidden_states[-1])[valid].abs().max() <= TOL
    assert (logits - out.logits)[valid].abs().max() <= TOL


# --------------------------------------------------------------------------- dictionary bridge
SPECIALS_BERT = {"bos": "[CLS]", "eos": "[SEP]", "pad": "[PAD]", "unk": "[UNK]", "mask": "[MASK]"}
SPECIALS_ROBERTA = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}


def _specials(d):
    return {role: d[getattr(d, role)()] for role in ("bos", "eos", "pad", "unk", "mask")}


@pytest.mark.parametrize("family", cf.HF_FAMILIES + ["minilm"])
def test_dictionary_rows_are_tokenizer_ids(family, minilm):
    from transformers import AutoTokenizer
    path = minilm if family == "minilm" else cf.get(family)[0]
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    d = load_pretrained(path).dictionary
    n = len(tok.get_vocab())
    assert n <= len(d)
    assert list(d.symbols[:n]) == tok.convert_ids_to_tokens(list(range(n)))
    assert d.nspecial == 0
    expected = SPECIALS_ROBERTA if family in ("roberta", "xlm-roberta") else SPECIALS_BERT
    assert _specials(d) == expected
    assert d.pad() == tok.pad_token_id and d.mask() == tok.mask_token_id
    assert d.bos() == tok.cls_token_id and d.eos() == tok.sep_token_id and d.unk() == tok.unk_token_id


@pytest.mark.parametrize("family", cf.FAIRSEQ_FAMILIES)
def test_dictionary_rows_are_fairseq_dictionary(family):
    path, _, fs_dict = cf.get(family)
    d = load_pretrained(path).dictionary
    assert list(d.symbols) == list(fs_dict.symbols)
    assert _specials(d) == SPECIALS_ROBERTA
    assert (d.bos(), d.pad(), d.eos(), d.unk()) == (fs_dict.bos(), fs_dict.pad(), fs_dict.eos(), fs_dict.unk())


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "fairseq-roberta"])
def test_dictionary_save_load_round_trip(family, tmp_path):
    d = load_pretrained(cf.get(family)[0]).dictionary
    f = str(tmp_path / "dict.txt")
    d.save(f)
    back = CheckpointDictionary.load(f)
    assert list(back.symbols) == list(d.symbols)
    assert _specials(back) == _specials(d)
    assert [getattr(back, r)() for r in ("bos", "eos", "pad", "unk", "mask")] == \
           [getattr(d, r)() for r in ("bos", "eos", "pad", "unk", "mask")]
    assert type(load_task_dictionary(f)) is CheckpointDictionary
    check_dictionary_matches(back, d, where="round trip")


def test_dictionary_mismatch_names_first_token_and_index():
    d = load_pretrained(cf.get("bert")[0]).dictionary
    symbols = list(d.symbols)
    symbols[40], symbols[41] = symbols[41], symbols[40]
    swapped = CheckpointDictionary(symbols)
    with pytest.raises(VocabularyMismatchError, match=rf"index 40: data has {symbols[40]!r}, checkpoint has {d[40]!r}"):
        check_dictionary_matches(swapped, d, where="test")
    shorter = CheckpointDictionary(list(d.symbols[:-1]))
    with pytest.raises(VocabularyMismatchError, match=rf"first unmatched token {d[len(d) - 1]!r} at index {len(d) - 1}"):
        check_dictionary_matches(shorter, d, where="test")


# --------------------------------------------------------------------------- s2sft-import
def test_cli_export_dict_and_inspect(tmp_path, capsys):
    path = cf.get("electra-discriminator")[0]
    out = tmp_path / "out" / "dict.txt"
    assert cli.cli_main(["--pretrained", path, "--export-dict", str(out), "--inspect"]) == 0
    text = capsys.readouterr().out
    assert "family:       electra" in text and "layers:       2" in text
    assert "embeddings:   16 (projected" in text and "MLM head:     no" in text
    assert "ignored 4 tensors" in text  # the importer's notes (discriminator head dropped)
    exported = CheckpointDictionary.load(str(out))
    assert list(exported.symbols) == list(load_pretrained(path).dictionary.symbols)
    assert cli.cli_main(["--pretrained", path, "--check-dict", str(out)]) == 0


def test_cli_console_script_entry(tmp_path, capsys, monkeypatch):
    """The console script's way in: sys.argv, exit status, one-line errors."""
    path = cf.get("fairseq-roberta")[0]
    monkeypatch.setattr("sys.argv", ["s2sft-import", "--pretrained", path, "--inspect"])
    assert cli.cli_main() == 0
    text = capsys.readouterr().out
    assert "family:       fairseq-roberta" in text and "MLM head:     yes" in text
    monkeypatch.setattr("sys.argv", ["s2sft-import", "--pretrained", str(tmp_path / "missing")])
    assert cli.cli_main() == 1
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "dict.txt"
    d = load_pretrained(cf.get("bert")[0]).dictionary
    d.save(str(bad))
    monkeypatch.setattr("sys.argv", ["s2sft-import", "--pretrained", path, "--check-dict", str(bad)])
    assert cli.cli_main() == 1
    assert "index 0: data has '[PAD]', checkpoint has '<s>'" in capsys.readouterr().err

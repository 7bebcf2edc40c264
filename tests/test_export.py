"""s2sft-export (README, 'Exporting to Hugging Face'): a fine-tuned checkpoint leaves fairseq.

Oracle: ``fairseq-generate`` on the fine-tuned checkpoint. The export must give the same tokens
(and scores) from transformers alone: ``AutoModel.from_pretrained(DIR, trust_remote_code=True)
.generate`` (the shipped ``modeling_s2sft.py``) for ``unilm_seq2seq``, the stock
``EncoderDecoderModel.generate`` for bert2bert / BERTShare; the stock masked-LM classes load the
``unilm_seq2seq`` weights with no missing or unexpected key; re-importing an export with
``--pretrained-checkpoint`` gives the same forward.

Models: tiny random checkpoints of each family (``checkpoint_factory``) fine-tuned for one update
on a toy corpus, then their weights redrawn larger and the end-of-sentence bias chosen so that
greedy outputs differ in length (the first one among a few values that gives the most distinct
lengths, measured with the plugin's own generator); the real MiniLM after a few updates.
"""
import ast
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import checkpoint_factory as factory
import s2sft_fairseq  # noqa: F401  (registers the plugin)
from conftest import REPO, USER_DIR, make_toy_corpus, run_cli
from s2sft_fairseq.checkpoints.vocab import load_task_dictionary
from s2sft_fairseq.export.cli import cli_main, export

POSITIONS = ["--max-source-positions", "64", "--max-target-positions", "32"]
GEN = ["--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu", *POSITIONS]
TRAIN = [*GEN, "--criterion", "s2s_label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "1e-4",
         "--batch-size", "16", "--num-workers", "0", "--disable-validation", "--no-epoch-checkpoints", "--seed", "1"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Tiny models: one thread here and per CLI process (a shared machine)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------- fixtures
def load(ckpt, data):
    from fairseq import checkpoint_utils
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": data})
    return [m.eval() for m in models], task


def _greedy_lengths(models, task):
    from argparse import Namespace
    task.load_dataset("test")
    ds = task.dataset("test")
    gen = task.build_generator(models, Namespace(beam=1, max_len_a=0, max_len_b=200, min_len=1, lenpen=1.0,
                                                 unkpen=0.0, no_repeat_ngram_size=0, unnormalized=False))
    with torch.no_grad():
        hyps = gen.generate(models, ds.collater([ds[i] for i in range(len(ds))]))
    return [len(h[0]["tokens"]) for h in hyps]


def make_peaky(src, dst, data, seed=0, **cfg):
    """``src`` with ``cfg`` written into its saved config (``group__field=value``), every matrix
    redrawn N(0, 0.2) and the end-of-sentence bias that gives the most distinct greedy lengths."""
    state = torch.load(src, weights_only=True)
    for key, value in cfg.items():
        group, name = key.split("__")
        state["cfg"][group][name] = value
    g = torch.Generator().manual_seed(seed)
    for t in state["model"].values():
        if t.dim() == 2:
            t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    torch.save(state, dst)
    models, task = load(dst, data)
    (bias,) = [p for n, p in models[0].named_parameters() if n.endswith("lm_head.bias")]
    eos, best = task.dictionary.eos(), (-1, 0.0)
    for value in [v / 2 for v in range(-4, 13)]:
        with torch.no_grad():
            bias[eos] = value
        best = max(best, (len(set(_greedy_lengths(models, task))), value))
    (key,) = [k for k in state["model"] if k.endswith("lm_head.bias")]
    state["model"][key][eos] = best[1]
    torch.save(state, dst)
    return dst


class Trained:
    """A toy corpus in a family's vocabulary and checkpoints fine-tuned on it (built once)."""

    def __init__(self, root):
        self.root = root
        self.cache = {}
        self.argv = {}  # checkpoint -> the fairseq-train arguments that wrote it

    def data(self, family):
        if ("data", family) not in self.cache:
            tokenizer = factory.get(family)[0] if family != "minilm" else _minilm()
            self.cache[("data", family)] = make_toy_corpus(os.path.join(self.root, f"toy-{family}"), tokenizer,
                                                           sizes=(("train", 32), ("test", 12)), seed=3)
        return self.cache[("data", family)]

    def checkpoint(self, family, arch="unilm_seq2seq", *flags, updates=1):
        key = (family, arch, flags, updates)
        if key not in self.cache:
            save = os.path.join(self.root, f"ck-{len(self.cache)}")
            pretrained = [] if "--pretrained-checkpoint" in flags else [
                "--pretrained-checkpoint", factory.get(family)[0] if family != "minilm" else _minilm()]
            argv = [self.data(family), *TRAIN, "--arch", arch, *pretrained, *flags, "--max-update", str(updates),
                    "--save-dir", save]
            run_cli("fairseq-train", *argv)
            self.cache[key] = os.path.join(save, "checkpoint_last.pt")
            self.argv[self.cache[key]] = argv
        return self.cache[key]

    def peaky(self, family, arch="unilm_seq2seq", *flags, **cfg):
        key = ("peaky", family, arch, flags, tuple(sorted(cfg.items())))
        if key not in self.cache:
            dst = os.path.join(self.root, f"peaky-{len(self.cache)}.pt")
            self.cache[key] = make_peaky(self.checkpoint(family, arch, *flags), dst, self.data(family), **cfg)
        return self.cache[key]


def _minilm():
    from conftest import minilm_dir
    return minilm_dir()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    return Trained(str(tmp_path_factory.mktemp("export")))


def exported(ckpt, tmp_path, name="out", **kw):
    return export(ckpt, str(tmp_path / name), **kw)


def fairseq_hypotheses(data, ckpt, *flags):
    """fairseq-generate's best hypothesis per test sentence: {id: (score in bits, token ids with [SEP])}."""
    d = load_task_dictionary(os.path.join(data, "dict.src.txt"))
    out = run_cli("fairseq-generate", data, *GEN, "--path", ckpt, "--gen-subset", "test", "--batch-size", "5",
                  *flags).stdout
    hyps = {}
    for line in out.splitlines():
        if line.startswith("H-"):
            key, score, text = (line.split("\t") + [""])[:3]
            hyps[int(key[2:])] = (float(score), [d.index(t) for t in text.split()] + [d.eos()])
    return hyps


def source_batch(data):
    """The test split's sources as fairseq feeds them: ``[CLS] tokens [SEP]``, right-padded."""
    d = load_task_dictionary(os.path.join(data, "dict.src.txt"))
    with open(os.path.join(os.path.dirname(data), "test.src"), encoding="utf-8") as f:
        rows = [torch.tensor([d.bos()] + [d.index(t) for t in line.split()] + [d.eos()]) for line in f]
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=d.pad()), d


def up_to_eos(row, eos):
    return row[:row.index(eos) + 1] if eos in row else row


def assert_same_outputs(ours, our_scores, hyps, pad, what, eos=None, scores_below=math.inf, lengths=3):
    """The same tokens (and scores, for outputs shorter than ``scores_below``) as fairseq-generate."""
    assert len(ours) == len(hyps)
    for i, row in enumerate(ours.tolist()):
        tokens = up_to_eos(row, eos) if eos is not None else [t for t in row if t != pad]
        assert tokens == hyps[i][1], f"{what}, sentence {i}: {tokens} != fairseq-generate's {hyps[i][1]}"
        if our_scores is not None and len(tokens) < scores_below:
            assert abs(our_scores[i] / math.log(2) - hyps[i][0]) < 1e-3, f"{what}, sentence {i}: score"
    seen = {len(h[1]) for h in hyps.values()}
    assert len(seen) >= lengths, f"{what}: outputs all of lengths {seen}, the test says little"


def template_generate(out, batch, **kw):
    from transformers import AutoModel
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert type(model).__name__.endswith("ForS2SFT") and type(model).__module__.endswith("modeling_s2sft")
    return model.generate(batch, return_scores=True, **kw)


# ---------------------------------------------------------------------------- names, both ways
@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", "electra-generator"])
def test_stack_in_the_family_layout_is_the_checkpoint_it_was_imported_from(family):
    """Importer then exporter: every tensor of the original masked-LM checkpoint comes back under
    its own name (RoBERTa's offset rows as zeros; the untied decoder copies aside)."""
    from s2sft_fairseq.checkpoints import load_pretrained
    from s2sft_fairseq.export.layouts import FAMILIES, stack_tensors
    folder, model = factory.get(family)
    ck = load_pretrained(folder)
    model_type = json.load(open(os.path.join(folder, "config.json")))["model_type"]
    fam = FAMILIES[model_type]
    back = stack_tensors(ck.state_dict, fam, ck.dictionary.pad(), f"{fam.body}.")
    original = model.state_dict()
    for name, tensor in back.items():
        want = original[name]
        if name.endswith("position_embeddings.weight") and fam.position_offset:
            rows = ck.dictionary.pad() + 1
            assert torch.equal(tensor[:rows], torch.zeros_like(want[:rows]))
            tensor, want = tensor[rows:], want[rows:]
        assert torch.equal(tensor, want), name
    ignored = {n for n in original if n not in back}
    assert all(n.endswith(("decoder.weight", "decoder.bias", "generator_lm_head.weight")) for n in ignored), ignored


def test_template_imports_only_torch_transformers_and_the_standard_library():
    from export_templates import MODELING
    with open(MODELING, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    roots = {(a.name if isinstance(n, ast.Import) else n.module).split(".")[0]
             for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert roots <= {"math", "typing", "torch", "transformers"}, roots


# ---------------------------------------------------------------------------- bad input
def _error(capsys, argv):
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("s2sft-export: error: "), err
    return err


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    assert "no such checkpoint file" in _error(capsys, [str(missing), "--out", str(tmp_path / "o1")])
    not_pickle = tmp_path / "text.pt"
    not_pickle.write_text("hello")
    assert "text.pt: cannot read the checkpoint" in _error(capsys, [str(not_pickle), "--out", str(tmp_path / "o2")])
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    assert "not a fairseq checkpoint" in _error(capsys, [str(other), "--out", str(tmp_path / "o3")])
    arch = tmp_path / "transformer.pt"
    torch.save({"model": {}, "cfg": {"model": {"_name": "transformer"}, "task": {}}}, arch)
    err = _error(capsys, [str(arch), "--out", str(tmp_path / "o4")])
    assert "architecture 'transformer' cannot be exported" in err and "unilm_seq2seq, bert2bert" in err
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert "is not empty; use --force" in _error(capsys, [str(arch), "--out", str(full)])
    bad_scores = tmp_path / "scores.json"
    bad_scores.write_text('{"rougeL": 17.2,\n "bleu": }')
    err = _error(capsys, [str(arch), "--out", str(tmp_path / "o5"), "--scores", str(bad_scores)])
    assert "scores.json:2: not JSON" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o4").exists()


def fabricated(path, arch="unilm_seq2seq", family="bert", data="", **sizes):
    """A checkpoint laid out as fairseq-train saves one, built in-process without training: a tiny
    random model in a factory family's vocabulary, its state dict and its saved config."""
    import dataclasses
    from types import SimpleNamespace
    from s2sft_fairseq.checkpoints import load_pretrained
    from s2sft_fairseq.models.bert2bert import Bert2BertConfig, Bert2BertModel
    from s2sft_fairseq.models.unilm_seq2seq import UnilmSeq2SeqConfig, UnilmSeq2SeqModel
    folder = factory.get(family)[0]
    d = load_pretrained(folder).dictionary
    config_class, model_class = ((UnilmSeq2SeqConfig, UnilmSeq2SeqModel) if arch == "unilm_seq2seq"
                                 else (Bert2BertConfig, Bert2BertModel))
    task = {"_name": "pseudo_masked_lm", "data": data, "tokenizer_dir": folder, "ft_method": "causal",
            "corruption": "paper", "max_source_positions": 64, "max_target_positions": 32}
    cfg = config_class(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_source_positions=64,
                       max_target_positions=32, max_positions=96, **sizes)
    model = model_class.build_model(cfg, SimpleNamespace(source_dictionary=d, target_dictionary=d,
                                                         cfg=SimpleNamespace(**task)))
    saved = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    saved.update(_name=arch, ft_method="causal", corruption="paper")
    torch.save({"model": model.state_dict(), "cfg": {"model": saved, "task": task}}, path)
    return str(path)


def test_export_files_and_force(tmp_path, capsys):
    ckpt = fabricated(tmp_path / "unilm.pt")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli_main([ckpt, "--out", str(out), "--force"]) == 0
    assert capsys.readouterr().out.strip() == f"s2sft-export: wrote {out}"
    names = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "modeling_s2sft.py", "tokenizer_config.json", "README.md",
            "notes.txt"} <= names and not any(n.startswith(".s2sft-export") for n in os.listdir(tmp_path))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out / "config.json").st_mode & 0o777 == 0o666 & ~umask
    from transformers import BertForMaskedLM
    _, info = BertForMaskedLM.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_refusals_name_the_problem(tmp_path, capsys):
    b2b = fabricated(tmp_path / "b2b.pt", "bert2bert", rel_pos_bins=32, max_rel_pos=64)
    assert "relative position bias cannot be an EncoderDecoderModel" in _error(capsys, [b2b, "--out", str(tmp_path / "a")])
    data = tmp_path / "data"
    data.mkdir()
    from s2sft_fairseq.checkpoints import load_pretrained
    load_pretrained(factory.get("roberta")[0]).dictionary.save(str(data / "dict.src.txt"))
    unilm = fabricated(tmp_path / "unilm.pt", data=str(data))
    err = _error(capsys, [unilm, "--out", str(tmp_path / "b")])
    assert "dict.src.txt (the training data) vs the tokenizer" in err and "does not match the checkpoint at index 0" in err
    err = _error(capsys, [unilm, "--out", str(tmp_path / "c"), "--tokenizer", str(tmp_path / "gone")])
    assert "does not exist on this machine" in err and "--tokenizer DIR" in err
    assert not any(os.path.exists(tmp_path / n) for n in "abc")


# ---------------------------------------------------------------------------- unilm_seq2seq
UNILM_CASES = [  # family, saved-config overrides (the method the checkpoint records)
    ("bert", {}),
    ("bert", {"model__ft_method": "masked", "task__ft_method": "masked"}),
    ("bert", {"model__ft_method": "causal", "task__ft_method": "causal"}),
    ("bert", {"model__ft_method": "causal", "task__ft_method": "causal", "model__corruption": "reference",
              "task__corruption": "reference"}),
    ("roberta", {}),
    ("xlm-roberta", {"model__ft_method": "causal", "task__ft_method": "causal"}),
    ("electra-generator", {}),
]


@pytest.mark.slow
@pytest.mark.parametrize("family,cfg", UNILM_CASES,
                         ids=["bert-pseudo", "bert-masked", "bert-causal", "bert-causal-posshift", "roberta-pseudo",
                              "xlmr-causal", "electra-pseudo"])
def test_unilm_export_generates_what_fairseq_generates(family, cfg, trained, tmp_path):
    data = trained.data(family)
    ckpt = trained.peaky(family, **cfg)
    out = exported(ckpt, tmp_path)
    batch, d = source_batch(data)
    tokens, scores = template_generate(out, batch)
    assert_same_outputs(tokens, scores, fairseq_hypotheses(data, ckpt, "--beam", "1"), d.pad(), f"{family} greedy")
    # the stock masked-LM class loads exactly these weights
    import transformers
    config = json.load(open(os.path.join(out, "config.json")))
    stock = getattr(transformers, config["architectures"][0])
    model, info = stock.from_pretrained(out, output_loading_info=True)
    assert type(model) is stock and stock.__name__.endswith("ForMaskedLM")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert config["max_position_embeddings"] == 96 + (d.pad() + 1 if family in ("roberta", "xlm-roberta") else 0)


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [{}, {"model__ft_method": "causal", "task__ft_method": "causal"}], ids=["pseudo", "causal"])
def test_unilm_beam_search_equals_fairseqs(cfg, trained, tmp_path):
    data = trained.data("bert")
    ckpt = trained.peaky("bert", **cfg)
    out = exported(ckpt, tmp_path)
    batch, d = source_batch(data)
    flags = ["--beam", "3", "--lenpen", "0.7", "--min-len", "2", "--max-len-b", "12", "--no-repeat-ngram-size", "2"]
    tokens, scores = template_generate(out, batch, num_beams=3, length_penalty=0.7, min_new_tokens=2,
                                       max_new_tokens=13, no_repeat_ngram_size=2)
    assert_same_outputs(tokens, scores, fairseq_hypotheses(data, ckpt, *flags), d.pad(), "beam 3")


@pytest.mark.slow
def test_relative_position_bias_and_segment_ids_4_5(trained, tmp_path):
    """A stack with a relative position bias and UniLM's segment ids (random init): the bias table
    and the ids travel in config.json, the stock class still loads the weights exactly."""
    flags = ("--pretrained-checkpoint", "", "--hidden-size", "32", "--num-layers", "2", "--num-heads", "4",
             "--intermediate-size", "64", "--rel-pos-bins", "32", "--max-rel-pos", "64", "--type-vocab-size", "6",
             "--source-type-id", "4", "--target-type-id", "5")
    data = trained.data("bert")
    ckpt = trained.peaky("bert", "unilm_seq2seq", *flags)
    state = torch.load(ckpt, weights_only=True)
    assert state["model"]["stack.rel_pos_bias.weight"].shape == (4, 32)
    out = exported(ckpt, tmp_path)
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["s2sft"]["rel_pos_bias"] == state["model"]["stack.rel_pos_bias.weight"].tolist()
    assert (config["rel_pos_bins"], config["s2sft"]["source_type_id"], config["s2sft"]["target_type_id"]) == (32, 4, 5)
    batch, d = source_batch(data)
    tokens, scores = template_generate(out, batch)
    assert_same_outputs(tokens, scores, fairseq_hypotheses(data, ckpt, "--beam", "1"), d.pad(), "rel-pos greedy")
    from transformers import BertForMaskedLM
    _, info = BertForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    # round trip: the importer reads the table back from config.json, with the segment ids
    from s2sft_fairseq.checkpoints import load_pretrained
    ck = load_pretrained(out)
    assert torch.equal(ck.state_dict["rel_pos_bias.weight"], state["model"]["stack.rel_pos_bias.weight"])
    assert (ck.config.rel_pos_bins, ck.config.source_type_id, ck.config.target_type_id) == (32, 4, 5)
    models, task = load(ckpt, data)
    from omegaconf import open_dict
    cfg = models[0].cfg
    with open_dict(cfg):
        cfg.pretrained_checkpoint, cfg.load_pretrained_weights = out, True
    again = type(models[0]).build_model(cfg, task).eval()
    task.load_dataset("train")
    ds = task.dataset("train")
    sample = ds.collater([ds[i] for i in range(8)])
    with torch.no_grad():
        a, _ = models[0](**sample["net_input"])
        b, _ = again(**sample["net_input"])
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bert", "roberta", "electra-generator"])
def test_reimported_export_gives_the_same_forward(family, trained, tmp_path):
    from omegaconf import open_dict
    data = trained.data(family)
    ckpt = trained.peaky(family)
    out = exported(ckpt, tmp_path)
    models, task = load(ckpt, data)
    cfg = models[0].cfg
    with open_dict(cfg):
        cfg.pretrained_checkpoint, cfg.load_pretrained_weights = out, True
    again = type(models[0]).build_model(cfg, task).eval()
    task.load_dataset("train")
    ds = task.dataset("train")
    batch = ds.collater([ds[i] for i in range(8)])
    with torch.no_grad():
        a, _ = models[0](**batch["net_input"])
        b, _ = again(**batch["net_input"])
    assert again.stack.cfg.max_positions == models[0].stack.cfg.max_positions == 96
    assert (a - b).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------------- bert2bert
@pytest.mark.slow
@pytest.mark.parametrize("family,share", [("bert", False), ("bert", True), ("roberta", False)],
                         ids=["bert2bert", "bertshare", "roberta2roberta"])
def test_bert2bert_export_is_a_stock_encoder_decoder_that_generates_the_same(family, share, trained, tmp_path):
    from transformers import EncoderDecoderModel
    flags = ("--ft-method", "causal") + (("--share-encoder-decoder",) if share else ())
    data = trained.data(family)
    ckpt = trained.peaky(family, "bert2bert", *flags)
    out = exported(ckpt, tmp_path)
    model, info = EncoderDecoderModel.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    batch, d = source_batch(data)
    card = open(os.path.join(out, "README.md")).read()
    namespace = {"model": model, "batch": {"input_ids": batch, "attention_mask": batch.ne(d.pad())}}
    exec(card.split("```python")[2].split("```")[0], namespace)  # the model card's EndAtLimit recipe
    end_at_limit = namespace["LogitsProcessorList"]([namespace["EndAtLimit"](4, d.eos())])
    runs = [  # beam, lenpen, n-gram blocking, length limit (max_new_tokens = --max-len-b + 1), extra arguments
        (1, 1.0, 0, model.generation_config.max_new_tokens, {}),  # the defaults = fairseq-generate's defaults
        (3, 1.0, 2, model.generation_config.max_new_tokens, {}),
        # the model card's recipe: fairseq's scoring of [SEP] at the length limit (reached here)
        (3, 1.3, 2, 4, {"forced_eos_token_id": None, "logits_processor": end_at_limit}),
    ]
    for beam, lenpen, ngram, limit, extra in runs:
        hyps = fairseq_hypotheses(data, ckpt, "--beam", str(beam), "--lenpen", str(lenpen), "--no-repeat-ngram-size",
                                  str(ngram), "--max-len-b", str(limit - 1))
        res = model.generate(**namespace["batch"], num_beams=beam, length_penalty=lenpen, early_stopping=beam > 1,
                             no_repeat_ngram_size=ngram, max_new_tokens=limit, return_dict_in_generate=True,
                             output_scores=True, **extra)
        assert torch.equal(res.sequences[:, 0], torch.full_like(res.sequences[:, 0], d.bos()))
        assert_same_outputs(res.sequences[:, 1:], res.sequences_scores.tolist() if beam > 1 else None, hyps, d.pad(),
                            f"{family} share={share} beam {beam} limit {limit}", eos=d.eos(), lengths=1 + (beam == 1) + bool(extra))
        if extra:
            assert any(len(h[1]) == limit for h in hyps.values()), "no output reaches the length limit"
    assert ("untied" in card) and (("BERTShare" in card) == share)


# ---------------------------------------------------------------------------- the real MiniLM
@pytest.mark.slow
def test_minilm_export_from_text_without_fairseq_installed(trained, tmp_path):
    """The real MiniLM after a few updates; the export loaded from text by a process in which
    fairseq and this package cannot be imported."""
    data = trained.data("minilm")
    ckpt = trained.checkpoint("minilm", "unilm_seq2seq", "--lr", "5e-4", updates=4)
    scores_file = tmp_path / "scores.json"
    scores_file.write_text(json.dumps({"rougeL": 17.25, "bleu": {"score": 3.5}}))
    out = run_cli(os.path.basename(sys.executable), "-m", "s2sft_fairseq.export.cli", ckpt, "--out",
                  tmp_path / "hf", "--scores", scores_file, cwd=REPO).stdout
    out = out.strip().rsplit(" ", 1)[1]
    texts = [line.strip() for line in open(os.path.join(os.path.dirname(data), "test.src"))]
    script = f"""
import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fairseq", "s2sft_fairseq", "fairseq_cli"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Refuse())
from transformers import AutoModel, AutoTokenizer
tok = AutoTokenizer.from_pretrained({out!r})
model = AutoModel.from_pretrained({out!r}, trust_remote_code=True)
texts = [tok.convert_tokens_to_string(t.split()) for t in {texts!r}]
batch = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=model.config.s2sft["max_source_positions"])
result = {{}}
for beam in (1, 3):
    ids, scores = model.generate(**batch, num_beams=beam, no_repeat_ngram_size=2 * (beam > 1), return_scores=True)
    result[beam] = [ids.tolist(), scores.tolist(), batch["input_ids"].tolist()]
print(json.dumps(result))
assert not any(m.split(".")[0] in ("fairseq", "s2sft_fairseq") for m in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=""), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    batch, d = source_batch(data)
    assert [[t for t in row if t != d.pad()] for row in result["1"][2]] == \
        [[t for t in row if t != d.pad()] for row in batch.tolist()]  # the tokenizer gives fairseq's sources
    for beam in ("1", "3"):
        ids, scores, _ = result[beam]
        hyps = fairseq_hypotheses(data, ckpt, "--beam", beam, "--no-repeat-ngram-size", "2" if beam == "3" else "0")
        for i, row in enumerate(ids):
            assert [t for t in row if t != d.pad()] == hyps[i][1], f"beam {beam}, sentence {i}"
            assert abs(scores[i] / math.log(2) - hyps[i][0]) < 1e-3
    card = open(os.path.join(out, "README.md")).read()
    assert "| rougeL | 17.25 |" in card and "| bleu.score | 3.5 |" in card
    assert "--arch unilm_seq2seq" in card and "fine-tuning method: pseudo_masked" in card


# ---------------------------------------------------------------------------- the model card
@pytest.mark.slow
def test_model_card_training_command_parses_back_into_the_saved_config(trained, tmp_path):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from s2sft_fairseq.export.model_card import training_command
    from s2sft_fairseq.export.trained import read_checkpoint
    ckpt = trained.checkpoint("bert", "unilm_seq2seq", "--ft-method", "causal", "--target-mask-prob", "0.3")
    ck = read_checkpoint(ckpt)
    command = training_command(ck)
    assert command.startswith(f"fairseq-train {trained.data('bert')} --user-dir s2sft_fairseq --task pseudo_masked_lm")

    def parse(argv):
        argv = list(argv)
        if "--user-dir" in argv:
            argv[argv.index("--user-dir") + 1] = USER_DIR
        return convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser(), argv))
    rebuilt, original = parse(command.split()[1:]), parse(trained.argv[ckpt])
    for group in ("common", "dataset", "optimization", "checkpoint", "task", "model", "criterion", "optimizer",
                  "lr_scheduler"):
        for key in original[group]:
            assert rebuilt[group][key] == original[group][key], f"{group}.{key}"
    assert rebuilt.model._name == "unilm_seq2seq" and rebuilt.task.ft_method == "causal"
    out = exported(ckpt, tmp_path)
    card = open(os.path.join(out, "README.md")).read()
    assert command in card and "- train: 32 pairs" in card and "1 updates" in card

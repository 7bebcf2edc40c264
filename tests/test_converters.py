"""Benchmark converters on small fixtures in each release's format (tests/fixtures/)."""
import os

import pytest

from preprocess import cnndm, squad_qg, xnlg, xsum
from preprocess.text import DataError

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def read_split(out, split):
    """Lines of OUT/split.src and OUT/split.tgt (asserting they pair up)."""
    src = open(os.path.join(out, f"{split}.src"), encoding="utf-8").read().split("\n")[:-1]
    tgt = open(os.path.join(out, f"{split}.tgt"), encoding="utf-8").read().split("\n")[:-1]
    assert len(src) == len(tgt)
    return list(zip(src, tgt))


# ---------------------------------------------------------------------------------------- CNN/DM


def test_cnndm_parse_story_joins_highlights_with_sentence_mark():
    story = "Para one.\n\nPara two\n\n@highlight\n\nFirst point\n\n@highlight\n\nSecond!\n"
    article, summary = cnndm.parse_story(story)
    assert article == "Para one. Para two"
    assert summary == "First point . <n> Second!"


def test_cnndm_stories_with_url_lists(tmp_path):
    counts = cnndm.convert_stories(
        [f"{FIX}/cnndm/cnn/stories", f"{FIX}/cnndm/dailymail/stories"], f"{FIX}/cnndm/url_lists", str(tmp_path))
    assert counts == {"train": 2, "valid": 1, "test": 1}  # test: one story without article, one URL missing
    train = read_split(tmp_path, "train")
    assert train[0] == (
        "(CNN) -- A small town celebrated the new year with a parade. Thousands of people lined the streets.",
        "Town holds new year parade . <n> Thousands attend the celebration.",
    )
    assert train[1][1] == "Cat rescued from tree . <n> Firefighters used a ladder!"
    assert read_split(tmp_path, "test") == [("The council approved the budget.", "Budget approved .")]


def test_cnndm_source_target_pairs(tmp_path):
    counts = cnndm.convert_pairs(f"{FIX}/cnndm/pairs", str(tmp_path))
    assert counts == {"train": 2, "valid": 1, "test": 1}
    assert read_split(tmp_path, "train")[0] == ("Article one is about a dog .", "Dog story . <n> Second sentence .")


def test_cnndm_cli_error_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^preprocess.cnndm: error: no such directory: /nonexistent$"):
        cnndm.cli_main(["stories", "--stories", "/nonexistent", "--url-lists", "x", "--out", str(tmp_path)])


# ------------------------------------------------------------------------------------------ XSum


def test_xsum_files_with_official_split(tmp_path):
    counts = xsum.convert_files(f"{FIX}/xsum/files", f"{FIX}/xsum/files/split.json", str(tmp_path))
    assert counts == {"train": 2, "valid": 1, "test": 0}
    assert read_split(tmp_path, "train") == [
        ("The government announced a new policy. It will take effect next year.", "A new policy will start next year."),
        ("A football club won the league.", "Club wins the league."),
    ]
    # raw bbc-summary-data form: [SN]FIRST-SENTENCE[SN] is the summary, [SN]RESTBODY[SN] the document
    assert read_split(tmp_path, "valid") == [
        ("Rivers burst their banks. Residents were evacuated.", "Heavy rain caused floods in the north.")]


def test_xsum_jsonl(tmp_path):
    counts = xsum.convert_jsonl({"train": f"{FIX}/xsum/jsonl/train.jsonl", "valid": None,
                                 "test": f"{FIX}/xsum/jsonl/test.jsonl"}, str(tmp_path))
    assert counts == {"train": 2, "test": 1}
    assert read_split(tmp_path, "train")[0] == ("Line one. Line two.", "Two lines.")


# ----------------------------------------------------------------------------------- SQuAD QG


def test_squad_txt_paragraph_sep_answer(tmp_path):
    counts = squad_qg.convert_txt(f"{FIX}/squad_qg/txt", str(tmp_path))
    assert counts == {"train": 2, "valid": 1, "test": 1}
    assert read_split(tmp_path, "train")[0] == (
        "paragraph : the eiffel tower is in paris . [SEP] paris", "where is the eiffel tower ?")
    squad_qg.convert_txt(f"{FIX}/squad_qg/txt", str(tmp_path / "s"), context="sentence")
    assert read_split(tmp_path / "s", "valid") == [("the moon orbits the earth . [SEP] the earth",
                                                    "what does the moon orbit ?")]


def test_squad_txt_without_answers_is_an_error(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "para-train.txt").write_text("p\n")
    (src / "tgt-train.txt").write_text("q\n")
    with pytest.raises(DataError, match="ans-train.txt"):
        squad_qg.convert_txt(str(src), str(tmp_path / "out"))


def test_squad_jsonl_and_official_json_with_titles(tmp_path):
    squad_qg.convert_jsonl({"train": f"{FIX}/squad_qg/jsonl/train.jsonl"}, str(tmp_path))
    assert read_split(tmp_path, "train") == [("The sky is blue. [SEP] blue", "What color is the sky?")]
    counts = squad_qg.convert_squad(f"{FIX}/squad_qg/squad/train-v1.1.json", "train", str(tmp_path / "sq"),
                                    f"{FIX}/squad_qg/squad/train_titles.txt")
    assert counts == {"train": 2}  # only the "Paris" article is listed
    assert read_split(tmp_path / "sq", "train")[1] == (
        "Paris is the capital of France. [SEP] France", "Which country is Paris in?")


# ---------------------------------------------------------------------------- XNLG / XGLUE


def test_xnlg_gigaword_fr_and_zh_tsv(tmp_path):
    args = xnlg.build_parser().parse_args(["--out", str(tmp_path)])
    counts = xnlg.convert({"train": f"{FIX}/xnlg/giga_fr/train.tsv", "valid": f"{FIX}/xnlg/giga_fr/dev.tsv"},
                          str(tmp_path), args)
    assert counts == {"train": 2, "valid": 1}
    assert read_split(tmp_path, "train")[0] == (
        "le gouvernement a annoncé une réforme des retraites mardi .", "le gouvernement annonce une réforme")
    xnlg.convert({"train": f"{FIX}/xnlg/giga_zh/train.tsv"}, str(tmp_path / "zh"), args)
    assert read_split(tmp_path / "zh", "train") == [("国务院总理今天在北京会见了外国代表团。", "总理会见外国代表团")]


def test_xnlg_malformed_line_is_an_error_or_skipped(tmp_path):
    args = xnlg.build_parser().parse_args(["--out", str(tmp_path)])
    with pytest.raises(DataError, match=r"bad.tsv:1: expected at least 2 tab-separated columns, found 1"):
        xnlg.convert({"train": f"{FIX}/xnlg/giga_zh/bad.tsv"}, str(tmp_path), args)
    args = xnlg.build_parser().parse_args(["--out", str(tmp_path), "--skip-malformed"])
    with pytest.raises(DataError, match="no usable|nothing"):
        xnlg.convert({}, str(tmp_path), args)
    assert xnlg.convert({"train": f"{FIX}/xnlg/giga_zh/bad.tsv"}, str(tmp_path), args) == {"train": 0}


def test_xnlg_webqa_zh_jsonl_with_answer(tmp_path):
    args = xnlg.build_parser().parse_args(["--out", str(tmp_path), "--source-field", "passage",
                                           "--target-field", "question", "--answer-field", "answer"])
    xnlg.convert({"train": f"{FIX}/xnlg/webqa_zh/train.jsonl"}, str(tmp_path), args)
    assert read_split(tmp_path, "train") == [("长城位于中国北方，全长两万多公里。 [SEP] 中国北方", "长城在哪里？")]

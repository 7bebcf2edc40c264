"""s2sft-score: metric values computed by hand on tiny cases, input parsing, CLI behaviour."""
import json
import shutil

import pytest

from s2sft_fairseq.scoring import cli, metrics
from s2sft_fairseq.scoring.inputs import ScoringInputError, parse_generate_output, read_text


def run_cli(argv, capsys):
    cli.cli_main(argv)
    return capsys.readouterr().out


# ------------------------------------------------------------------------------------ ROUGE


def test_rouge_hand_computed():
    # unigrams: the, cat shared of 3 each -> P = R = F = 2/3; bigrams: "the cat" of 2 -> 1/2;
    # LCS "the cat" = 2 -> 2/3.
    r = metrics.rouge(["the cat sat"], ["the cat ran"])
    assert r["rouge1"] == pytest.approx(200 / 3)
    assert r["rouge2"] == pytest.approx(50.0)
    assert r["rougeL"] == pytest.approx(200 / 3)
    assert r["rougeLsum"] == pytest.approx(200 / 3)


def test_rouge_uses_the_stemmer_for_english():
    assert metrics.rouge(["cats running"], ["cat runs"])["rouge1"] == pytest.approx(100.0)


def test_rouge_lsum_differs_from_rouge_l_on_reordered_sentences():
    # Whole-text LCS of "a1 b1 c1 d1" and "c1 d1 a1 b1" is 2 of 4 -> 50; sentence by sentence
    # ("c1 d1" and "a1 b1" each match a hypothesis sentence fully) the union LCS is 4 of 4 -> 100.
    hyp, ref = "aa bb . <n> cc dd .", "cc dd . <n> aa bb ."
    r = metrics.rouge([hyp], [ref])
    assert r["rougeL"] == pytest.approx(50.0)
    assert r["rougeLsum"] == pytest.approx(100.0)
    assert r["rouge1"] == pytest.approx(100.0)
    # the BERT detokenizer writes the mark as "< n >": same result
    assert metrics.rouge([hyp.replace("<n>", "< n >")], [ref])["rougeLsum"] == pytest.approx(100.0)


def test_rouge_chinese_scores_characters():
    # 我 爱 shared among 4 characters each -> 50; rouge-score's default tokenizer would see nothing.
    r = metrics.rouge(["我爱北京"], ["我爱上海"], lang="zh")
    assert r["rouge1"] == pytest.approx(50.0)
    assert r["rouge2"] == pytest.approx(100 / 3)  # 我爱 of 3 bigrams
    assert metrics.CharTokenizer().tokenize("GPT模型 v2!") == ["gpt", "模", "型", "v2"]


def test_rouge_french_keeps_accented_words():
    assert metrics.rouge(["été chaud"], ["été froid"], lang="fr")["rouge1"] == pytest.approx(50.0)


def test_rouge_averages_over_examples():
    r = metrics.rouge(["a b", "c d"], ["a b", "x y"])
    assert r["rouge1"] == pytest.approx(50.0)


# --------------------------------------------------------------------------------------- BLEU


def test_sacrebleu_exact_and_disjoint():
    assert metrics.bleu(["the cat sat on the mat ."], ["the cat sat on the mat ."])["bleu"] == pytest.approx(100.0)
    assert metrics.bleu(["a b c d"], ["e f g h"])["bleu"] == pytest.approx(0.0)


# ----------------------------------------------------------------------------------------- QG


def test_qg_tokenization():
    assert metrics.qg_tokenize("What's the Capital of France?") == "what's the capital of france ?"
    # without lang, a Chinese question is one "word" (BLEU-4 would be all or nothing)
    assert metrics.qg_tokenize("北京是中国的首都吗？") == "北京是中国的首都吗 ？"


def test_qg_tokenization_chinese_is_per_character():
    assert metrics.qg_tokenize("北京是中国的首都吗？", "zh") == "北 京 是 中 国 的 首 都 吗 ？"
    assert metrics.qg_tokenize("WebQA 里 BERT's 首都?", "zh") == "webqa 里 bert's 首 都 ?"


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs java")
def test_qg_metrics_hand_computed():
    # One call (METEOR starts a JVM). Example 1 is an exact match after lower-casing and
    # tokenization (7 tokens); example 2 is "the cat sat" vs "the cat ran".
    r = metrics.qg_metrics(["What is the capital of France?", "the cat sat"],
                           ["what is the capital of france ?", "the cat ran"])
    # Corpus BLEU-4: matched/total n-grams 9/10, 7/8, 5/6, 4/4; equal lengths, so no brevity
    # penalty: (0.9 * 0.875 * 5/6 * 1) ** 0.25.
    assert r["bleu4"] == pytest.approx(100 * (0.9 * 0.875 * 5 / 6) ** 0.25, abs=1e-4)
    # pycocoevalcap ROUGE-L (beta 1.2), mean over examples: 1 and (LCS 2 of 3 each side) 2/3.
    assert r["rougeL"] == pytest.approx((100 + 200 / 3) / 2)
    assert 50.0 < r["meteor"] < 100.0


# ------------------------------------------------------------------------------------- inputs


def test_read_text_splits_at_newline_only(tmp_path):
    p = tmp_path / "h.txt"
    p.write_bytes("a\x0cb\r\nc\u2028d\n".encode("utf-8"))
    assert read_text(str(p)) == ["a\x0cb", "c\u2028d"]


def test_generate_output_is_reordered_by_id(tmp_path):
    out = tmp_path / "gen.out"
    out.write_text(
        "S-2\tsource two\nT-2\tref two\nH-2\t-0.5\thyp two raw\nD-2\t-0.5\thyp two\nP-2\t-0.1 -0.2\n"
        "S-0\tsource zero\nT-0\tref zero\nH-0\t-0.1\thyp zero raw\nD-0\t-0.1\thyp zero\n"
        "D-0\t-0.9\tsecond best of zero\n"
        "S-1\tsource one\nT-1\tref one\nH-1\t-0.3\t\nD-1\t-0.3\t\n"
        "Generate test with beam=5: BLEU4 = 1.00\n",
        encoding="utf-8",
    )
    hyps, refs = parse_generate_output(str(out))
    assert hyps == ["hyp zero", "", "hyp two"]
    assert refs == ["ref zero", "ref one", "ref two"]


def test_generate_output_falls_back_to_h_lines(tmp_path):
    out = tmp_path / "gen.out"
    out.write_text("H-1\t-0.3\tsecond\nH-0\t-0.1\tfirst\n", encoding="utf-8")
    assert parse_generate_output(str(out)) == (["first", "second"], None)


def test_generate_output_with_missing_ids_is_an_error(tmp_path):
    out = tmp_path / "gen.out"
    out.write_text("D-0\t-0.1\ta\nD-2\t-0.1\tc\n", encoding="utf-8")
    with pytest.raises(ScoringInputError, match=r"missing e.g. \[1\]"):
        parse_generate_output(str(out))


# ---------------------------------------------------------------------------------------- CLI


def test_cli_json_keys_and_table(tmp_path, capsys):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("the cat sat\n", encoding="utf-8")
    ref.write_text("the cat ran\n", encoding="utf-8")
    long = tmp_path / "long.txt"
    long.write_text("the cat sat on the mat .\n", encoding="utf-8")
    out = json.loads(run_cli(["--task", "summarization", "--hyp", str(hyp), "--ref", str(ref), "--json"], capsys))
    assert set(out) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert out["rouge1"] == pytest.approx(66.6667, abs=1e-3)
    table = run_cli(["--task", "bleu", "--hyp", str(long), "--ref", str(long)], capsys)
    assert "bleu" in table and "100.00" in table
    out = json.loads(run_cli(["--task", "bleu", "--hyp", str(hyp), "--ref", str(ref), "--json"], capsys))
    assert set(out) == {"bleu"}


def test_cli_generate_output_with_t_lines(tmp_path, capsys):
    out = tmp_path / "gen.out"
    out.write_text("D-1\t-0.2\tthe dog ran\nT-1\tthe dog ran\nD-0\t-0.1\tthe cat sat\nT-0\tthe cat ran\n",
                   encoding="utf-8")
    res = json.loads(run_cli(["--task", "summarization", "--generate-output", str(out), "--json"], capsys))
    assert res["rouge1"] == pytest.approx((200 / 3 + 100) / 2, abs=1e-3)


def test_cli_line_count_mismatch_is_one_line_error(tmp_path):
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("a\nb\nc\n", encoding="utf-8")
    ref.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        cli.cli_main(["--task", "bleu", "--hyp", str(hyp), "--ref", str(ref)])
    msg = str(e.value.code)
    assert msg == (f"s2sft-score: error: hypotheses and references differ in number: {hyp} has 3, {ref} has 2")

"""Metric functions used by ``s2sft-score`` (README, "Scoring"). All scores are returned ×100.

* :func:`rouge` — ``rouge-score`` ROUGE-1/2/L/Lsum F1, averaged over examples. English uses
  rouge-score's own tokenizer with the Porter stemmer (as in the summarization literature);
  ``lang="zh"`` (also ``ja``/``ko``) scores every CJK character as a token; any other language
  uses a Unicode word tokenizer without stemming (rouge-score's default one drops every non-ASCII
  letter, which would wreck French). ROUGE-Lsum splits summaries into sentences at newlines; the
  one-line-per-example convention of ``preprocess/`` marks sentence boundaries with ``<n>`` (see
  :func:`split_sentence_marks`), which is turned back into newlines here.
* :func:`qg_metrics` — question generation as in the QG literature (Du et al., 2017 and the
  UniLM / s2s-ft evaluation): text lower-cased and split into words and punctuation, then
  ``pycocoevalcap`` BLEU-4 (corpus level, "closest" reference length), METEOR 1.5 (Java) and
  ROUGE-L. ``lang="zh"`` (``ja``/``ko``) tokenizes CJK text into characters first.
* :func:`bleu` — ``sacrebleu`` corpus BLEU with its own tokenizers.
"""
import contextlib
import io
import re
from typing import Dict, List, Sequence

SENTENCE_MARK = re.compile(r"\s*<\s*n\s*>\s*")

# CJK ideographs (basic + ext. A + compatibility), kana, hangul, CJK punctuation and full-width forms.
_CJK = (
    "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
)
_CHAR_TOKENS = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+", re.UNICODE)
_WORD_TOKENS = re.compile(r"[^\W_]+", re.UNICODE)
_QG_TOKENS = re.compile(r"\w+(?:'\w+)?|[^\w\s]", re.UNICODE)
_QG_CJK_TOKENS = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+(?:'[^\\W{_CJK}]+)?|[^\\w\\s]", re.UNICODE)
CJK_LANGS = ("zh", "ja", "ko")


def split_sentence_marks(text: str) -> str:
    """``"a b <n> c d"`` -> ``"a b\\nc d"`` (also accepts ``< n >``, as a BERT detokenizer writes it)."""
    return SENTENCE_MARK.sub("\n", text).strip()


class CharTokenizer:
    """rouge-score tokenizer for Chinese/Japanese/Korean: one token per CJK character, words else."""

    def tokenize(self, text: str) -> List[str]:
        return _CHAR_TOKENS.findall(text.lower())


class UnicodeWordTokenizer:
    """rouge-score tokenizer for non-English Latin/Cyrillic/... text: lower-cased Unicode words."""

    def tokenize(self, text: str) -> List[str]:
        return _WORD_TOKENS.findall(text.lower())


def _rouge_tokenizer(lang: str):
    if lang == "en":
        return None  # rouge-score's DefaultTokenizer(use_stemmer=True)
    if lang in ("zh", "ja", "ko"):
        return CharTokenizer()
    return UnicodeWordTokenizer()


def rouge(hyps: Sequence[str], refs: Sequence[str], lang: str = "en") -> Dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F1 ×100 (keys ``rouge1 rouge2 rougeL rougeLsum``)."""
    from rouge_score import rouge_scorer

    _check_lengths(hyps, refs)
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=(lang == "en"), tokenizer=_rouge_tokenizer(lang))
    totals = dict.fromkeys(types, 0.0)
    for hyp, ref in zip(hyps, refs):
        scores = scorer.score(split_sentence_marks(ref), split_sentence_marks(hyp))
        for t in types:
            totals[t] += scores[t].fmeasure
    n = max(len(hyps), 1)
    return {t: 100.0 * totals[t] / n for t in types}


def qg_tokenize(text: str, lang: str = "en") -> str:
    """Lower-case and split into words and single punctuation marks, space-joined; for
    ``zh``/``ja``/``ko`` every CJK character is a token (XNLG's Chinese QG is scored on characters)."""
    pattern = _QG_CJK_TOKENS if lang in CJK_LANGS else _QG_TOKENS
    return " ".join(pattern.findall(text.lower()))


def qg_metrics(hyps: Sequence[str], refs: Sequence[str], lang: str = "en") -> Dict[str, float]:
    """BLEU-4, METEOR and ROUGE-L ×100 with pycocoevalcap (keys ``bleu4 meteor rougeL``).

    METEOR's stem and synonym modules are English; on other languages only its exact matches
    count (as in XNLG's evaluation)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    _check_lengths(hyps, refs)
    res = {i: [qg_tokenize(h, lang)] for i, h in enumerate(hyps)}
    gts = {i: [qg_tokenize(r, lang)] for i, r in enumerate(refs)}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocoevalcap prints its BLEU statistics
        bleu_scores, _ = Bleu(4).compute_score(gts, res)
    rouge_l, _ = Rouge().compute_score(gts, res)
    meteor = Meteor()
    try:
        meteor_score, _ = meteor.compute_score(gts, res)
    finally:
        del meteor  # closes the Java process
    return {"bleu4": 100.0 * bleu_scores[3], "meteor": 100.0 * meteor_score, "rougeL": 100.0 * rouge_l}


def bleu(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a") -> Dict[str, float]:
    """sacrebleu corpus BLEU (key ``bleu``)."""
    import sacrebleu

    _check_lengths(hyps, refs)
    return {"bleu": sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize=tokenize).score}


def _check_lengths(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")

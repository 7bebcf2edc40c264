"""The offline real data sets: WordNet (wordnet-base) and KJV -> WEB (sword-text-kjv/-web)."""
import os

import pytest

from preprocess import sword, wordnet

needs_wordnet = pytest.mark.skipif(
    not os.path.isfile(os.path.join(wordnet.WORDNET_DIR, "data.noun")),
    reason="Debian wordnet-base is not installed (tests/setup_env.sh installs it)")
needs_sword = pytest.mark.skipif(
    not all(os.path.isdir(os.path.join(sword.SWORD_DIR, m)) for m in (sword.SOURCE_MODULE, sword.TARGET_MODULE)),
    reason="Debian sword-text-kjv / sword-text-web are not installed (tests/setup_env.sh installs them)")


# --------------------------------------------------------------------------------------- WordNet


def test_wordnet_line_parsing():
    line = ('00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 000 | draw air into, and expel out '
            'of, the lungs; "I can breathe better when the air is clean"; "The patient is respiring"  ')
    offset, lemmas, definition, examples = wordnet.parse_synset_line(line)
    assert offset == "00001740"
    assert lemmas == ["breathe", "take a breath", "respire", "suspire"]
    assert definition == "draw air into, and expel out of, the lungs"
    assert examples == ["I can breathe better when the air is clean", "The patient is respiring"]
    assert wordnet.choose_lemma(lemmas, examples[1]) == "respire"  # shared prefix "respir"
    assert wordnet.parse_synset_line('00001740 00 a 01 able(a) 0 000 | having skill; "able to swim"')[1] == ["able"]


@needs_wordnet
def test_wordnet_real_data(tmp_path):
    all_pairs = list(wordnet.iter_pairs())
    splits = wordnet.build_splits(pairs=all_pairs)
    total = sum(len(v) for v in splits.values())
    assert 40_000 < total < 60_000  # WordNet 3.0 has ~48k example sentences
    assert 0.85 < len(splits["train"]) / total < 0.95
    # a synset's examples never straddle splits; pairs are unique
    where = {}
    for name, pairs in splits.items():
        for p in pairs:
            assert where.setdefault(p.synset, name) == name
    everything = [(p.src, p.tgt) for ps in splits.values() for p in ps]
    assert len(set(everything)) == len(everything)
    by_src = {p.src: p.tgt for ps in splits.values() for p in ps}
    breathe = by_src["breathe : I can breathe better when the air is clean"]
    assert breathe == "draw air into, and expel out of, the lungs"
    # --max-examples: a stable subset of the same pairs
    small = wordnet.build_splits(max_examples=500, pairs=all_pairs)
    small_pairs = [(p.src, p.tgt) for ps in small.values() for p in ps]
    assert len(small_pairs) == 500 and set(small_pairs) <= set(everything)
    again = wordnet.build_splits(max_examples=500, pairs=list(all_pairs))
    assert small_pairs == [(p.src, p.tgt) for ps in again.values() for p in ps]
    counts = wordnet.convert(str(tmp_path), max_examples=200)
    assert sum(counts.values()) == 200
    assert len(open(tmp_path / "train.src", encoding="utf-8").read().split("\n")) == counts["train"] + 1


# ----------------------------------------------------------------------------------------- SWORD


def test_sword_markup_stripping():
    raw = ('<div type="x-milestone" subType="x-preverse" sID="pv1"/><title type="section">Heading</title>'
           '<w lemma="strong:G2424">Jesus</w> <w lemma="strong:G1145">wept</w>.<note placement="foot">'
           '<reference type="annotateRef">11:35 </reference>a note &amp; more</note> &#182;')
    assert sword.strip_markup(raw) == "Jesus wept."


@needs_sword
def test_sword_real_modules(tmp_path):
    pairs, stats = sword.build_pairs()
    assert len(pairs) >= 25_000
    assert stats.chapters_common == 1189
    assert stats.chapters_count_mismatch <= 10
    by_ref = {ref: (s, t) for ref, s, t in pairs}
    assert by_ref["John.11.35"] == ("Jesus wept.", "Jesus wept.")
    assert by_ref["Gen.1.1"] == ("In the beginning God created the heaven and the earth.",
                                 "In the beginning, God created the heavens and the earth.")
    assert "3John.1.14" not in by_ref  # 14 verses in KJV, 15 in NRSVA: chapter dropped
    assert not any("<" in s or "<" in t for _, s, t in pairs)
    assert len(by_ref) == len(pairs)
    counts = sword.write_splits(str(tmp_path), pairs)
    assert sum(counts.values()) == len(pairs)
    refs = open(tmp_path / "valid.ref", encoding="utf-8").read().split("\n")[:-1]
    src = open(tmp_path / "valid.src", encoding="utf-8").read().split("\n")[:-1]
    tgt = open(tmp_path / "valid.tgt", encoding="utf-8").read().split("\n")[:-1]
    assert len(refs) == len(src) == len(tgt) == counts["valid"]
    assert all((s, t) == by_ref[r] for r, s, t in zip(refs, src, tgt))
    # whole chapters go to one split
    split_of_chapter = {}
    for split in ("train", "valid", "test"):
        for r in open(tmp_path / f"{split}.ref", encoding="utf-8").read().split():
            assert split_of_chapter.setdefault(r.rsplit(".", 1)[0], split) == split

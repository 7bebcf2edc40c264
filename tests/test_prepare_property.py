"""Property: reading + cleaning + pairing never shifts a pair, and every input pair is accounted for."""
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.text import PairStats, pair_lines, read_lines
from s2sft_fairseq.text import clean_text

# Any text without "\n" (a line cannot contain one) and without surrogates (files are UTF-8),
# mixed with the troublemakers: empty and blank lines, control characters, Unicode separators.
_line = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=20),
    st.sampled_from(["", " ", "\t", "\r", "\x00", "\x0b\x0c", "\x1c\x1d\x1e", "\x85", "\u2028", "\u2029", "a\rb"]),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(_line, _line), max_size=12))
def test_pairs_stay_paired_and_are_counted(tmp_path_factory, rows):
    d = tmp_path_factory.mktemp("prop")
    src_path, tgt_path = d / "x.src", d / "x.tgt"
    # A line that ends in "\r" is read as CRLF, so that "\r" is not part of the text.
    src_path.write_bytes("".join(s + "\n" for s, _ in rows).encode("utf-8"))
    tgt_path.write_bytes("".join(t + "\n" for _, t in rows).encode("utf-8"))
    stats = PairStats()
    kept = list(pair_lines(read_lines(str(src_path)), read_lines(str(tgt_path)), "x.src", "x.tgt", stats))

    def expected_clean(text):
        return clean_text(text[:-1] if text.endswith("\r") else text)

    expected = [(i + 1, expected_clean(s), expected_clean(t)) for i, (s, t) in enumerate(rows)
                if expected_clean(s) and expected_clean(t)]
    assert [(int(e.src_where.rsplit(":", 1)[1]), e.src, e.tgt) for e in kept] == expected
    assert all(e.src_where.rsplit(":", 1)[1] == e.tgt_where.rsplit(":", 1)[1] for e in kept)
    assert stats.kept + stats.skipped_empty == stats.total == len(rows)
    for e in kept:
        assert e.src and e.tgt and "\n" not in e.src + e.tgt
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in e.src + e.tgt)

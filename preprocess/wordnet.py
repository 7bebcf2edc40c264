"""WordNet 3.0 (Debian ``wordnet-base``) -> definition modelling pairs ``word : example`` -> definition.

Reads the database files ``data.noun``, ``data.verb``, ``data.adj``, ``data.adv`` under
``/usr/share/wordnet``. Each synset line is
``offset lex_filenum ss_type w_cnt(hex) word lex_id ... p_cnt pointers ... | gloss``; the gloss is
``definition; "example"; "example"``.

* One pair per (synset, example sentence): source ``"<word> : <example>"``, target the definition
  (the gloss before its first ``;``, quoted examples removed). ``<word>`` is the synset's first
  lemma that occurs in the example (case-insensitive; else the lemma sharing the longest prefix
  with a word of the example; else the first lemma); underscores become spaces and adjective
  markers such as ``(a)`` are dropped. Synsets without an example give no pair.
* Pairs are deduplicated (same source and target); the first occurrence is kept.
* The split is stable and keeps a synset's examples together: ``zlib.crc32(synset id) % 100``
  (synset id = POS letter + offset, e.g. ``n00001740``): < 90 train, < 95 valid, else test.
* ``--max-examples N`` keeps a deterministic, uniformly spread subset of N pairs (smallest
  ``crc32`` of the pair first), e.g. for quick experiments.

    python -m preprocess.wordnet --out raw/wordnet [--max-examples 5000]
"""
import argparse
import logging
import os
import re
import zlib
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

from .text import DataError, one_line, read_lines, write_pairs

logger = logging.getLogger(__name__)

WORDNET_DIR = "/usr/share/wordnet"
POS_FILES = (("n", "data.noun"), ("v", "data.verb"), ("a", "data.adj"), ("r", "data.adv"))
_QUOTED = re.compile(r'"([^"]*)"')
_ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")


@dataclass
class WordNetPair:
    synset: str
    src: str
    tgt: str


def split_of(synset_id: str) -> str:
    bucket = zlib.crc32(synset_id.encode("ascii")) % 100
    return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


def parse_synset_line(line: str):
    """``(offset, lemmas, definition, examples)`` of one data-file line, or ``None`` (header)."""
    if not line or line.startswith("  ") or " | " not in line:
        return None
    fields, gloss = line.split(" | ", 1)
    parts = fields.split()
    offset, w_cnt = parts[0], int(parts[3], 16)
    lemmas = [_ADJ_MARKER.sub("", parts[4 + 2 * i]).replace("_", " ") for i in range(w_cnt)]
    examples = [one_line(e) for e in _QUOTED.findall(gloss)]
    definition = one_line(_QUOTED.sub(" ", gloss.split(";", 1)[0]))
    return offset, lemmas, definition, [e for e in examples if e]


def choose_lemma(lemmas: List[str], example: str) -> str:
    low = example.lower()
    for lemma in lemmas:
        at = low.find(lemma.lower())
        while at >= 0:
            if at == 0 or not low[at - 1].isalnum():  # starts a word
                return lemma
            at = low.find(lemma.lower(), at + 1)
    words = re.findall(r"\w+", low)

    def shared_prefix(lemma: str) -> int:
        lemma = lemma.lower()
        return max((len(os.path.commonprefix([lemma, w])) for w in words), default=0)

    best = max(lemmas, key=shared_prefix)
    return best if shared_prefix(best) >= 3 else lemmas[0]


def iter_pairs(wordnet_dir: str = WORDNET_DIR) -> Iterator[WordNetPair]:
    """Every (deduplicated) pair, in file order."""
    seen = set()
    for pos, name in POS_FILES:
        path = os.path.join(wordnet_dir, name)
        if not os.path.isfile(path):
            raise DataError(f"no such file: {path} (install the Debian package wordnet-base)")
        for lineno, line in read_lines(path):
            try:
                parsed = parse_synset_line(line)
            except (IndexError, ValueError):
                raise DataError(f"{path}:{lineno}: not a WordNet data line") from None
            if parsed is None:
                continue
            offset, lemmas, definition, examples = parsed
            if not definition:
                continue
            for example in examples:
                src = f"{choose_lemma(lemmas, example)} : {example}"
                if (src, definition) in seen:
                    continue
                seen.add((src, definition))
                yield WordNetPair(f"{pos}{offset}", src, definition)


def subsample(pairs: List[WordNetPair], max_examples: Optional[int]) -> List[WordNetPair]:
    """A deterministic, uniformly spread subset of ``max_examples`` pairs (order preserved)."""
    if max_examples is None or max_examples >= len(pairs):
        return pairs

    def key(i):
        return zlib.crc32(f"{pairs[i].synset}\t{pairs[i].src}".encode("utf-8")), i

    keep = sorted(sorted(range(len(pairs)), key=key)[:max_examples])
    return [pairs[i] for i in keep]


def build_splits(wordnet_dir: str = WORDNET_DIR, max_examples: Optional[int] = None,
                 pairs: Optional[List[WordNetPair]] = None) -> Dict[str, List[WordNetPair]]:
    """``{split: pairs}``; ``pairs`` may be given to reuse an earlier :func:`iter_pairs` result."""
    if pairs is None:
        pairs = list(iter_pairs(wordnet_dir))
    splits: Dict[str, List[WordNetPair]] = {"train": [], "valid": [], "test": []}
    for p in subsample(pairs, max_examples):
        splits[split_of(p.synset)].append(p)
    return splits


def convert(out_dir: str, wordnet_dir: str = WORDNET_DIR, max_examples: Optional[int] = None) -> Dict[str, int]:
    splits = build_splits(wordnet_dir, max_examples)
    return {name: write_pairs(out_dir, name, ((p.src, p.tgt) for p in pairs)) for name, pairs in splits.items()}


def cli_main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m preprocess.wordnet", description=__doc__.split("\n")[0])
    p.add_argument("--wordnet-dir", default=WORDNET_DIR)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--max-examples", type=int, default=None, metavar="N")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s | %(name)s | %(message)s")
    try:
        counts = convert(args.out, args.wordnet_dir, args.max_examples)
    except DataError as e:
        raise SystemExit(f"preprocess.wordnet: error: {e}") from None
    print(" ".join(f"{k}={v}" for k, v in counts.items()), "->", args.out)


if __name__ == "__main__":
    cli_main()

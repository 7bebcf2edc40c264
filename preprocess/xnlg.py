"""Multilingual benchmarks in the XNLG / XGLUE layout -> ``{train,valid,test}.{src,tgt}``.

Covers Gigaword fr/zh headline generation and WebQA zh question generation (Chi et al., 2020, as
used by s2s-ft), and XGLUE's NTG / QG data. These releases are one example a line, either

* tab-separated: ``source \\t target`` (columns selectable with ``--source-column`` /
  ``--target-column``; for question generation ``--answer-column`` appends the answer to the
  source after `` [SEP] ``, as for SQuAD), or
* JSON lines (files ending in ``.jsonl`` / ``.json``): ``--source-field`` / ``--target-field``
  (and ``--answer-field``).

A line with too few columns is an error naming the file and line (``--skip-malformed`` skips and
counts such lines instead). Text is not segmented or lower-cased here: the checkpoint's tokenizer
does that in ``s2sft-prepare``; score Chinese with ``s2sft-score --lang zh``.

    python -m preprocess.xnlg --train giga_fr/train.tsv --valid giga_fr/dev.tsv --test giga_fr/test.tsv \\
        --out raw/giga_fr
    python -m preprocess.xnlg --train webqa/train.jsonl --source-field passage --answer-field answer \\
        --target-field question --out raw/webqa_zh
"""
import argparse
import logging
import os
from typing import Dict, Iterator, Optional, Tuple

from .squad_qg import qg_source
from .text import DataError, read_jsonl, read_lines, write_pairs

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def iter_tsv(path: str, src_col: int, tgt_col: int, ans_col: Optional[int], skip_malformed: bool,
             malformed: Dict[str, int]) -> Iterator[Tuple[str, str]]:
    need = max(c for c in (src_col, tgt_col, ans_col) if c is not None) + 1
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < need:
            if skip_malformed:
                malformed[path] = malformed.get(path, 0) + 1
                continue
            raise DataError(f"{path}:{lineno}: expected at least {need} tab-separated columns, found {len(cols)}")
        src = cols[src_col] if ans_col is None else qg_source(cols[src_col], cols[ans_col])
        yield src, cols[tgt_col]


def iter_jsonl(path: str, src_field: str, tgt_field: str, ans_field: Optional[str]) -> Iterator[Tuple[str, str]]:
    fields = [src_field, tgt_field] + ([ans_field] if ans_field else [])
    for _, values in read_jsonl(path, fields):
        src = values[0] if not ans_field else qg_source(values[0], values[2])
        yield src, values[1]


def convert(paths: Dict[str, Optional[str]], out_dir: str, args) -> Dict[str, int]:
    counts, malformed = {}, {}
    for split, path in paths.items():
        if not path:
            continue
        if not os.path.isfile(path):
            raise DataError(f"no such file: {path}")
        if path.endswith((".jsonl", ".json")):
            pairs = iter_jsonl(path, args.source_field, args.target_field, args.answer_field)
        else:
            pairs = iter_tsv(path, args.source_column, args.target_column, args.answer_column,
                             args.skip_malformed, malformed)
        counts[split] = write_pairs(out_dir, split, pairs)
    for path, n in malformed.items():
        logger.warning(f"{path}: skipped {n} lines with too few columns")
    if not counts:
        raise DataError("nothing to do: give at least one of --train, --valid, --test")
    return counts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m preprocess.xnlg", description=__doc__.split("\n")[0])
    for split in SPLITS:
        p.add_argument(f"--{split}", metavar="FILE", help=f"{split} file (.tsv/.txt or .jsonl)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--source-column", type=int, default=0)
    p.add_argument("--target-column", type=int, default=1)
    p.add_argument("--answer-column", type=int, default=None)
    p.add_argument("--source-field", default="src")
    p.add_argument("--target-field", default="tgt")
    p.add_argument("--answer-field", default=None)
    p.add_argument("--skip-malformed", action="store_true")
    return p


def cli_main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s | %(name)s | %(message)s")
    try:
        counts = convert({s: getattr(args, s) for s in SPLITS}, args.out, args)
    except DataError as e:
        raise SystemExit(f"preprocess.xnlg: error: {e}") from None
    print(" ".join(f"{k}={v}" for k, v in counts.items()), "->", args.out)


if __name__ == "__main__":
    cli_main()

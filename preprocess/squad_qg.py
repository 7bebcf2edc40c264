"""SQuAD question generation (Du & Cardie split) -> ``{train,valid,test}.{src,tgt}``.

The source is the context followed by the answer after a literal `` [SEP] `` (as UniLM / s2s-ft
feed it: ``paragraph [SEP] answer``); the target is the question. With a BERT-style tokenizer
``[SEP]`` stays one special token.

Input forms:

* ``txt``: the common line-aligned release: ``DIR/{src,tgt,para,ans}-{train,dev,test}.txt``
  (sentence, question, paragraph, answer text); ``--context paragraph`` (default) uses
  ``para-*``, ``--context sentence`` uses ``src-*``. ``dev`` is written as ``valid``.
* ``jsonl``: one JSON object a line per question, e.g. ``{"context": ..., "answer": ...,
  "question": ...}`` (field names configurable), one file per split.
* ``squad``: the official SQuAD v1.1 JSON (``data/paragraphs/qas``), first answer of each
  question; ``--titles FILE`` keeps only the listed articles, which is how the Du & Cardie split
  (made of article lists over the official train/dev data) is reproduced.

    python -m preprocess.squad_qg txt --input qg_data/ --out raw/squad_qg
    python -m preprocess.squad_qg jsonl --train train.jsonl --valid dev.jsonl --test test.jsonl --out raw/squad_qg
    python -m preprocess.squad_qg squad --json train-v1.1.json --split train --titles train_titles.txt \\
        --out raw/squad_qg
"""
import argparse
import json
import logging
import os
from typing import Dict, Iterator, Optional, Set, Tuple

from .text import DataError, count_lines, read_jsonl, read_lines, write_pairs

logger = logging.getLogger(__name__)

SEP = " [SEP] "
TXT_SPLITS = {"train": "train", "valid": "dev", "test": "test"}


def qg_source(context: str, answer: str) -> str:
    """``context [SEP] answer``."""
    return f"{context.strip()}{SEP}{answer.strip()}"


def convert_txt(input_dir: str, out_dir: str, context: str = "paragraph") -> Dict[str, int]:
    ctx_prefix = {"paragraph": "para", "sentence": "src"}[context]
    counts = {}
    for split, name in TXT_SPLITS.items():
        paths = {k: os.path.join(input_dir, f"{k}-{name}.txt") for k in (ctx_prefix, "ans", "tgt")}
        if not os.path.isfile(paths["tgt"]):
            continue
        for kind, path in paths.items():
            if not os.path.isfile(path):
                hint = " (the answer text is needed: one answer a line)" if kind == "ans" else ""
                raise DataError(f"no such file: {path}{hint}")
        n = {k: count_lines(p) for k, p in paths.items()}
        if len(set(n.values())) != 1:
            raise DataError("files differ in length: " + ", ".join(f"{paths[k]} has {v} lines" for k, v in n.items()))
        rows = zip(read_lines(paths[ctx_prefix]), read_lines(paths["ans"]), read_lines(paths["tgt"]))
        pairs = ((qg_source(c, a), q) for (_, c), (_, a), (_, q) in rows)
        counts[split] = write_pairs(out_dir, split, pairs)
    if not counts:
        raise DataError(f"{input_dir}: no tgt-{{train,dev,test}}.txt files")
    return counts


def convert_jsonl(paths: Dict[str, Optional[str]], out_dir: str, context_field="context",
                  answer_field="answer", question_field="question") -> Dict[str, int]:
    counts = {}
    for split, path in paths.items():
        if not path:
            continue
        if not os.path.isfile(path):
            raise DataError(f"no such file: {path}")
        records = read_jsonl(path, [context_field, answer_field, question_field])
        counts[split] = write_pairs(out_dir, split, ((qg_source(c, a), q) for _, (c, a, q) in records))
    return counts


def iter_squad(path: str, titles: Optional[Set[str]] = None) -> Iterator[Tuple[str, str]]:
    """``(context [SEP] answer, question)`` for every question of a SQuAD v1.1 JSON file."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)["data"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a SQuAD v1.1 JSON file ({type(e).__name__}: {e})") from None
    for article in data:
        if titles is not None and article.get("title") not in titles:
            continue
        for para in article.get("paragraphs", []):
            for qa in para.get("qas", []):
                answers = qa.get("answers") or []
                if not answers:
                    continue
                yield qg_source(para["context"], answers[0]["text"]), qa["question"]


def convert_squad(json_path: str, split: str, out_dir: str, titles_path: Optional[str] = None) -> Dict[str, int]:
    titles = None
    if titles_path:
        titles = {t.strip() for _, t in read_lines(titles_path) if t.strip()}
    return {split: write_pairs(out_dir, split, iter_squad(json_path, titles))}


def cli_main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m preprocess.squad_qg", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="form", required=True)
    t = sub.add_parser("txt", help="{src,tgt,para,ans}-{train,dev,test}.txt")
    t.add_argument("--input", required=True, metavar="DIR")
    t.add_argument("--context", choices=("paragraph", "sentence"), default="paragraph")
    t.add_argument("--out", required=True, metavar="DIR")
    j = sub.add_parser("jsonl", help="JSON lines with context/answer/question fields")
    for split in TXT_SPLITS:
        j.add_argument(f"--{split}", metavar="FILE")
    j.add_argument("--context-field", default="context")
    j.add_argument("--answer-field", default="answer")
    j.add_argument("--question-field", default="question")
    j.add_argument("--out", required=True, metavar="DIR")
    s = sub.add_parser("squad", help="official SQuAD v1.1 JSON, one split at a time")
    s.add_argument("--json", required=True, metavar="FILE")
    s.add_argument("--split", required=True, choices=tuple(TXT_SPLITS))
    s.add_argument("--titles", metavar="FILE", help="keep only these article titles (one a line)")
    s.add_argument("--out", required=True, metavar="DIR")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s | %(name)s | %(message)s")
    try:
        if args.form == "txt":
            counts = convert_txt(args.input, args.out, args.context)
        elif args.form == "jsonl":
            paths = {s: getattr(args, s) for s in TXT_SPLITS}
            counts = convert_jsonl(paths, args.out, args.context_field, args.answer_field, args.question_field)
        else:
            counts = convert_squad(args.json, args.split, args.out, args.titles)
    except DataError as e:
        raise SystemExit(f"preprocess.squad_qg: error: {e}") from None
    print(" ".join(f"{k}={v}" for k, v in counts.items()), "->", args.out)


if __name__ == "__main__":
    cli_main()

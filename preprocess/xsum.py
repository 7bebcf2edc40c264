"""XSum -> ``{train,valid,test}.{src,tgt}`` (one example a line).

Two input forms:

* ``files``: one file pair per BBC id, ``<id>.document`` + ``<id>.summary`` (the pre-processed
  release; files may sit in ``ROOT/`` or in ``ROOT/document/`` and ``ROOT/summary/``), or the raw
  ``bbc-summary-data`` form where ``<id>.summary`` alone holds ``[SN]FIRST-SENTENCE[SN]`` (the
  summary) and ``[SN]RESTBODY[SN]`` (the document). The split comes from the official
  ``XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json`` (keys ``train``, ``validation``, ``test``).
* ``jsonl``: one JSON object a line with ``document`` and ``summary`` fields (names configurable).

Newlines inside a document become spaces.

    python -m preprocess.xsum files --root xsum-preprocessed \\
        --split-file XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json --out raw/xsum
    python -m preprocess.xsum jsonl --train train.jsonl --valid validation.jsonl --test test.jsonl --out raw/xsum
"""
import argparse
import json
import logging
import os
import re
from typing import Dict, Iterator, Optional, Tuple

from .text import DataError, read_jsonl, write_pairs

logger = logging.getLogger(__name__)

SPLIT_KEYS = {"train": "train", "valid": "validation", "test": "test"}
_SECTION = re.compile(r"\[SN\]([A-Z-]+)\[SN\]")


def parse_sn_sections(text: str) -> Dict[str, str]:
    """The ``[SN]NAME[SN]`` sections of a raw bbc-summary-data file."""
    parts = _SECTION.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def _read(path: str) -> str:
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        return f.read()


def _find(root: str, sub: str, name: str) -> Optional[str]:
    for path in (os.path.join(root, name), os.path.join(root, sub, name)):
        if os.path.isfile(path):
            return path
    return None


def load_example(root: str, bbc_id: str) -> Optional[Tuple[str, str]]:
    """``(document, summary)`` of one id, or ``None`` when its files are missing."""
    summary_path = _find(root, "summary", f"{bbc_id}.summary")
    if summary_path is None:
        return None
    summary = _read(summary_path)
    document_path = _find(root, "document", f"{bbc_id}.document")
    if document_path is not None:
        return _read(document_path), summary
    sections = parse_sn_sections(summary)
    if "FIRST-SENTENCE" in sections and "RESTBODY" in sections:
        return sections["RESTBODY"], sections["FIRST-SENTENCE"]
    return None


def convert_files(root: str, split_file: str, out_dir: str) -> Dict[str, int]:
    if not os.path.isdir(root):
        raise DataError(f"no such directory: {root}")
    try:
        with open(split_file, "r", encoding="utf-8") as f:
            split_ids = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{split_file}: cannot read the split file ({e})") from None
    counts = {}
    for split, key in SPLIT_KEYS.items():
        if key not in split_ids:
            raise DataError(f"{split_file}: no {key!r} list")
        missing = [0]

        def examples(ids=split_ids[key]) -> Iterator[Tuple[str, str]]:
            for bbc_id in ids:
                ex = load_example(root, str(bbc_id))
                if ex is None:
                    missing[0] += 1
                    continue
                yield ex

        counts[split] = write_pairs(out_dir, split, examples())
        if missing[0]:
            logger.info(f"[{split}] {missing[0]} ids of the split file have no files under {root}")
    return counts


def convert_jsonl(paths: Dict[str, Optional[str]], out_dir: str, document_field: str = "document",
                  summary_field: str = "summary") -> Dict[str, int]:
    counts = {}
    for split, path in paths.items():
        if not path:
            continue
        if not os.path.isfile(path):
            raise DataError(f"no such file: {path}")
        records = read_jsonl(path, [document_field, summary_field])
        counts[split] = write_pairs(out_dir, split, ((d, s) for _, (d, s) in records))
    return counts


def cli_main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m preprocess.xsum", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="form", required=True)
    f = sub.add_parser("files", help="<id>.document/<id>.summary files + official split JSON")
    f.add_argument("--root", required=True, metavar="DIR")
    f.add_argument("--split-file", required=True, metavar="JSON")
    f.add_argument("--out", required=True, metavar="DIR")
    j = sub.add_parser("jsonl", help="JSON lines with document/summary fields")
    for split in SPLIT_KEYS:
        j.add_argument(f"--{split}", metavar="FILE")
    j.add_argument("--document-field", default="document")
    j.add_argument("--summary-field", default="summary")
    j.add_argument("--out", required=True, metavar="DIR")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s | %(name)s | %(message)s")
    try:
        if args.form == "files":
            counts = convert_files(args.root, args.split_file, args.out)
        else:
            paths = {s: getattr(args, s) for s in SPLIT_KEYS}
            counts = convert_jsonl(paths, args.out, args.document_field, args.summary_field)
    except DataError as e:
        raise SystemExit(f"preprocess.xsum: error: {e}") from None
    print(" ".join(f"{k}={v}" for k, v in counts.items()), "->", args.out)


if __name__ == "__main__":
    cli_main()

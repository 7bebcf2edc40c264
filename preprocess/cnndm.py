"""CNN / DailyMail -> ``{train,valid,test}.{src,tgt}`` (one example a line).

Two input forms:

* ``stories``: the original ``*.story`` files (``cnn/stories``, ``dailymail/stories``): article
  paragraphs, then each summary sentence on the line after an ``@highlight`` line. The split
  follows the standard URL lists (``all_train.txt``, ``all_val.txt``, ``all_test.txt``; a story's
  file name is the SHA-1 hex digest of its URL). As in See et al. (2017), a highlight without
  final punctuation gets a `` .``. Stories without article text or highlights are skipped (counted).
* ``pairs``: the common ``train.source`` / ``train.target`` (``val``/``test``) files of
  pre-processed releases, one example a line; targets are kept as given.

Summary sentences are joined with `` <n> `` so that an example stays one line; ``s2sft-score``
turns ``<n>`` back into newlines for ROUGE-Lsum. ``pairs`` input that already uses ``<n>`` (as
some releases do) is left as it is.

    python -m preprocess.cnndm stories --stories cnn/stories dailymail/stories --url-lists lists/ --out raw/cnndm
    python -m preprocess.cnndm pairs --input cnn_dm/ --out raw/cnndm
"""
import argparse
import hashlib
import logging
import os
from typing import Dict, Iterator, List, Optional, Tuple

from .text import DataError, count_lines, line_count_error, one_line, read_lines, write_pairs

logger = logging.getLogger(__name__)

SENT_SEP = " <n> "
END_TOKENS = (".", "!", "?", "...", "'", "`", '"', "\u2019", "\u201d", ")")
URL_LISTS = {"train": "all_train.txt", "valid": "all_val.txt", "test": "all_test.txt"}
PAIR_SPLITS = {"train": ("train",), "valid": ("val", "valid", "validation"), "test": ("test",)}


def parse_story(text: str) -> Tuple[str, str]:
    """``(article, summary)`` of one ``.story`` file; summary sentences joined with `` <n> ``."""
    article: List[str] = []
    highlights: List[str] = []
    next_is_highlight = False
    for line in text.split("\n"):
        line = one_line(line)
        if not line:
            continue
        if line.startswith("@highlight"):
            next_is_highlight = True
        elif next_is_highlight:
            highlights.append(line if line.endswith(END_TOKENS) else line + " .")
            next_is_highlight = False
        else:
            article.append(line)
    return " ".join(article), SENT_SEP.join(highlights)


def url_hash(url: str) -> str:
    return hashlib.sha1(url.strip().encode("utf-8")).hexdigest()


def find_stories(story_dirs: List[str]) -> Dict[str, str]:
    """``{sha1 name: path}`` of every ``.story`` file in the given directories."""
    found = {}
    for d in story_dirs:
        if not os.path.isdir(d):
            raise DataError(f"no such directory: {d}")
        for name in os.listdir(d):
            if name.endswith(".story"):
                found[name[: -len(".story")]] = os.path.join(d, name)
    return found


def iter_split_stories(urls: List[str], stories: Dict[str, str], stats: Dict[str, int]) -> Iterator[Tuple[str, str]]:
    for url in urls:
        path = stories.get(url_hash(url))
        if path is None:
            stats["missing"] += 1
            continue
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            article, summary = parse_story(f.read())
        if not article or not summary:
            stats["empty"] += 1
            continue
        stats["kept"] += 1
        yield article, summary


def convert_stories(story_dirs: List[str], url_list_dir: str, out_dir: str) -> Dict[str, int]:
    """Write the three splits from ``.story`` files; returns the number of examples per split."""
    stories = find_stories(story_dirs)
    counts = {}
    for split, list_name in URL_LISTS.items():
        list_path = os.path.join(url_list_dir, list_name)
        if not os.path.isfile(list_path):
            raise DataError(f"no such file: {list_path}")
        urls = [u for _, u in read_lines(list_path) if u.strip()]
        stats = {"kept": 0, "missing": 0, "empty": 0}
        counts[split] = write_pairs(out_dir, split, iter_split_stories(urls, stories, stats))
        logger.info(f"[{split}] {stats['kept']} stories, {stats['missing']} listed but not found, "
                    f"{stats['empty']} without article or highlights")
    return counts


def _pair_file(input_dir: str, names: Tuple[str, ...], ext: str) -> Optional[str]:
    for name in names:
        path = os.path.join(input_dir, f"{name}.{ext}")
        if os.path.isfile(path):
            return path
    return None


def convert_pairs(input_dir: str, out_dir: str) -> Dict[str, int]:
    """Copy ``{train,val,test}.{source,target}`` to ``{train,valid,test}.{src,tgt}``."""
    counts = {}
    for split, names in PAIR_SPLITS.items():
        src, tgt = _pair_file(input_dir, names, "source"), _pair_file(input_dir, names, "target")
        if src is None and tgt is None:
            continue
        if src is None or tgt is None:
            raise DataError(f"{input_dir}: {split} has only one of .source / .target")
        n_src, n_tgt = count_lines(src), count_lines(tgt)
        if n_src != n_tgt:
            raise line_count_error(src, n_src, tgt, n_tgt)
        pairs = ((s, t) for (_, s), (_, t) in zip(read_lines(src), read_lines(tgt)))
        counts[split] = write_pairs(out_dir, split, pairs)
    if not counts:
        raise DataError(f"{input_dir}: no train/val/test .source/.target files")
    return counts


def cli_main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m preprocess.cnndm", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="form", required=True)
    s = sub.add_parser("stories", help="original .story files + URL lists")
    s.add_argument("--stories", nargs="+", required=True, metavar="DIR", help="directories of .story files")
    s.add_argument("--url-lists", required=True, metavar="DIR", help="directory with all_{train,val,test}.txt")
    s.add_argument("--out", required=True, metavar="DIR")
    q = sub.add_parser("pairs", help="{train,val,test}.{source,target} files")
    q.add_argument("--input", required=True, metavar="DIR")
    q.add_argument("--out", required=True, metavar="DIR")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s | %(name)s | %(message)s")
    try:
        if args.form == "stories":
            counts = convert_stories(args.stories, args.url_lists, args.out)
        else:
            counts = convert_pairs(args.input, args.out)
    except DataError as e:
        raise SystemExit(f"preprocess.cnndm: error: {e}") from None
    print(" ".join(f"{k}={v}" for k, v in counts.items()), "->", args.out)


if __name__ == "__main__":
    cli_main()

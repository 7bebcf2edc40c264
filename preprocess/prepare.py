"""``s2sft-prepare``: raw parallel text -> the checkpoint's tokenizer -> ``fairseq-preprocess``.

Usage mirrors ``fairseq-preprocess``::

    s2sft-prepare --pretrained CKPT_DIR --source-lang src --target-lang tgt \\
        --trainpref raw/train --validpref raw/valid --testpref raw/test \\
        --destdir data-bin/xsum --workers 2

reads ``raw/train.src`` / ``raw/train.tgt`` (etc.), or with ``--jsonl`` the files ``raw/train.jsonl``
(``raw/train.json``, or exactly the path given) with ``--source-field`` / ``--target-field``
(default ``src`` / ``tgt``: s2s-ft's own data files are read as they are). Each side is tokenized
with the checkpoint's tokenizer (:func:`s2sft_fairseq.checkpoints.tokenizers.load_checkpoint_tokenizer`,
``tokenizer.tokenize``, nothing truncated unless ``--max-tokens-per-line`` is set), written
space-separated, and binarized by fairseq's own preprocessing with the checkpoint's dictionary
(see :mod:`preprocess.binarize`). The data directory also gets ``pretrained.json`` recording the
checkpoint's tokenizer directory, which the task uses for detokenization.

s2s-ft's pre-tokenized JSON (the fields are lists of word pieces) is detected per example, as
the s2s-ft code does, by the type of the source field; its pieces are used as they are (the
target must then be a list too). A piece the checkpoint's vocabulary lacks is an error naming
file, line and piece (``--unknown-pieces unk`` maps it to the unknown token and counts it, which
is what the s2s-ft code does silently).

Bad input (see :mod:`preprocess.text`): different line counts, invalid UTF-8 and malformed JSON
are one-line errors naming the file (and line); pairs with an empty side are skipped and counted
(``--strict-empty`` makes them errors).
"""
import argparse
import json
import logging
import os
import shutil
import tempfile
from typing import Dict, Iterator, List, Optional, Tuple

from tqdm import tqdm

from .binarize import TASK
from .text import (
    DataError,
    Example,
    PairStats,
    count_lines,
    line_count_error,
    pair_lines,
    pair_one,
    read_jsonl,
    read_lines,
)

logger = logging.getLogger("s2sft.prepare")

SPLITS = ("train", "valid", "test")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="s2sft-prepare",
        description="Tokenize raw parallel text with a checkpoint's tokenizer and binarize it for fairseq.",
    )
    p.add_argument("--pretrained", required=True, metavar="DIR",
                   help="checkpoint directory with the tokenizer files and config.json (Hugging Face or "
                        "s2s-ft's; an s2s-ft .bin file stands for its directory), or a hub name (org/name) "
                        "already in the local Hugging Face cache")
    p.add_argument("-s", "--source-lang", default="src", help="source file suffix (default: src)")
    p.add_argument("-t", "--target-lang", default="tgt", help="target file suffix (default: tgt)")
    p.add_argument("--trainpref", metavar="FP", help="train file prefix (or .jsonl file with --jsonl)")
    p.add_argument("--validpref", metavar="FP", help="comma separated valid file prefixes")
    p.add_argument("--testpref", metavar="FP", help="comma separated test file prefixes")
    p.add_argument("--destdir", required=True, metavar="DIR", help="destination data directory")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="fairseq-preprocess workers")
    p.add_argument("--jsonl", action="store_true",
                   help="inputs are JSON lines with named fields (s2s-ft's data files: text, or lists of word "
                        "pieces = pre-tokenized)")
    p.add_argument("--source-field", default="src", help="JSON field of the source (default: src)")
    p.add_argument("--target-field", default="tgt", help="JSON field of the target (default: tgt)")
    p.add_argument("--unknown-pieces", choices=("error", "unk"), default="error",
                   help="pre-tokenized JSON: a word piece not in the checkpoint's vocabulary is an error naming "
                        "file:line:piece (default), or becomes the unknown token and is counted (unk, as s2s-ft)")
    p.add_argument("--max-tokens-per-line", type=int, default=0, metavar="N",
                   help="truncate each side to N tokens (0 = unlimited; truncations are counted)")
    p.add_argument("--strict-empty", action="store_true",
                   help="an empty source or target line is an error (default: skip the pair and count it)")
    p.add_argument("--keep-tokenized", action="store_true",
                   help="keep the tokenized text files in DESTDIR/tokenized/")
    return p


# ---------------------------------------------------------------------------------------------
# input


def split_prefixes(args) -> List[Tuple[str, str]]:
    """``[(output_name, input_prefix)]`` in fairseq's naming: train, valid, valid1, ..., test, ..."""
    out = []
    for split in SPLITS:
        value = getattr(args, f"{split}pref")
        if not value:
            continue
        prefixes = [value] if split == "train" else value.split(",")
        for k, prefix in enumerate(prefixes):
            out.append((split if k == 0 else f"{split}{k}", prefix))
    if not out:
        raise DataError("nothing to do: give at least one of --trainpref, --validpref, --testpref")
    return out


def _existing(path: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path}")
    return path


def jsonl_path(prefix: str) -> str:
    """``prefix`` itself if it is a file, else ``prefix.jsonl``, else ``prefix.json`` (s2s-ft's name)."""
    if os.path.isfile(prefix):
        return prefix
    if os.path.isfile(prefix + ".json") and not os.path.isfile(prefix + ".jsonl"):
        return prefix + ".json"
    return _existing(prefix + ".jsonl")


def read_examples(args, prefix: str, stats: PairStats) -> Tuple[Iterator[Example], int]:
    """The cleaned pairs of one split and the number of input records (for the progress bar)."""
    if args.jsonl:
        path = jsonl_path(prefix)
        return _pair_jsonl(path, args, stats), count_lines(path)
    src_path = _existing(f"{prefix}.{args.source_lang}")
    tgt_path = _existing(f"{prefix}.{args.target_lang}")
    n_src, n_tgt = count_lines(src_path), count_lines(tgt_path)
    if n_src != n_tgt:
        raise line_count_error(src_path, n_src, tgt_path, n_tgt)
    pairs = pair_lines(read_lines(src_path), read_lines(tgt_path), src_path, tgt_path, stats, args.strict_empty)
    return pairs, n_src


def _pair_jsonl(path: str, args, stats: PairStats) -> Iterator[Example]:
    """JSON records carry both sides on one line, so they can never drift apart. A source given as a
    list of word pieces makes the example pre-tokenized (s2s-ft's rule); its target must be one too."""
    fields = [args.source_field, args.target_field]
    for lineno, (src, tgt) in read_jsonl(path, fields, pieces=True):
        if isinstance(src, list) != isinstance(tgt, list):
            kind = {True: "a list of word pieces", False: "text"}
            raise DataError(f"{path}:{lineno}: field {fields[0]!r} is {kind[isinstance(src, list)]} but field "
                            f"{fields[1]!r} is {kind[isinstance(tgt, list)]}; s2s-ft's data files give both as text "
                            "or both as word pieces (pre-tokenized)")
        stats.total += 1
        stats.pretokenized += isinstance(src, list)
        example = pair_one((lineno, src), (lineno, tgt), path, path, stats, args.strict_empty)
        if example is not None:
            yield example


# ---------------------------------------------------------------------------------------------
# tokenization


NO_LIMIT = 10 ** 12  # tokenizer model_max_length: we truncate ourselves


def resolve_pretrained(pretrained: str) -> str:
    """``pretrained`` itself, or the local cache snapshot of a hub name ``org/name``
    (:mod:`s2sft_fairseq.checkpoints.hub_names`; nothing is downloaded)."""
    from s2sft_fairseq.checkpoints.common import CheckpointError
    from s2sft_fairseq.checkpoints.hub_names import resolve_pretrained_path
    try:
        return resolve_pretrained_path(pretrained)
    except CheckpointError as e:
        raise DataError(f"--pretrained: {e}") from None


def tokenizer_dir(pretrained: str) -> str:
    """The directory holding a checkpoint's tokenizer: ``pretrained`` itself, the directory of an
    s2s-ft ``.bin`` file, or the cached snapshot of a hub name (:func:`resolve_pretrained`)."""
    pretrained = resolve_pretrained(pretrained)
    if os.path.isfile(pretrained) and pretrained.endswith(".bin"):
        return os.path.dirname(os.path.abspath(pretrained))
    if not os.path.isdir(pretrained):
        raise DataError(f"--pretrained {pretrained}: not a directory (or an s2s-ft .bin file)")
    return pretrained


def load_tokenizer(pretrained: str):
    """The checkpoint's tokenizer and its embedding row count (``config.json`` ``vocab_size``)."""
    from s2sft_fairseq.checkpoints.tokenizers import load_checkpoint_tokenizer

    folder = tokenizer_dir(pretrained)
    # model_max_length: lines are truncated later, to --max-source/target-positions; the
    # tokenizer's own "longer than 512" warning would be misleading
    tokenizer = load_checkpoint_tokenizer(folder, model_max_length=NO_LIMIT)
    num_embeddings = None
    config = os.path.join(folder, "config.json")
    if os.path.isfile(config):
        with open(config, "r", encoding="utf-8") as f:
            num_embeddings = json.load(f).get("vocab_size")
    return tokenizer, num_embeddings


def tokenize_line(tokenizer, text: str, max_tokens: int) -> Tuple[str, bool]:
    """Space-separated tokens of ``text`` and whether they were truncated to ``max_tokens``."""
    tokens = tokenizer.tokenize(text)
    truncated = 0 < max_tokens < len(tokens)
    if truncated:
        tokens = tokens[:max_tokens]
    line = " ".join(tokens)
    if len(line.split()) != len(tokens):  # a token with white space inside would split in two
        unk = tokenizer.unk_token
        line = " ".join(unk if (not tok or any(c.isspace() for c in tok)) else tok for tok in tokens)
    return line, truncated


def pieces_line(pieces: List[str], vocab, unk: str, where: str, field: str, args, stats: PairStats) -> Tuple[str, bool]:
    """Pre-tokenized word pieces, used as they are: space-separated, and whether they were
    truncated to ``--max-tokens-per-line``. A piece not in ``vocab`` (white space inside never is)
    is an error, or with ``--unknown-pieces unk`` the unknown token (counted)."""
    out = []
    for i, piece in enumerate(pieces):
        if piece not in vocab or not piece or any(c.isspace() for c in piece):
            if args.unknown_pieces != "unk":
                raise DataError(f"{where}: word piece {piece!r} (item {i + 1} of field {field!r}) is not in the "
                                "checkpoint's vocabulary; was the file tokenized with another vocabulary or casing? "
                                "(--unknown-pieces unk maps such pieces to the unknown token, as the s2s-ft code does)")
            stats.unknown_pieces += 1
            piece = unk
        out.append(piece)
    truncated = 0 < args.max_tokens_per_line < len(out)
    return " ".join(out[: args.max_tokens_per_line] if truncated else out), truncated


def tokenize_split(examples: Iterator[Example], total: int, tokenizer, out_prefix: str, args,
                   stats: PairStats, desc: str) -> None:
    """Write ``out_prefix.<src-lang>`` / ``.<tgt-lang>`` with one tokenized example a line."""
    langs = (args.source_lang, args.target_lang)
    stats.truncated = {lang: 0 for lang in langs}
    vocab = None
    fields = (args.source_field, args.target_field)

    def tokens(text, where, field):
        nonlocal vocab
        if not isinstance(text, list):
            return tokenize_line(tokenizer, text, args.max_tokens_per_line)
        if vocab is None:
            vocab = tokenizer.get_vocab()
        return pieces_line(text, vocab, tokenizer.unk_token, where, field, args, stats)

    with open(f"{out_prefix}.{langs[0]}", "w", encoding="utf-8") as fs, \
            open(f"{out_prefix}.{langs[1]}", "w", encoding="utf-8") as ft:
        for ex in tqdm(examples, total=total, desc=desc, unit=" pairs", mininterval=1.0):
            src, src_cut = tokens(ex.src, ex.src_where, fields[0])
            tgt, tgt_cut = tokens(ex.tgt, ex.tgt_where, fields[1])
            if not src or not tgt:  # e.g. only characters the tokenizer drops
                stats.kept -= 1
                stats.skipped_no_tokens += 1
                continue
            stats.truncated[langs[0]] += src_cut
            stats.truncated[langs[1]] += tgt_cut
            fs.write(src + "\n")
            ft.write(tgt + "\n")


# ---------------------------------------------------------------------------------------------
# main


def check_inputs(args, splits: List[Tuple[str, str]]) -> None:
    """Fail early, before anything heavy is loaded, on missing files and line-count mismatches."""
    for _, prefix in splits:
        if args.jsonl:
            jsonl_path(prefix)
            continue
        src_path = _existing(f"{prefix}.{args.source_lang}")
        tgt_path = _existing(f"{prefix}.{args.target_lang}")
        n_src, n_tgt = count_lines(src_path), count_lines(tgt_path)
        if n_src != n_tgt:
            raise line_count_error(src_path, n_src, tgt_path, n_tgt)


def prepare(args, task: str = TASK) -> Dict[str, PairStats]:
    """Tokenize every split, binarize with fairseq-preprocess, check the dictionaries; return stats."""
    if args.source_lang == args.target_lang:
        raise DataError("--source-lang and --target-lang must differ (they name the files)")
    splits = split_prefixes(args)
    check_inputs(args, splits)
    # torch / fairseq / transformers are imported only once the inputs look sane.
    from s2sft_fairseq.checkpoints.vocab import dictionary_from_tokenizer

    from .binarize import check_saved_dictionary, preprocess_args, register_plugin, run_fairseq_preprocess

    tokenizer, num_embeddings = load_tokenizer(args.pretrained)
    dictionary = dictionary_from_tokenizer(tokenizer, num_embeddings=num_embeddings)
    os.makedirs(args.destdir, exist_ok=True)
    if args.keep_tokenized:
        tok_dir = os.path.join(args.destdir, "tokenized")
        os.makedirs(tok_dir, exist_ok=True)
    else:
        tok_dir = tempfile.mkdtemp(prefix=".tokenized-", dir=args.destdir)
    try:
        dict_path = os.path.join(tok_dir, "dict.txt")
        dictionary.save(dict_path)
        all_stats: Dict[str, PairStats] = {}
        for name, prefix in splits:
            stats = PairStats()
            examples, total = read_examples(args, prefix, stats)
            tokenize_split(examples, total, tokenizer, os.path.join(tok_dir, name), args, stats, desc=name)
            if stats.kept == 0:
                raise DataError(f"{prefix}: no usable pairs ({stats.summary()})")
            logger.info(f"[{name}] {prefix}: {stats.summary()}")
            all_stats[name] = stats

        def joined(split):
            names = [n for n, _ in splits if n.rstrip("0123456789") == split]
            return ",".join(os.path.join(tok_dir, n) for n in names) or None

        register_plugin()
        fargs = preprocess_args(
            args.destdir, dict_path, args.source_lang, args.target_lang,
            joined("train"), joined("valid"), joined("test"), args.workers, task=task,
        )
        run_fairseq_preprocess(fargs)
    finally:
        if not args.keep_tokenized:
            shutil.rmtree(tok_dir, ignore_errors=True)
    for lang in (args.source_lang, args.target_lang):
        check_saved_dictionary(os.path.join(args.destdir, f"dict.{lang}.txt"), dictionary)
    write_pretrained_json(args, tokenizer)
    return all_stats


def write_pretrained_json(args, tokenizer) -> None:
    info = {
        "pretrained": os.path.abspath(tokenizer_dir(args.pretrained)),
        "tokenizer": type(tokenizer).__name__,
        "source_lang": args.source_lang,
        "target_lang": args.target_lang,
    }
    if info["pretrained"] != os.path.abspath(args.pretrained) and not os.path.exists(args.pretrained):
        info["hub_name"] = args.pretrained  # resolved to its cached snapshot
    with open(os.path.join(args.destdir, "pretrained.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")


def cli_main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        all_stats = prepare(args)
    except DataError as e:
        raise SystemExit(f"s2sft-prepare: error: {e}") from None
    except Exception as e:  # the plugin's input errors, e.g. a tokenizer larger than the checkpoint's embedding
        from s2sft_fairseq.errors import user_error_line
        line = user_error_line(e)
        if line is None:
            raise
        raise SystemExit(f"s2sft-prepare: error: {line}") from None
    for name, stats in all_stats.items():
        print(f"[{name}] {stats.summary()}")
    print(f"wrote {os.path.abspath(args.destdir)}")


if __name__ == "__main__":
    cli_main()

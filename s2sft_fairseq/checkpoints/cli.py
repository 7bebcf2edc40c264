"""``s2sft-import``: inspect a pretrained checkpoint and export its fairseq dictionary.

::

    s2sft-import --pretrained DIR --inspect                 # family, sizes, MLM head, importer notes
    s2sft-import --pretrained DIR --export-dict OUT/dict.txt
    s2sft-import --pretrained DIR --check-dict DATA/dict.src.txt

``DIR`` is anything ``--pretrained-checkpoint`` accepts: a Hugging Face directory or a fairseq
RoBERTa / XLM-R ``model.pt`` (+ ``dict.txt``). The exported dictionary lists the checkpoint's
vocabulary row for row (README, 'Supported checkpoints'); hand it to ``fairseq-preprocess --srcdict/--tgtdict``
(``s2sft-prepare`` does that for you). Exit status 1 with a one-line message on a checkpoint or
dictionary error.
"""
import argparse
import logging
import os
import sys

from .common import CheckpointError, expected_shapes
from .formats import load_pretrained
from .vocab import VocabularyMismatchError, check_dictionary_matches, load_task_dictionary


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s2sft-import", description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", required=True, metavar="DIR",
                   help="Hugging Face checkpoint directory, or fairseq RoBERTa/XLM-R model.pt (or its directory)")
    p.add_argument("--inspect", action="store_true",
                   help="print the family, sizes, whether an MLM head exists, and the importer's notes")
    p.add_argument("--export-dict", metavar="FILE", help="write the checkpoint's dictionary (dict.txt) here")
    p.add_argument("--check-dict", metavar="FILE",
                   help="check that a data directory's dictionary matches the checkpoint row for row")
    return p


def describe(ck) -> str:
    c = ck.config
    d = ck.dictionary
    n_params = sum(_numel(shape) for shape in expected_shapes(c).values())
    lines = [
        f"checkpoint:   {ck.path}",
        f"weights:      {ck.weights_file or ck.path}",
        f"family:       {ck.family}",
        f"layers:       {c.num_layers}",
        f"hidden:       {c.hidden_size} ({c.num_heads} heads, feed-forward {c.intermediate_size}, {c.hidden_act})",
        f"embeddings:   {c.embed_dim}" + (" (projected to the hidden size)" if c.embed_dim != c.hidden_size else ""),
        f"vocabulary:   {c.vocab_size} rows",
        f"positions:    {c.max_positions}",
        f"token types:  {c.type_vocab_size}",
        f"parameters:   {n_params:,} (with the MLM head)",
        f"MLM head:     {'yes' if ck.has_lm_head else 'no (the head transform starts fresh, output tied to the word embeddings)'}",
        f"specials:     bos={d[d.bos()]} eos={d[d.eos()]} pad={d[d.pad()]} unk={d[d.unk()]} mask={d[d.mask()]}",
    ]
    notes = list(ck.notes) or ["(none)"]
    lines.append("notes:        " + notes[0])
    lines += ["              " + n for n in notes[1:]]
    return "\n".join(lines)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def cli_main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s | %(name)s | %(message)s")
    args = get_parser().parse_args(argv)
    if not (args.inspect or args.export_dict or args.check_dict):
        args.inspect = True
    try:
        ck = load_pretrained(args.pretrained)
        if args.inspect:
            print(describe(ck))
        if args.export_dict:
            ck.dictionary.save(args.export_dict)
            print(f"wrote {len(ck.dictionary)} rows to {os.path.abspath(args.export_dict)}")
        if args.check_dict:
            check_dictionary_matches(load_task_dictionary(args.check_dict), ck.dictionary,
                                     where=f"{args.check_dict} vs {ck.path}")
            print(f"{args.check_dict}: matches the checkpoint ({len(ck.dictionary)} rows)")
    except (CheckpointError, VocabularyMismatchError, OSError) as e:
        print(f"s2sft-import: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())

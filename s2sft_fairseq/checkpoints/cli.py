"""``s2sft-import``: inspect a pretrained checkpoint, export its fairseq dictionary, or save it as a
fairseq checkpoint.

::

    s2sft-import --pretrained DIR --inspect                 # family, sizes, positions, segments, notes, skipped tensors
    s2sft-import --pretrained DIR --list-tensors            # every tensor of the file: what it became, or why skipped
    s2sft-import --pretrained DIR --export-dict OUT/dict.txt
    s2sft-import --pretrained DIR --check-dict DATA/dict.src.txt
    s2sft-import --pretrained DIR --to-fairseq-checkpoint OUT.pt --ft-method pseudo_masked \
        --max-source-positions 464 --max-target-positions 48   # decode with fairseq-generate --path OUT.pt

``DIR`` is anything ``--pretrained-checkpoint`` accepts: a Hugging Face directory, s2s-ft's own
files (``pytorch_model.bin`` or a named ``.bin`` with ``config.json`` + ``vocab.txt``), a fairseq
RoBERTa / XLM-R ``model.pt`` (+ ``dict.txt``), or a hub name in the local Hugging Face cache. The
exported dictionary lists the checkpoint's vocabulary row for row (README, 'Supported checkpoints'); hand it to ``fairseq-preprocess --srcdict/--tgtdict``
(``s2sft-prepare`` does that for you). ``--to-fairseq-checkpoint`` is :mod:`.to_fairseq` (a
published fine-tuned model, decoded without training). Exit status 1 with a one-line message on
a checkpoint or dictionary error.
"""
import argparse
import logging
import os
import sys

from ..errors import S2SFTError
from .common import expected_shapes
from .formats import load_pretrained
from .vocab import check_dictionary_matches, load_task_dictionary

METHODS = ("causal", "masked", "pseudo_masked")  # packing.METHOD_NAMES, without importing the model code


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s2sft-import", description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrained", required=True, metavar="DIR",
                   help="Hugging Face checkpoint directory, s2s-ft's files (a directory with pytorch_model.bin, "
                        "config.json and vocab.txt, or a named .bin file in one), fairseq RoBERTa/XLM-R model.pt "
                        "(or its directory), or a hub name (org/name) already in the local Hugging Face cache")
    p.add_argument("--inspect", action="store_true",
                   help="print the family, sizes, positions (relative position bias), segment ids, whether an MLM "
                        "head exists, the importer's notes and the tensors it skipped")
    p.add_argument("--list-tensors", action="store_true",
                   help="print every tensor of the checkpoint file and the stack parameter(s) it became, or why it "
                        "is skipped")
    p.add_argument("--export-dict", metavar="FILE", help="write the checkpoint's dictionary (dict.txt) here")
    p.add_argument("--check-dict", metavar="FILE",
                   help="check that a data directory's dictionary matches the checkpoint row for row")
    g = p.add_argument_group("fairseq checkpoint (decode a fine-tuned model without training)")
    g.add_argument("--to-fairseq-checkpoint", metavar="OUT.pt",
                   help="save the unilm_seq2seq model built from the checkpoint (zero updates) as a fairseq "
                        "checkpoint for fairseq-generate / fairseq-interactive --path")
    g.add_argument("--ft-method", choices=METHODS, default="pseudo_masked",
                   help="how the model decodes: pseudo_masked / masked feed a [MASK] slot (s2s-ft's v2 / v1 "
                        "models), causal its own next-token slot (default: pseudo_masked)")
    g.add_argument("--corruption", choices=("paper", "reference"), default="paper",
                   help="recorded in the model; with --ft-method causal, reference = s2s-ft's v0 pos_shift layout")
    g.add_argument("--max-source-positions", type=int, default=464, metavar="N",
                   help="source length incl. [CLS]/[SEP] (default 464, s2s-ft's)")
    g.add_argument("--max-target-positions", type=int, default=48, metavar="N",
                   help="target length incl. the final [SEP] (default 48, s2s-ft's)")
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
        f"token types:  {c.type_vocab_size}" + (f" (segment ids: source {c.source_type_id}, target "
                                                f"{c.target_type_id})" if c.uses_token_types else " (no segment ids)"),
        "rel. bias:    " + (f"{c.rel_pos_bins} buckets, max distance {c.max_rel_pos}, one table shared by all "
                            f"layers ({ck.source('rel_pos_bias.weight')})" if c.rel_pos_bins
                            else "none (absolute positions only)"),
        f"parameters:   {n_params:,} (with the MLM head)",
        f"MLM head:     {'yes' if ck.has_lm_head else 'no (the head transform starts fresh, output tied to the word embeddings)'}",
        f"specials:     bos={d[d.bos()]} eos={d[d.eos()]} pad={d[d.pad()]} unk={d[d.unk()]} mask={d[d.mask()]}",
    ]
    notes = list(ck.notes) or ["(none)"]
    lines.append("notes:        " + notes[0])
    lines += ["              " + n for n in notes[1:]]
    skipped = [f"{key}: {why}" for key, why in ck.skipped.items()] or ["(none)"]
    lines.append(f"tensors:      {len(ck.consumed)} consumed, {len(ck.skipped)} skipped (--list-tensors lists all)")
    lines.append("skipped:      " + skipped[0])
    lines += ["              " + n for n in skipped[1:]]
    return "\n".join(lines)


def list_tensors(ck) -> str:
    """Every tensor of the checkpoint file: ``name -> stack parameter(s)`` or ``name: skipped: why``."""
    rows = ck.key_report()
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k.ljust(width)}  {'' if v.startswith('skipped:') else '-> '}{v}" for k, v in rows)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def cli_main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s | %(name)s | %(message)s")
    args = get_parser().parse_args(argv)
    if not (args.inspect or args.export_dict or args.check_dict or args.list_tensors or args.to_fairseq_checkpoint):
        args.inspect = True
    try:
        ck = load_pretrained(args.pretrained)
        if args.inspect:
            print(describe(ck))
        if args.list_tensors:
            print(list_tensors(ck))
        if args.export_dict:
            ck.dictionary.save(args.export_dict)
            print(f"wrote {len(ck.dictionary)} rows to {os.path.abspath(args.export_dict)}")
        if args.check_dict:
            check_dictionary_matches(load_task_dictionary(args.check_dict), ck.dictionary,
                                     where=f"{args.check_dict} vs {ck.path}")
            print(f"{args.check_dict}: matches the checkpoint ({len(ck.dictionary)} rows)")
        if args.to_fairseq_checkpoint:
            from .to_fairseq import write_fairseq_checkpoint
            logging.getLogger("s2sft_fairseq").setLevel(logging.INFO)
            model = write_fairseq_checkpoint(args.pretrained, args.to_fairseq_checkpoint, args.ft_method,
                                             args.corruption, args.max_source_positions, args.max_target_positions)
            print(f"wrote {os.path.abspath(args.to_fairseq_checkpoint)}: unilm_seq2seq, --ft-method {args.ft_method}, "
                  f"{model.stack.cfg.max_positions} positions; decode with fairseq-generate DATA --user-dir "
                  f"s2sft_fairseq --task pseudo_masked_lm --path {args.to_fairseq_checkpoint}")
    except (S2SFTError, OSError) as e:
        print(f"s2sft-import: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())

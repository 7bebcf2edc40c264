"""``s2sft-export``: a fine-tuned fairseq checkpoint -> a Hugging Face directory.

::

    s2sft-export checkpoints/wordnet/checkpoint_best.pt --out hf/wordnet [--scores results.json]

``unilm_seq2seq`` becomes the family's masked-LM directory (``BertForMaskedLM`` & co. load it)
plus ``modeling_s2sft.py`` (``AutoModel.from_pretrained(DIR, trust_remote_code=True).generate``);
``bert2bert`` / BERTShare a stock ``EncoderDecoderModel``. Both come with the tokenizer files and
a model card (README.md). The export is written into a temporary directory next to ``--out`` and
moved into place when complete. Exit status 1 with a one-line message on bad input.
"""
import argparse
import logging
import os
import shutil
import sys
import tempfile

from ..errors import S2SFTError
from .model_card import read_scores, write_model_card
from .trained import ExportError, read_checkpoint

MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s2sft-export", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint_*.pt written by fairseq-train with this plugin")
    p.add_argument("--out", required=True, metavar="DIR", help="the Hugging Face directory to write")
    p.add_argument("--scores", metavar="JSON", help="scores to put in the model card (e.g. s2sft-score --json output)")
    p.add_argument("--tokenizer", metavar="DIR", default="",
                   help="the Hugging Face tokenizer the data was prepared with (default: the one the checkpoint "
                        "records: task tokenizer_dir, DATA/pretrained.json or the pretrained checkpoint)")
    p.add_argument("--model-type", choices=MODEL_TYPES, default="",
                   help="the model family (default: the tokenizer directory's config.json)")
    p.add_argument("--data", metavar="DIR", default="",
                   help="the binarized data directory, if it moved since training (its dictionary is checked "
                        "against the tokenizer, its split sizes go into the model card)")
    p.add_argument("--force", action="store_true", help="write into DIR even if it is not empty (files of the same "
                                                        "name are replaced, others kept)")
    return p


def _check_out(out: str, force: bool) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError(f"--out {out}: exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise ExportError(f"--out {out}: the directory exists and is not empty; use --force to write into it")


def _usual_permissions(folder: str) -> None:
    """mkdtemp makes a private directory: give it and its files the permissions of a new directory."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


def export(checkpoint: str, out: str, scores: str = "", tokenizer: str = "", model_type: str = "",
           data: str = "", force: bool = False) -> str:
    """Export ``checkpoint`` into the directory ``out`` (see the module docstring); returns ``out``."""
    from .encoder_decoder import export_encoder_decoder
    from .unilm import export_unilm
    _check_out(out, force)
    score_table = read_scores(scores) if scores else None
    ck = read_checkpoint(checkpoint, tokenizer_dir=tokenizer, model_type=model_type, data=data)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".s2sft-export-", dir=parent)
    try:
        summary = (export_unilm if ck.model_name == "unilm_seq2seq" else export_encoder_decoder)(ck, staging)
        ck.tokenizer.save_pretrained(staging)
        write_model_card(ck, staging, summary, score_table, scores)
        _usual_permissions(staging)
        if not os.path.exists(out):
            os.replace(staging, out)
        else:
            for name in os.listdir(staging):
                target = os.path.join(out, name)
                if os.path.isdir(target):
                    shutil.rmtree(target)
                os.replace(os.path.join(staging, name), target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def cli_main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s | %(name)s | %(message)s")
    args = get_parser().parse_args(argv)
    try:
        out = export(args.checkpoint, args.out, scores=args.scores, tokenizer=args.tokenizer,
                     model_type=args.model_type, data=args.data, force=args.force)
    except (S2SFTError, OSError) as e:
        print(f"s2sft-export: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    print(f"s2sft-export: wrote {os.path.abspath(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())

"""``s2sft-score``: score generated text against references.

    s2sft-score --task summarization --hyp gen.txt --ref test.tgt [--lang zh] [--json]
    s2sft-score --task qg --generate-output gen.out --ref test.tgt
    s2sft-score --task bleu --hyp gen.txt --ref test.tgt --tokenize 13a

See :mod:`s2sft_fairseq.scoring.metrics` for what each task computes and
:mod:`s2sft_fairseq.scoring.inputs` for the accepted inputs. With ``--generate-output`` the
references come from ``--ref`` when given, else from the output's own ``T-`` lines.
"""
import argparse
import json
import sys
from typing import Dict, List, Optional

from . import metrics
from .inputs import ScoringInputError, parse_generate_output, read_text

TASKS = ("summarization", "qg", "bleu")
BLEU_TOKENIZERS = ("13a", "none", "zh", "intl", "char", "ja-mecab", "ko-mecab", "spm", "flores101", "flores200")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s2sft-score", description="Score generated text (ROUGE, QG metrics, BLEU).")
    p.add_argument("--task", required=True, choices=TASKS,
                   help="summarization: ROUGE-1/2/L/Lsum F1; qg: BLEU-4/METEOR/ROUGE-L (pycocoevalcap); "
                        "bleu: sacrebleu")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--hyp", metavar="FILE", help="hypotheses, one per line")
    src.add_argument("--generate-output", metavar="FILE", help="fairseq-generate output (D-/H-/T- lines)")
    p.add_argument("--ref", metavar="FILE", help="references, one per line (optional with --generate-output)")
    p.add_argument("--lang", default="en",
                   help="summarization: 'en' (stemmed), 'zh'/'ja'/'ko' (CJK characters), other (Unicode words); "
                        "qg: 'zh'/'ja'/'ko' split CJK text into characters")
    p.add_argument("--tokenize", default="13a", choices=BLEU_TOKENIZERS,
                   help="bleu: sacrebleu tokenizer (default: 13a)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def load_inputs(args):
    """(hyps, refs, hyp_name, ref_name) after checking that the counts agree."""
    if args.generate_output:
        hyps, gen_refs = parse_generate_output(args.generate_output)
        hyp_name = args.generate_output
        if args.ref:
            refs, ref_name = read_text(args.ref), args.ref
        elif gen_refs is not None:
            refs, ref_name = gen_refs, f"{args.generate_output} (T- lines)"
        else:
            raise ScoringInputError(f"{args.generate_output} has no T- lines; give the references with --ref")
    else:
        if not args.ref:
            raise ScoringInputError("--hyp needs --ref")
        hyps, hyp_name = read_text(args.hyp), args.hyp
        refs, ref_name = read_text(args.ref), args.ref
    if len(hyps) != len(refs):
        raise ScoringInputError(
            f"hypotheses and references differ in number: {hyp_name} has {len(hyps)}, {ref_name} has {len(refs)}"
        )
    if not hyps:
        raise ScoringInputError(f"{hyp_name} is empty")
    return hyps, refs


def score(task: str, hyps: List[str], refs: List[str], lang: str = "en", tokenize: str = "13a") -> Dict[str, float]:
    if task == "summarization":
        return metrics.rouge(hyps, refs, lang=lang)
    if task == "qg":
        return metrics.qg_metrics(hyps, refs, lang=lang)
    return metrics.bleu(hyps, refs, tokenize=tokenize)


def format_table(results: Dict[str, float], n: int) -> str:
    width = max(len(k) for k in results)
    lines = [f"{'metric':<{width}}  score", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v:6.2f}" for k, v in results.items()]
    lines.append(f"({n} examples)")
    return "\n".join(lines)


def cli_main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        hyps, refs = load_inputs(args)
        results = score(args.task, hyps, refs, lang=args.lang, tokenize=args.tokenize)
    except (ScoringInputError, ValueError) as e:
        raise SystemExit(f"s2sft-score: error: {e}") from None
    if args.json:
        print(json.dumps({k: round(v, 4) for k, v in results.items()}))
    else:
        print(format_table(results, len(hyps)))
    sys.stdout.flush()


if __name__ == "__main__":
    cli_main()

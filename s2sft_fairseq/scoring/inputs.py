"""Reading hypotheses and references for ``s2sft-score``.

Text files hold one example a line and are split at ``\\n`` only (a trailing ``\\r`` is dropped),
so that stray form feeds or Unicode line separators inside an example never shift the alignment.

``fairseq-generate`` output is parsed from its tab-separated lines: ``D-<id>\\t<score>\\t<text>``
(detokenized hypothesis), ``H-<id>\\t<score>\\t<text>`` (hypothesis before post-processing; used
only when there are no ``D-`` lines) and ``T-<id>\\t<text>`` (reference). Batches come out of
order, so examples are re-ordered by id; with ``--nbest`` > 1 the first (best) hypothesis of each
id is used.
"""
import re
from typing import Dict, List, Optional, Tuple


class ScoringInputError(ValueError):
    """Unreadable or mismatched inputs; ``s2sft-score`` prints it as one line."""


def read_text(path: str) -> List[str]:
    """One example per line (split at ``\\n`` only; no trailing empty example after a final newline)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ScoringInputError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise ScoringInputError(f"{path}:{lineno}: invalid UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


_GEN_LINE = re.compile(r"^([DHT])-(\d+)\t(.*)$")


def parse_generate_output(path: str) -> Tuple[List[str], Optional[List[str]]]:
    """Hypotheses (ordered by sample id) and references (``T-`` lines, or ``None`` if absent)."""
    found: Dict[str, Dict[int, str]] = {"D": {}, "H": {}, "T": {}}
    for lineno, line in enumerate(read_text(path), start=1):
        m = _GEN_LINE.match(line)
        if not m:
            continue
        kind, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind in "DH":
            parts = rest.split("\t", 1)
            if len(parts) != 2:
                raise ScoringInputError(f"{path}:{lineno}: expected '{kind}-<id>\\t<score>\\t<text>'")
            try:
                float(parts[0])
            except ValueError:
                raise ScoringInputError(f"{path}:{lineno}: score {parts[0]!r} is not a number") from None
            text = parts[1]
        else:
            text = rest
        found[kind].setdefault(idx, text)  # first = best of an n-best list
    hyp_kind = "D" if found["D"] else "H"
    hyps_by_id = found[hyp_kind]
    if not hyps_by_id:
        raise ScoringInputError(f"{path}: no D-<id> or H-<id> lines (is this fairseq-generate output?)")
    ids = sorted(hyps_by_id)
    if ids != list(range(len(ids))):
        missing = sorted(set(range(ids[-1] + 1)) - set(ids))
        raise ScoringInputError(
            f"{path}: hypothesis ids are not 0..{len(ids) - 1} (missing e.g. {missing[:5]}); "
            "was the output cut short?"
        )
    hyps = [hyps_by_id[i] for i in ids]
    refs = None
    if found["T"]:
        if sorted(found["T"]) != ids:
            raise ScoringInputError(f"{path}: T- lines do not cover the same ids as the {hyp_kind}- lines")
        refs = [found["T"][i] for i in ids]
    return hyps, refs

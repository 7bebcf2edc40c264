"""Reading and pairing raw parallel text, shared by ``s2sft-prepare`` and the converters.

Rules (they exist so that a bad corpus never silently shifts the source/target pairing; README
"What happens with bad input"):

* A *line* ends at ``\\n`` only (a trailing ``\\r`` is dropped). ``str.splitlines`` is never used:
  it also splits at ``\\x0b``, ``\\x0c``, ``\\x1c-\\x1e``, ``\\x85``, ``\\u2028`` and ``\\u2029``,
  which would move every later target one line away from its source.
* Files must be UTF-8; the first invalid byte is an error naming the file and line.
* Texts are cleaned by the plugin's :func:`s2sft_fairseq.text.clean_text` (control characters,
  line/paragraph separators and lone surrogates become spaces; the ends are stripped), the same
  function fairseq-interactive input goes through. It is imported where it is first used:
  importing the plugin loads fairseq and torch, which reading and checking files does not need.
* A pair whose source or target is empty after cleaning is skipped and counted (or, in strict
  mode, is an error naming the file and line). A pair is always dropped whole.
"""
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """A problem with the user's data; the CLIs print it as one line, without a traceback."""


def one_line(text: str) -> str:
    """Clean ``text`` and collapse all white space (incl. newlines) to single spaces."""
    from s2sft_fairseq.text import clean_text
    return " ".join(clean_text(text).split())


def count_lines(path: str) -> int:
    """Number of ``\\n``-terminated lines (a last line without ``\\n`` counts too)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def read_lines(path: str) -> Iterator[Tuple[int, str]]:
    """Yield ``(line_number, text)`` (1-based), splitting at ``\\n`` only; strict UTF-8."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):  # binary iteration splits at b"\n" only
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                ) from None


def read_jsonl(path: str, fields: List[str], pieces: bool = False) -> Iterator[Tuple[int, List]]:
    """Yield ``(line_number, [value of each field])`` from a JSON-lines file (blank lines skipped).

    Values are text (numbers are read as text, null as empty); with ``pieces`` a value may also be
    a list of strings (s2s-ft's pre-tokenized form: word pieces), yielded as a list.
    """
    for lineno, line in read_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        values = []
        for name in fields:
            if name not in obj:
                raise DataError(f"{path}:{lineno}: no field {name!r} (fields: {', '.join(sorted(obj))})")
            value = obj[name]
            if value is None:
                value = ""
            if pieces and isinstance(value, list):
                bad = next((i for i, p in enumerate(value) if not isinstance(p, str)), None)
                if bad is not None:
                    raise DataError(f"{path}:{lineno}: field {name!r} is a list whose item {bad + 1} is a "
                                    f"{type(value[bad]).__name__}, not a word piece (a string)")
                values.append(value)
                continue
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                kinds = "text or a list of word pieces" if pieces else "text"
                raise DataError(f"{path}:{lineno}: field {name!r} is a {type(value).__name__}, not {kinds}")
            values.append(str(value))
        yield lineno, values


@dataclass
class PairStats:
    """What happened to the pairs of one split."""

    total: int = 0
    kept: int = 0
    skipped_empty: int = 0
    skipped_no_tokens: int = 0
    truncated: Dict[str, int] = field(default_factory=dict)
    #: pairs given as word pieces (s2s-ft's pre-tokenized JSON), and their pieces mapped to [UNK]
    pretokenized: int = 0
    unknown_pieces: int = 0

    def summary(self) -> str:
        trunc = ", ".join(f"{side} truncated: {n}" for side, n in sorted(self.truncated.items()) if n)
        no_tok = f", {self.skipped_no_tokens} skipped (no tokens)" if self.skipped_no_tokens else ""
        pieces = f", {self.pretokenized} pre-tokenized" if self.pretokenized else ""
        if self.unknown_pieces:
            pieces += f", {self.unknown_pieces} unknown word pieces mapped to the unknown token"
        return (
            f"{self.kept} of {self.total} pairs kept, {self.skipped_empty} skipped (empty source or target)"
            + no_tok
            + pieces
            + (f", {trunc}" if trunc else "")
        )


@dataclass
class Example:
    """One kept pair, with where it came from (for error messages and tests). Each side is text, or
    (s2s-ft's pre-tokenized JSON) a list of word pieces."""

    src: Union[str, List[str]]
    tgt: Union[str, List[str]]
    src_where: str
    tgt_where: str


def pair_lines(
    src_lines: Iterable[Tuple[int, str]],
    tgt_lines: Iterable[Tuple[int, str]],
    src_name: str,
    tgt_name: str,
    stats: PairStats,
    strict_empty: bool = False,
) -> Iterator[Example]:
    """Zip numbered source and target lines into cleaned pairs, skipping pairs with an empty side.

    The inputs must have the same length; a difference is an error (callers that can, check the
    counts up front with :func:`count_lines` to name both totals before any work is done).
    """
    src_it, tgt_it = iter(src_lines), iter(tgt_lines)
    while True:
        s = next(src_it, None)
        t = next(tgt_it, None)
        if s is None or t is None:
            if s is not None or t is not None:
                n_src = stats.total + (s is not None) + sum(1 for _ in src_it)
                n_tgt = stats.total + (t is not None) + sum(1 for _ in tgt_it)
                raise line_count_error(src_name, n_src, tgt_name, n_tgt)
            return
        stats.total += 1
        example = pair_one(s, t, src_name, tgt_name, stats, strict_empty)
        if example is not None:
            yield example


def pair_one(
    s: Tuple[int, str],
    t: Tuple[int, str],
    src_name: str,
    tgt_name: str,
    stats: PairStats,
    strict_empty: bool = False,
) -> Optional[Example]:
    """Clean one numbered pair; return ``None`` (and count it) when a side is empty. Word-piece
    lists are kept as they are (an empty list is an empty side)."""
    from s2sft_fairseq.text import clean_text
    (s_no, s_text), (t_no, t_text) = s, t
    src, tgt = [x if isinstance(x, list) else clean_text(x) for x in (s_text, t_text)]
    if not src or not tgt:
        where = f"{src_name}:{s_no}" if not src else f"{tgt_name}:{t_no}"
        if strict_empty:
            side = "source" if not src else "target"
            raise DataError(f"{where}: empty {side} (drop --strict-empty to skip such pairs)")
        stats.skipped_empty += 1
        return None
    stats.kept += 1
    return Example(src, tgt, f"{src_name}:{s_no}", f"{tgt_name}:{t_no}")


def line_count_error(src_name: str, n_src: int, tgt_name: str, n_tgt: int) -> DataError:
    return DataError(
        f"source and target differ in length: {src_name} has {n_src} lines, {tgt_name} has {n_tgt}"
    )


def write_pairs(out_dir: str, split: str, pairs: Iterable[Tuple[str, str]], src_ext="src", tgt_ext="tgt") -> int:
    """Write ``OUT/split.src`` and ``OUT/split.tgt`` (one cleaned example a line); return the count.

    Texts go through :func:`one_line`; a pair with an empty side is dropped whole and counted in
    the log.
    """
    os.makedirs(out_dir, exist_ok=True)
    n = skipped = 0
    with open(os.path.join(out_dir, f"{split}.{src_ext}"), "w", encoding="utf-8") as fs, open(
        os.path.join(out_dir, f"{split}.{tgt_ext}"), "w", encoding="utf-8"
    ) as ft:
        for src, tgt in pairs:
            src, tgt = one_line(src), one_line(tgt)
            if not src or not tgt:
                skipped += 1
                continue
            fs.write(src + "\n")
            ft.write(tgt + "\n")
            n += 1
    note = f" ({skipped} with an empty side skipped)" if skipped else ""
    logger.info(f"[{split}] wrote {n} pairs to {out_dir}{note}")
    return n

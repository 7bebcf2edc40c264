"""King James Version -> World English Bible verse pairs from the Debian SWORD modules.

Sources: ``sword-text-kjv`` (module ``engKJV2006eb``, versification ``KJV``) and ``sword-text-web``
(module ``engWEB2015eb``, versification ``NRSVA``), both public domain, under
``/usr/share/sword/modules/texts/ztext/<module>/``.

**Reading a zText module.** Each testament (``ot``, ``nt``) has three files: ``.bzs`` is a table
of 12-byte little-endian records (offset, compressed size, uncompressed size) locating zlib blocks
in ``.bzz``; ``.bzv`` is a table of 10-byte records (block number u32, offset u32, size u16), one
per *slot* in versification order, locating the slot's text in the decompressed block.

**Chapter boundaries without a versification table.** No versification tables are available
offline, so the chapter structure is read from the slots themselves. SWORD lays a testament out
as: module heading, testament heading, then for each book a book-heading slot and for each
chapter a chapter-heading slot followed by one slot per verse. The OSIS importer puts the
chapter's start milestone ``<chapter sID="John.11" .../>`` into that chapter-heading slot. So a
chapter's verse slots run from its heading slot to the next chapter heading (minus one slot when
that next heading is a chapter 1, whose book-heading slot precedes it), or to the end of the
testament. A slot holding several chapter milestones (the WEB module squeezes the whole Greek
Daniel into one slot) is not a chapter heading. As a cross-check, the chapter's end milestone
``<chapter eID=...>`` must fall inside the computed range; a chapter failing that is dropped.
For the KJV this yields the expected 1,189 chapters and 31,102 verse slots.

**Alignment.** Chapters are matched by OSIS id (``John.11``); a chapter is kept only when both
modules give it the same number of verse slots, and then verse *i* is paired with verse *i*. With
the installed modules exactly two chapters differ and are dropped whole: 3 John 1 (14 vs 15) and
Revelation 12 (17 vs 18: the verse the KJV numbers 13:1 is 12:18 in NRSVA). Deuterocanonical
books exist only in the WEB module and are ignored. A pair where either verse is empty after
markup removal is skipped and counted: Luke 17:36, Acts 8:37, 15:34, 24:7 (the WEB keeps them
only in footnotes) and Romans 16:25-27 (the WEB prints them after 14:23). That last move also
makes the WEB's Romans 14:23 five times longer than the KJV's, so pairs whose character lengths
differ by more than ``max_length_ratio`` (default 4) are skipped and counted as well; the next
largest ratio in the data is 3.6 (1 John 5:7, a genuine textual difference). Text that follows a
chapter's end milestone inside a verse slot is cut off (the WEB appends its glossary to
Revelation 22:21 that way).

**Markup.** Notes (``<note>…</note>``, footnotes and cross references) and editorial material
(``<title>``, ``<speaker>``, ``<rdg>``, ``<catchWord>``) are removed with their content; every
other tag (Strong's ``<w>``, ``<transChange>``, ``<divineName>``, ``<q>``, milestones) is removed
but its words are kept; entities are unescaped and white space collapsed.

**Split.** Stable by chapter: ``zlib.crc32("John.11") % 100`` < 90 train, < 95 valid, else test.
Output ``{split}.src`` (KJV), ``{split}.tgt`` (WEB) and ``{split}.ref`` (``John.11.35``).

    python -m preprocess.sword --out raw/kjv2web
"""
import argparse
import html
import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .text import DataError, one_line

logger = logging.getLogger(__name__)

SWORD_DIR = "/usr/share/sword/modules/texts/ztext"
SOURCE_MODULE = "engKJV2006eb"
TARGET_MODULE = "engWEB2015eb"
TESTAMENTS = ("ot", "nt")

_CHAPTER_START = re.compile(r'<chapter\b[^>]*\bsID="([^"]+)"')
_CHAPTER_END = re.compile(r'<chapter\b[^>]*\beID="([^"]+)"')
# Whatever follows a chapter's end milestone in a verse slot is not part of the verse (the WEB
# module appends its glossary to Revelation 22:21 that way).
_CHAPTER_END_TAIL = re.compile(r'<chapter\b[^>]*\beID="[^"]+"[^>]*/>.*', re.S)
_NOTE = re.compile(r"<note\b[^>]*(?<!/)>.*?</note>", re.S)
_EDITORIAL = re.compile(r"<(title|speaker|rdg|catchWord)\b[^>]*(?<!/)>.*?</\1>", re.S)
_TAG = re.compile(r"<[^>]*>")


@dataclass
class Chapter:
    osis_id: str  # e.g. "John.11"
    verses: List[str]  # raw slot texts, verse 1..n
    consistent: bool  # the chapter's end milestone lies inside its slot range


def read_slots(module_dir: str, testament: str) -> List[str]:
    """The text of every slot of one testament of a zText module, in versification order."""
    paths = [os.path.join(module_dir, f"{testament}.{ext}") for ext in ("bzs", "bzv", "bzz")]
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"no such file: {path} (install sword-text-kjv and sword-text-web)")
    with open(paths[0], "rb") as f:
        bzs = f.read()
    with open(paths[1], "rb") as f:
        bzv = f.read()
    with open(paths[2], "rb") as f:
        bzz = f.read()
    if len(bzs) % 12 or len(bzv) % 10:
        raise DataError(f"{module_dir}/{testament}: index sizes are not multiples of 12 / 10 bytes")
    blocks = []
    for offset, csize, usize in struct.iter_unpack("<III", bzs):
        block = zlib.decompress(bzz[offset: offset + csize])
        if len(block) != usize:
            raise DataError(f"{paths[2]}: block at {offset} inflates to {len(block)} bytes, index says {usize}")
        blocks.append(block)
    slots = []
    for i, (block_no, offset, size) in enumerate(struct.iter_unpack("<IIH", bzv)):
        if size == 0:
            slots.append("")
            continue
        if block_no >= len(blocks):
            raise DataError(f"{paths[1]}: slot {i} points to block {block_no} of {len(blocks)}")
        slots.append(blocks[block_no][offset: offset + size].decode("utf-8", errors="replace"))
    return slots


def chapters_of(slots: List[str]) -> List[Chapter]:
    """Split a testament's slots into chapters (see the module docstring)."""
    heads: List[Tuple[int, str]] = []
    for i, text in enumerate(slots):
        ids = _CHAPTER_START.findall(text)
        if len(ids) == 1:
            heads.append((i, ids[0]))
    ends: Dict[str, int] = {}
    for i, text in enumerate(slots):
        for osis_id in _CHAPTER_END.findall(text):
            ends.setdefault(osis_id, i)
    chapters = []
    for k, (start, osis_id) in enumerate(heads):
        if k + 1 < len(heads):
            stop = heads[k + 1][0]
            if heads[k + 1][1].endswith(".1"):
                stop -= 1  # the next book's heading slot
        else:
            stop = len(slots)
        end = ends.get(osis_id)
        consistent = end is not None and start < end < stop
        verses = [_CHAPTER_END_TAIL.sub("", v) for v in slots[start + 1: stop]]
        chapters.append(Chapter(osis_id, verses, consistent))
    return chapters


def read_module(module_dir: str) -> Dict[str, Chapter]:
    """``{osis chapter id: Chapter}`` for both testaments, in canonical order."""
    out: Dict[str, Chapter] = {}
    for testament in TESTAMENTS:
        for chapter in chapters_of(read_slots(module_dir, testament)):
            out.setdefault(chapter.osis_id, chapter)
    return out


def strip_markup(text: str) -> str:
    """Verse text without notes, headings and tags (see the module docstring)."""
    text = _NOTE.sub(" ", text)
    text = _EDITORIAL.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = html.unescape(text).replace("\u00b6", " ")  # KJV paragraph marks
    text = re.sub(r"\s+([,.;:!?\u2019\u201d)])", r"\1", one_line(text))  # "word ," left by removed tags
    return re.sub(r"([(\u2018\u201c])\s+", r"\1", text)


def split_of(osis_chapter: str) -> str:
    bucket = zlib.crc32(osis_chapter.encode("ascii")) % 100
    return "train" if bucket < 90 else "valid" if bucket < 95 else "test"


@dataclass
class AlignStats:
    chapters_source: int = 0
    chapters_common: int = 0
    chapters_count_mismatch: int = 0
    chapters_inconsistent: int = 0
    verses_empty: int = 0
    verses_length_ratio: int = 0
    pairs: int = 0


def align(source: Dict[str, Chapter], target: Dict[str, Chapter], stats: AlignStats,
          max_length_ratio: float = 4.0) -> List[Tuple[str, str, str]]:
    """``[(ref, source verse, target verse)]`` over the chapters both modules number alike."""
    pairs = []
    stats.chapters_source = len(source)
    for osis_id, s_ch in source.items():
        t_ch = target.get(osis_id)
        if t_ch is None:
            continue
        stats.chapters_common += 1
        if not (s_ch.consistent and t_ch.consistent):
            stats.chapters_inconsistent += 1
            continue
        if len(s_ch.verses) != len(t_ch.verses):
            stats.chapters_count_mismatch += 1
            logger.info(f"{osis_id}: {len(s_ch.verses)} vs {len(t_ch.verses)} verses, chapter dropped")
            continue
        for n, (s_raw, t_raw) in enumerate(zip(s_ch.verses, t_ch.verses), start=1):
            s, t = strip_markup(s_raw), strip_markup(t_raw)
            if not s or not t:
                stats.verses_empty += 1
                continue
            if max(len(s), len(t)) > max_length_ratio * min(len(s), len(t)):
                stats.verses_length_ratio += 1
                logger.info(f"{osis_id}.{n}: lengths {len(s)} vs {len(t)} characters, pair skipped")
                continue
            pairs.append((f"{osis_id}.{n}", s, t))
    stats.pairs = len(pairs)
    return pairs


def build_pairs(sword_dir: str = SWORD_DIR, source_module: str = SOURCE_MODULE,
                target_module: str = TARGET_MODULE) -> Tuple[List[Tuple[str, str, str]], AlignStats]:
    source = read_module(os.path.join(sword_dir, source_module))
    target = read_module(os.path.join(sword_dir, target_module))
    stats = AlignStats()
    return align(source, target, stats), stats


def convert(out_dir: str, sword_dir: str = SWORD_DIR) -> Dict[str, int]:
    pairs, stats = build_pairs(sword_dir)
    logger.info(
        f"{stats.chapters_common} common chapters: {stats.chapters_count_mismatch} dropped (verse counts differ), "
        f"{stats.chapters_inconsistent} dropped (structure); {stats.verses_empty} verse pairs with an empty side "
        f"and {stats.verses_length_ratio} with very different lengths skipped; {stats.pairs} pairs"
    )
    return write_splits(out_dir, pairs)


def write_splits(out_dir: str, pairs: List[Tuple[str, str, str]]) -> Dict[str, int]:
    """Write ``{split}.ref/.src/.tgt``; returns the number of pairs per split."""
    os.makedirs(out_dir, exist_ok=True)
    counts = {}
    for split in ("train", "valid", "test"):
        rows = [p for p in pairs if split_of(p[0].rsplit(".", 1)[0]) == split]
        for ext, col in (("ref", 0), ("src", 1), ("tgt", 2)):
            with open(os.path.join(out_dir, f"{split}.{ext}"), "w", encoding="utf-8") as f:
                f.writelines(row[col] + "\n" for row in rows)
        counts[split] = len(rows)
    return counts


def cli_main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="python -m preprocess.sword", description=__doc__.split("\n")[0])
    p.add_argument("--sword-dir", default=SWORD_DIR, help=f"zText module root (default: {SWORD_DIR})")
    p.add_argument("--out", required=True, metavar="DIR")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s | %(name)s | %(message)s")
    try:
        counts = convert(args.out, args.sword_dir)
    except DataError as e:
        raise SystemExit(f"preprocess.sword: error: {e}") from None
    print(" ".join(f"{k}={v}" for k, v in counts.items()), "->", args.out)


if __name__ == "__main__":
    cli_main()

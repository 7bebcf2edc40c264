"""The one place that bridges a checkpoint's vocabulary and fairseq's ``Dictionary``.

docs/design.md §6: row *i* of our embedding matrix must be the checkpoint's row for the same token
string. fairseq's stock ``Dictionary`` always puts ``<s> <pad> </s> <unk>`` at rows 0..3, which
would shift a BERT vocabulary by four rows. :class:`CheckpointDictionary` instead holds the
checkpoint's vocabulary *exactly in id order* (``nspecial == 0``) and points fairseq's
bos/pad/eos/unk (and our mask index) at the checkpoint's own special tokens:

=============  ==================  ===================
fairseq role    BERT / ELECTRA      RoBERTa / XLM-R
=============  ==================  ===================
bos             ``[CLS]``           ``<s>``
eos             ``[SEP]``           ``</s>``
pad             ``[PAD]``           ``<pad>``
unk             ``[UNK]``           ``<unk>``
mask ([P])      ``[MASK]``          ``<mask>``
=============  ==================  ===================

``dict.txt`` files written by :meth:`CheckpointDictionary.save` list every row (specials
included), one ``token count`` pair a line, after a header line ``#s2sft-dictionary``; this is
what ``s2sft-prepare`` hands to ``fairseq-preprocess`` and what the task loads back.
"""
import logging
import os
from typing import Dict, List, Optional, Sequence

from fairseq.data import Dictionary

from ..errors import S2SFTError

logger = logging.getLogger(__name__)

HEADER = "#s2sft-dictionary"

SPECIAL_CANDIDATES: Dict[str, Sequence[str]] = {
    "bos": ("[CLS]", "<s>"),
    "eos": ("[SEP]", "</s>"),
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "mask": ("[MASK]", "<mask>"),
}


class VocabularyMismatchError(S2SFTError):
    """The data's dictionary and the checkpoint's vocabulary disagree."""


class CheckpointDictionary(Dictionary):
    """A fairseq ``Dictionary`` whose rows are exactly a checkpoint's vocabulary, in id order."""

    def __init__(self, symbols: Sequence[str], specials: Optional[Dict[str, str]] = None):
        # Deliberately skip Dictionary.__init__: it would insert fairseq's 4 specials first.
        self.symbols: List[str] = []
        self.count: List[int] = []
        self.indices: Dict[str, int] = {}
        for i, sym in enumerate(symbols):
            if any(ch.isspace() for ch in sym) or sym == "":
                # fairseq's binarizer splits lines on white space: such a token could never be
                # read back. Keep the row (ids must stay aligned) under a placeholder name.
                sym = f"<s2sft-unreadable-{i}>"
            if sym in self.indices:
                raise VocabularyMismatchError(
                    f"checkpoint vocabulary has token {sym!r} twice (rows {self.indices[sym]} and {i})"
                )
            self.indices[sym] = i
            self.symbols.append(sym)
            self.count.append(1)
        self.nspecial = 0
        specials = dict(specials or {})
        for role, candidates in SPECIAL_CANDIDATES.items():
            if role not in specials:
                specials[role] = next((c for c in candidates if c in self.indices), None)
            if specials[role] is None or specials[role] not in self.indices:
                raise VocabularyMismatchError(
                    f"checkpoint vocabulary has no {role} token (looked for {', '.join(candidates)})"
                )
        self.bos_word, self.eos_word = specials["bos"], specials["eos"]
        self.pad_word, self.unk_word = specials["pad"], specials["unk"]
        self.mask_word = specials["mask"]
        self.bos_index = self.indices[self.bos_word]
        self.eos_index = self.indices[self.eos_word]
        self.pad_index = self.indices[self.pad_word]
        self.unk_index = self.indices[self.unk_word]
        self.mask_index = self.indices[self.mask_word]

    def mask(self) -> int:
        return self.mask_index

    @classmethod
    def load(cls, f, add_special_symbols: bool = True) -> "CheckpointDictionary":
        """Load a ``dict.txt`` written by :meth:`save` (path or open file)."""
        if isinstance(f, str):
            with open(f, "r", encoding="utf-8") as fh:
                return cls.load(fh)
        name = getattr(f, "name", "<dictionary>")
        lines = f.read().split("\n")
        if not lines or lines[0].strip() != HEADER:
            raise VocabularyMismatchError(
                f"{name}: not an s2sft dictionary (first line should be {HEADER!r}); "
                "build it with `s2sft-prepare` or `s2sft-import --export-dict` from the checkpoint"
            )
        symbols, specials = [], {}
        for lineno, line in enumerate(lines[1:], start=2):
            if not line:
                continue
            if line.startswith("#special "):
                _, role, tok = line.split(" ", 2)
                specials[role] = tok
                continue
            sym, _, _count = line.rpartition(" ")
            if not sym:
                raise VocabularyMismatchError(f"{name}:{lineno}: malformed line {line!r}")
            symbols.append(sym)
        return cls(symbols, specials)

    def save(self, f) -> None:
        if isinstance(f, str):
            os.makedirs(os.path.dirname(os.path.abspath(f)), exist_ok=True)
            with open(f, "w", encoding="utf-8") as fh:
                return self.save(fh)
        f.write(HEADER + "\n")
        for role in ("bos", "eos", "pad", "unk", "mask"):
            f.write(f"#special {role} {getattr(self, role + '_word')}\n")
        for sym, cnt in zip(self.symbols, self.count):
            f.write(f"{sym} {cnt}\n")


def load_task_dictionary(path: str) -> Dictionary:
    """Load a data directory's dictionary: ours, or fairseq's stock format (fairseq RoBERTa)."""
    with open(path, "r", encoding="utf-8") as fh:
        first = fh.readline().strip()
    if first == HEADER:
        return CheckpointDictionary.load(path)
    d = Dictionary.load(path)
    d.mask_index = d.add_symbol("<mask>")
    d.mask = lambda: d.mask_index  # noqa: E731 - give stock dictionaries the same accessor
    return d


def tokenizer_vocabulary(tokenizer) -> List[str]:
    """The tokenizer's tokens in id order (holes filled with placeholders)."""
    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    rows = [None] * size
    for tok, idx in vocab.items():
        if rows[idx] is None:
            rows[idx] = tok
    return [tok if tok is not None else f"<s2sft-unused-{i}>" for i, tok in enumerate(rows)]


def dictionary_from_tokenizer(tokenizer, num_embeddings: Optional[int] = None) -> CheckpointDictionary:
    """Build the dictionary from a Hugging Face tokenizer, padded to the embedding's row count."""
    symbols = tokenizer_vocabulary(tokenizer)
    if num_embeddings is not None:
        if len(symbols) > num_embeddings:
            raise VocabularyMismatchError(
                f"tokenizer has {len(symbols)} tokens but the checkpoint's embedding has only "
                f"{num_embeddings} rows (first token without a row: {symbols[num_embeddings]!r} "
                f"at index {num_embeddings})"
            )
        # Some checkpoints pad the embedding to a multiple of 8; keep those rows addressable.
        symbols += [f"<s2sft-extra-row-{i}>" for i in range(len(symbols), num_embeddings)]
    specials = {}
    for role in ("bos", "eos", "pad", "unk", "mask"):
        attr = {"bos": "cls_token", "eos": "sep_token"}.get(role, role + "_token")
        tok = getattr(tokenizer, attr, None)
        if isinstance(tok, str) and tok in symbols:
            specials[role] = tok
    return CheckpointDictionary(symbols, specials)


def check_dictionary_matches(data_dict: Dictionary, ckpt_dict: Dictionary, where: str) -> None:
    """Raise naming the first row where the data's dictionary differs from the checkpoint's."""
    n = min(len(data_dict), len(ckpt_dict))
    for i in range(n):
        if data_dict[i] != ckpt_dict[i]:
            raise VocabularyMismatchError(
                f"{where}: dictionary does not match the checkpoint at index {i}: data has "
                f"{data_dict[i]!r}, checkpoint has {ckpt_dict[i]!r}. Re-binarize the data with "
                "`s2sft-prepare --pretrained <checkpoint>`."
            )
    if len(data_dict) != len(ckpt_dict):
        extra = data_dict[n] if len(data_dict) > n else ckpt_dict[n]
        raise VocabularyMismatchError(
            f"{where}: dictionary has {len(data_dict)} rows, the checkpoint {len(ckpt_dict)} "
            f"(first unmatched token {extra!r} at index {n})"
        )
    for role in ("bos", "eos", "pad", "unk"):
        a, b = getattr(data_dict, role)(), getattr(ckpt_dict, role)()
        if a != b:
            raise VocabularyMismatchError(
                f"{where}: {role} is {data_dict[a]!r} (index {a}) in the data's dictionary "
                f"but {ckpt_dict[b]!r} (index {b}) for the checkpoint"
            )

"""The checkpoint's tokenizer: one loader for the importer, ``s2sft-prepare`` and the BPE that
detokenizes fairseq's output (so the dictionary, the data and the output all see the same
tokenizer; README, 'Supported checkpoints').

* A directory with ``tokenizer.json``, or a ``tokenizer_config.json`` naming its
  ``tokenizer_class``, is read by ``transformers.AutoTokenizer`` (every Hugging Face checkpoint);
  when ``config.json``'s ``model_type`` is one transformers does not know (``unilm``), by the
  named class itself (AutoTokenizer would warn that the config is of another model type).
* A WordPiece ``vocab.txt`` without either (s2s-ft's own files, old BERT / UniLM directories) is
  read as ``BertTokenizer`` (``UnilmTokenizer`` / ``MinilmTokenizer`` of the s2s-ft code are
  plain BERT tokenizers). Such a vocabulary does not record whether the checkpoint is cased,
  and the reference takes it from its ``--do_lower_case`` flag, so the casing must be recorded
  in the directory: ``do_lower_case`` in ``tokenizer_config.json`` (what Hugging Face writes;
  ``echo '{"do_lower_case": true}' > DIR/tokenizer_config.json``) or in ``config.json``. Without
  it the loader refuses: tokenizing with the wrong casing turns most words into other pieces or
  ``[UNK]`` without any error. One record in the directory, rather than a flag, keeps
  ``s2sft-prepare``, ``fairseq-train``, ``fairseq-generate`` and ``fairseq-interactive`` in step.
* Anything else (sentencepiece, byte-level BPE): ``AutoTokenizer``.

A ``vocab.txt`` may hold a token twice (unilm1.2-base-uncased's holds ``[unused99]`` twice).
The reference's tokenizer (BERT's ``load_vocab``) numbers every line and lets a later
duplicate overwrite the earlier id, so the checkpoint's embedding rows are the line numbers and
the earlier line's row is never produced; transformers' ``BertTokenizer`` does the same. The
dictionary keeps that row under a placeholder name (:func:`.vocab.tokenizer_vocabulary`) and
:func:`vocabulary_notes` says so.
"""
import json
import os
from typing import Dict, List, Optional

from .common import CheckpointError

VOCAB = "vocab.txt"
CASING_HELP = ("write {\"do_lower_case\": true} (uncased checkpoints, e.g. unilm1.2-base-uncased, "
               "unilm2-base-uncased, minilm-l12-h384-uncased) or {\"do_lower_case\": false} (cased, e.g. "
               "unilm1-base-cased) into FOLDER/tokenizer_config.json")


def _json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from e
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return value


def is_bare_wordpiece(folder: str) -> bool:
    """A ``vocab.txt`` that ``AutoTokenizer`` would not be told how to read (no ``tokenizer.json``,
    no ``tokenizer_class``): read as a BERT WordPiece tokenizer with recorded casing."""
    if not os.path.isfile(os.path.join(folder, VOCAB)) or os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return False
    tc = _json(os.path.join(folder, "tokenizer_config.json"))
    return not (tc and tc.get("tokenizer_class"))


def recorded_casing(folder: str) -> bool:
    """``do_lower_case`` as recorded in ``tokenizer_config.json`` or ``config.json`` (that order)."""
    for name in ("tokenizer_config.json", "config.json"):
        value = (_json(os.path.join(folder, name)) or {}).get("do_lower_case")
        if isinstance(value, bool):
            return value
        if value is not None:
            raise CheckpointError(f"{os.path.join(folder, name)}: do_lower_case is {value!r}; expected true or false")
    raise CheckpointError(
        f"{folder}: the tokenizer is a bare {VOCAB}, which does not record whether the checkpoint is cased; "
        + CASING_HELP.replace("FOLDER", folder))


def load_checkpoint_tokenizer(folder: str, **kwargs):
    """The tokenizer of a checkpoint directory (module docstring), offline; ``kwargs`` go to
    ``from_pretrained`` (e.g. ``model_max_length``)."""
    from transformers import AutoTokenizer, BertTokenizer
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: not a directory (the checkpoint's tokenizer files are read from it)")
    try:
        if is_bare_wordpiece(folder):
            return BertTokenizer.from_pretrained(folder, local_files_only=True,
                                                 do_lower_case=recorded_casing(folder), **kwargs)
        named = _named_class_for_unknown_model_type(folder)
        if named is not None:
            return named.from_pretrained(folder, local_files_only=True, **kwargs)
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, **kwargs)
    except CheckpointError:
        raise
    except Exception as e:  # transformers raises many types here; report one line
        raise CheckpointError(f"{folder}: cannot load the checkpoint's tokenizer ({type(e).__name__}: {e})") from e


def _named_class_for_unknown_model_type(folder: str):
    """The tokenizer class ``tokenizer_config.json`` names, when ``config.json``'s model type is not
    one of transformers' (else None: AutoTokenizer resolves it)."""
    import transformers
    from transformers import CONFIG_MAPPING
    model_type = (_json(os.path.join(folder, "config.json")) or {}).get("model_type")
    name = (_json(os.path.join(folder, "tokenizer_config.json")) or {}).get("tokenizer_class")
    if not name or not model_type or model_type in CONFIG_MAPPING:
        return None
    return getattr(transformers, name, None)


def duplicate_vocabulary_lines(vocab_file: str) -> Dict[str, List[int]]:
    """Tokens listed more than once in a ``vocab.txt``: token -> its 0-based line numbers."""
    lines: Dict[str, List[int]] = {}
    with open(vocab_file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            lines.setdefault(line.rstrip("\n"), []).append(i)
    return {tok: rows for tok, rows in lines.items() if len(rows) > 1}


def vocabulary_notes(folder: str) -> List[str]:
    """What the importer notes about a WordPiece ``vocab.txt`` (duplicate lines, module docstring)."""
    vocab_file = os.path.join(folder, VOCAB)
    if not os.path.isfile(vocab_file):
        return []
    notes = []
    for tok, rows in duplicate_vocabulary_lines(vocab_file).items():
        unused = ", ".join(str(r) for r in rows[:-1])
        notes.append(f"{vocab_file}: token {tok!r} is listed {len(rows)} times (0-based lines {', '.join(map(str, rows))}); "
                     f"as in BERT's tokenizer the last one wins: it is row {rows[-1]}, and row(s) {unused} are "
                     "never produced by the tokenizer (kept as placeholder rows so that the embedding rows stay "
                     "aligned with the lines)")
    return notes

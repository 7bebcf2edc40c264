"""A save directory that decodes anywhere: the dictionary and the tokenizer next to the checkpoints.

The data directory written by ``s2sft-prepare`` records the checkpoint's tokenizer as an absolute
path (``DATA/pretrained.json``), which does not exist on another machine. So when fairseq-train
builds the model for training, the task also writes into ``--save-dir``
(:func:`write_save_dir_files`):

* ``dict.txt``: the data's dictionary (the model's vocabulary, row for row);
* the checkpoint tokenizer's files (``tokenizer.save_pretrained``: ``tokenizer_config.json``,
  ``vocab.txt`` / ``tokenizer.json`` / ``sentencepiece.bpe.model`` ...).

A copied save directory then serves as its own data directory (``S2SFT.from_pretrained(SAVE_DIR)``,
``fairseq-interactive SAVE_DIR --path SAVE_DIR/checkpoint_best.pt``), and fairseq-generate on
the original data falls back to the save directory's tokenizer when the path in
``pretrained.json`` is missing (:func:`find_tokenizer_dir`).
"""
import json
import logging
import os
from typing import Iterable, Optional

logger = logging.getLogger(__name__)

#: every tokenizer ``save_pretrained`` writes this file; its presence marks a tokenizer directory
TOKENIZER_MARKER = "tokenizer_config.json"
#: the single dictionary file of a save directory (a data directory has dict.<lang>.txt per side)
SAVE_DIR_DICT = "dict.txt"


def has_tokenizer(folder: Optional[str]) -> bool:
    return bool(folder) and os.path.isfile(os.path.join(folder, TOKENIZER_MARKER))


def recorded_tokenizer_dir(data: Optional[str]) -> str:
    """The checkpoint directory ``s2sft-prepare`` recorded in ``DATA/pretrained.json`` ('' if none)."""
    meta = os.path.join(data, "pretrained.json") if data else ""
    if not meta or not os.path.exists(meta):
        return ""
    with open(meta, encoding="utf-8") as f:
        return json.load(f).get("pretrained", "") or ""


def find_tokenizer_dir(explicit: str, data: Optional[str], fallbacks: Iterable[Optional[str]] = ()) -> str:
    """The directory whose tokenizer (de)tokenizes text, '' when there is none.

    In this order: ``explicit`` (``--tokenizer-dir``); the directory recorded in
    ``DATA/pretrained.json`` when it exists here; the first of ``fallbacks`` (the checkpoint's
    directory) and ``data`` itself that holds tokenizer files (a portable save directory). A
    recorded directory that is missing, with no fallback, is an error naming both.
    """
    from ..errors import MissingFileError
    if explicit:
        if not os.path.isdir(explicit):
            raise MissingFileError(f"tokenizer directory {explicit!r} (--tokenizer-dir) does not exist")
        return explicit
    recorded = recorded_tokenizer_dir(data)
    if recorded and os.path.isdir(recorded):
        return recorded
    candidates = [d for d in (*fallbacks, data) if d]
    for folder in candidates:
        if has_tokenizer(folder):
            if recorded:
                logger.info(f"{os.path.join(data, 'pretrained.json')} names {recorded}, which does not exist here: "
                            f"using the tokenizer saved in {folder}")
            return folder
    if recorded:
        raise MissingFileError(
            f"tokenizer directory {recorded!r} (recorded in {os.path.join(data, 'pretrained.json')}) does not "
            f"exist, and no tokenizer was saved in {' or '.join(candidates)} (no {TOKENIZER_MARKER}); give "
            "--tokenizer-dir, or use a save directory written by this version of fairseq-train")
    return ""


def write_save_dir_files(save_dir: str, dictionary, tokenizer_dir: str) -> None:
    """Write ``dict.txt`` and the tokenizer's files into ``save_dir`` (see the module docstring).
    The tokenizer is read with the checkpoint loader (:mod:`..checkpoints.tokenizers`) and written
    with ``save_pretrained``, which also records what a bare ``vocab.txt`` leaves implicit (class,
    casing); read back, it must have the same vocabulary, else the copy is removed with a warning."""
    dict_path = os.path.join(save_dir, SAVE_DIR_DICT)
    tmp = dict_path + ".tmp"
    dictionary.save(tmp)
    os.replace(tmp, dict_path)
    written = [SAVE_DIR_DICT]
    if tokenizer_dir and os.path.abspath(tokenizer_dir) != os.path.abspath(save_dir):
        from ..checkpoints.tokenizers import load_checkpoint_tokenizer
        files = []
        try:
            tokenizer = load_checkpoint_tokenizer(tokenizer_dir)
            files = [os.path.basename(p) for p in tokenizer.save_pretrained(save_dir)]
            if load_checkpoint_tokenizer(save_dir).get_vocab() != tokenizer.get_vocab():
                raise ValueError("the saved tokenizer reads back with another vocabulary")
            written += files
        except Exception as e:  # never stop training for this: the data directory still has the path
            for name in files:
                if os.path.isfile(os.path.join(save_dir, name)):
                    os.remove(os.path.join(save_dir, name))
            logger.warning(f"could not copy the tokenizer of {tokenizer_dir} into {save_dir} "
                           f"({type(e).__name__}: {e}); the save directory is not portable")
    elif not tokenizer_dir:
        logger.warning(f"no tokenizer known (no --tokenizer-dir, no DATA/pretrained.json): {save_dir} gets "
                       "dict.txt only, and its output cannot be detokenized elsewhere")
    logger.info(f"{save_dir}: wrote {', '.join(sorted(set(written)))} (a save directory that decodes on "
                "another machine)")

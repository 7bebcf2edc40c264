"""Which checkpoint formats ``--pretrained-checkpoint`` accepts, and :func:`load_pretrained`,
which picks one by what is on disk.

Each format is a module with ``DESCRIPTION`` (what the user points at, for error messages),
``recognises(path)`` and ``load(path) -> PretrainedCheckpoint``: :mod:`.s2sft_bin` (s2s-ft's own
raw ``.bin`` state dicts), :mod:`.huggingface` and :mod:`.fairseq_roberta` (README, 'Supported
checkpoints'). A new format is one more such module, added to :data:`FORMATS`; the first format
that recognises the path reads it, so the more specific test comes first (an s2s-ft directory
is also a directory with ``config.json``). Everything after reading (validation, notes, copying
into the stack) is shared, in :mod:`.common`.
"""
import os
from dataclasses import dataclass
from typing import Callable

from . import fairseq_roberta, huggingface, s2sft_bin
from .common import CheckpointError, PretrainedCheckpoint
from .hub_names import resolve_pretrained_path


@dataclass(frozen=True)
class CheckpointFormat:
    name: str
    description: str
    recognises: Callable[[str], bool]
    load: Callable[[str], PretrainedCheckpoint]

    @classmethod
    def of(cls, module) -> "CheckpointFormat":
        return cls(module.__name__.rsplit(".", 1)[-1], module.DESCRIPTION, module.recognises, module.load)


#: tried in order: the first whose ``recognises`` accepts the path reads it
FORMATS = (CheckpointFormat.of(s2sft_bin), CheckpointFormat.of(huggingface), CheckpointFormat.of(fairseq_roberta))


def load_pretrained(path: str) -> PretrainedCheckpoint:
    """Read any supported checkpoint from disk (no network). ``path`` may also be a hub name
    (``org/name``) whose snapshot is in the local Hugging Face cache (:mod:`.hub_names`)."""
    path = resolve_pretrained_path(path)
    if not path or not os.path.exists(path):
        raise CheckpointError(f"pretrained checkpoint {path!r} does not exist (expected {_expected()})")
    for fmt in FORMATS:
        if fmt.recognises(path):
            return fmt.load(path)
    raise CheckpointError(f"{path}: not a checkpoint s2sft-fairseq reads (expected {_expected()})")


def _expected() -> str:
    return "; or ".join(f.description for f in FORMATS)

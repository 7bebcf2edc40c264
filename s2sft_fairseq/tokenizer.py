"""fairseq BPE ``checkpoint_tokenizer``: the checkpoint's own Hugging Face tokenizer.

Output tokens are merged back into text (WordPiece ``##``, byte-level BPE, sentencepiece) with
``convert_tokens_to_string``; raw text for fairseq-interactive is split into the same tokens
``s2sft-prepare`` produces (both read the tokenizer with
:func:`~s2sft_fairseq.checkpoints.tokenizers.load_checkpoint_tokenizer`). The task uses it
automatically when no ``--bpe`` is given, and the Python API (:mod:`s2sft_fairseq.hub_interface`)
with the tokenizer found for the checkpoint (:mod:`s2sft_fairseq.tasks.portable_save_dir`).
"""
from dataclasses import dataclass, field
from typing import List

from fairseq.data.encoders import register_bpe
from fairseq.dataclass import FairseqDataclass

from .text import clean_text


@dataclass
class CheckpointTokenizerConfig(FairseqDataclass):
    tokenizer_dir: str = field(default="", metadata={"help": "directory with the checkpoint's tokenizer files"})


@register_bpe("checkpoint_tokenizer", dataclass=CheckpointTokenizerConfig)
class CheckpointTokenizerBPE:
    def __init__(self, cfg):
        from .checkpoints.tokenizers import load_checkpoint_tokenizer
        # model_max_length: inputs are truncated to --max-source-positions by the task, not here
        self.tok = load_checkpoint_tokenizer(cfg.tokenizer_dir, model_max_length=10 ** 12)

    @classmethod
    def from_dir(cls, path):
        return cls(CheckpointTokenizerConfig(tokenizer_dir=path))

    def tokens(self, x: str) -> List[str]:
        """The tokens of raw text, exactly as ``s2sft-prepare`` makes them: control characters,
        Unicode separators and lone surrogates (invalid UTF-8 bytes on stdin) become spaces first
        (:func:`~s2sft_fairseq.text.clean_text`); a token that is empty or holds white space (it
        could not survive the space-separated form) becomes the unknown token. ``[]`` when nothing
        is left after cleaning."""
        tokens = self.tok.tokenize(clean_text(x))
        return [self.tok.unk_token if (not t or any(c.isspace() for c in t)) else t for t in tokens]

    def encode(self, x: str) -> str:
        """:meth:`tokens`, space-separated (what fairseq's dictionary binarizes)."""
        return " ".join(self.tokens(x))

    def decode(self, x: str) -> str:
        tokens = x.split()
        return self.tok.convert_tokens_to_string(tokens).strip() if tokens else ""

    def is_beginning_of_word(self, x: str) -> bool:
        return not x.startswith("##")

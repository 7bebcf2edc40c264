"""fairseq BPE ``checkpoint_tokenizer``: the checkpoint's own Hugging Face tokenizer.

Output tokens are merged back into text (WordPiece ``##``, byte-level BPE, sentencepiece) with
``convert_tokens_to_string``; raw text for fairseq-interactive is split into the same tokens
``s2sft-prepare`` produces (both read the tokenizer with
:func:`~s2sft_fairseq.checkpoints.tokenizers.load_checkpoint_tokenizer`). The task uses it
automatically when no ``--bpe`` is given.
"""
from dataclasses import dataclass, field

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

    def encode(self, x: str) -> str:
        """Tokenize raw text exactly as ``s2sft-prepare`` does: control characters, Unicode
        separators and lone surrogates (invalid UTF-8 bytes on stdin) become spaces first
        (:func:`~s2sft_fairseq.text.clean_text`)."""
        return " ".join(self.tok.tokenize(clean_text(x)))

    def decode(self, x: str) -> str:
        tokens = x.split()
        return self.tok.convert_tokens_to_string(tokens).strip() if tokens else ""

    def is_beginning_of_word(self, x: str) -> bool:
        return not x.startswith("##")

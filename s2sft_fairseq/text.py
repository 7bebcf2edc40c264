"""What "clean text" means, for everything that turns raw text into tokens.

``s2sft-prepare`` (training data) and the ``checkpoint_tokenizer`` BPE (fairseq-interactive
input) both call :func:`clean_text` before the checkpoint's tokenizer, so a line is tokenized
the same way at training and at generation time. It maps to a space: C0 control characters
except tab (a ``\\n`` inside a JSON field included), DEL, C1 control characters, the Unicode
line / paragraph separators (U+2028, U+2029) and lone surrogates (reachable from JSON
``"\\ud800"`` escapes or invalid UTF-8 bytes on stdin; such a string cannot be written back as
UTF-8); then it strips both ends. How files are split into lines and paired is
``preprocess/text.py``'s job.
"""
import re

_UNWANTED = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Map control characters, separators and lone surrogates to spaces; strip both ends."""
    return _UNWANTED.sub(" ", text).strip()

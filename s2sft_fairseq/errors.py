"""User-facing errors and how fairseq's command-line tools report them.

Every error about the user's input (a checkpoint, a dictionary, a data file) derives from
:class:`S2SFTError` and says what is wrong and where (file, line, token, tensor). Library code
raises them as ordinary exceptions; when one reaches the top of a fairseq CLI run with
``--user-dir s2sft_fairseq`` (fairseq-train, -generate, -interactive, -preprocess), the hook
installed here prints ``s2sft-fairseq: error: <message>`` on one line instead of a traceback and
exits with status 1. Other exceptions keep Python's default report.
"""
import sys


class S2SFTError(ValueError):
    """An error in the user's input, with what is wrong and where."""


_previous_hook = None


def _excepthook(exc_type, exc, tb):
    err = exc
    while err is not None and not isinstance(err, S2SFTError):
        err = err.__cause__ or err.__context__
    if err is not None and isinstance(exc, Exception):
        sys.stderr.write(f"s2sft-fairseq: error: {err}\n")
        sys.stderr.flush()
        sys.exit(1)
    _previous_hook(exc_type, exc, tb)


def install_excepthook() -> None:
    global _previous_hook
    if _previous_hook is None:
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook

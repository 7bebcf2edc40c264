"""User-facing errors and how fairseq's command-line tools report them.

Every error about the user's input (a checkpoint, a dictionary, a data file) derives from
:class:`S2SFTError` and says what is wrong and where (file, line, token, tensor). Library code
raises them as ordinary exceptions; when one reaches the top of a fairseq CLI run with
``--user-dir s2sft_fairseq`` (fairseq-train, -generate, -interactive, -preprocess), the hook
installed here prints ``s2sft-fairseq: error: <message>`` on one line instead of a traceback and
exits with status 1. Other exceptions keep Python's default report. Set ``S2SFT_TRACEBACK=1``
to get the full traceback (with the underlying cause) for user errors too.
"""
import os
import sys


class S2SFTError(ValueError):
    """An error in the user's input, with what is wrong and where."""


class MissingFileError(S2SFTError, FileNotFoundError):
    """A file the user's command needs does not exist (still a ``FileNotFoundError`` for callers)."""


_previous_hook = None


def _excepthook(exc_type, exc, tb):
    err = exc
    while err is not None and not isinstance(err, S2SFTError):
        err = err.__cause__ or err.__context__
    if err is not None and isinstance(exc, Exception) and os.environ.get("S2SFT_TRACEBACK", "") in ("", "0"):
        # one line, whatever the message holds (e.g. a quoted multi-line library error)
        message = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        sys.stderr.write(f"s2sft-fairseq: error: {message}\n")
        sys.stderr.flush()
        sys.exit(1)
    _previous_hook(exc_type, exc, tb)


def install_excepthook() -> None:
    global _previous_hook
    if _previous_hook is None:
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook

"""User-facing errors and how the command-line tools report them.

Every error about the user's input (a checkpoint, a dictionary, a data file) derives from
:class:`S2SFTError` and says what is wrong and where (file, line, token, tensor). Library code
raises them as ordinary exceptions. When one reaches the top of a program, :func:`user_error_line`
gives the one line to print instead of a traceback:

* the fairseq command-line tools (fairseq-train, -generate, -interactive, -preprocess, ... with
  ``--user-dir s2sft_fairseq``) get the hook of :func:`install_excepthook`, which prints
  ``s2sft-fairseq: error: <message>`` and exits with status 1. The patch ledger
  (:mod:`.fairseq_patches`) installs it only when such a tool is the running program, never on a
  plain ``import s2sft_fairseq`` (a notebook or another program keeps its own hook);
* the project's own tools (``s2sft-prepare``, ``s2sft-import``, ``s2sft-score``) catch their
  errors and print ``<tool>: error: <message>`` themselves.

Other exceptions keep Python's default report. Set ``S2SFT_TRACEBACK=1`` to get the full
traceback (with the underlying cause) for user errors too. This module imports nothing from
fairseq or the rest of the package.
"""
import os
import sys
from typing import Optional


class S2SFTError(ValueError):
    """An error in the user's input, with what is wrong and where."""


class MissingFileError(S2SFTError, FileNotFoundError):
    """A file the user's command needs does not exist (still a ``FileNotFoundError`` for callers)."""


def user_error_line(exc: BaseException) -> Optional[str]:
    """The one line to print for ``exc`` when it is, or was raised from, an :class:`S2SFTError`
    (followed through ``__cause__`` / ``__context__``); ``None`` when the traceback should be
    shown instead (any other exception, or ``S2SFT_TRACEBACK=1``)."""
    if not isinstance(exc, Exception) or os.environ.get("S2SFT_TRACEBACK", "") not in ("", "0"):
        return None
    err = exc
    while err is not None and not isinstance(err, S2SFTError):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    # one line, whatever the message holds (e.g. a quoted multi-line library error)
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


_previous_hook = None


def _excepthook(exc_type, exc, tb):
    line = user_error_line(exc)
    if line is not None:
        sys.stderr.write(f"s2sft-fairseq: error: {line}\n")
        sys.stderr.flush()
        sys.exit(1)
    _previous_hook(exc_type, exc, tb)


def install_excepthook() -> None:
    """Report user errors reaching the top of the program as one line (idempotent)."""
    global _previous_hook
    if _previous_hook is None:
        _previous_hook = sys.excepthook
        sys.excepthook = _excepthook


def excepthook_installed() -> bool:
    return sys.excepthook is _excepthook

"""Reading pickled torch files safely: the allow-list, the one safe ``torch.load`` and its wording.

This module holds everything about pickles:

* :data:`ALLOWED_GLOBALS` and :func:`register`: the non-tensor globals real fairseq checkpoints
  need under torch's ``weights_only`` loading (registered when the plugin is imported, an entry
  of :mod:`.fairseq_patches`);
* :func:`safe_torch_load`: how the checkpoint importer reads a ``pytorch_model.bin`` or a
  fairseq ``model.pt`` (``weights_only=True``, on the CPU);
* :func:`describe_load_failure`: the one-line wording of a pickle that is refused or cannot be
  read, used by :func:`safe_torch_load` and by :mod:`.checkpoint_guard` (fairseq's own loading
  of ``--path`` / ``--restore-file``).

torch >= 2.6 loads with ``weights_only=True`` by default (fairseq's ``load_checkpoint_to_cpu``
does not pass the flag), which accepts tensors, plain containers (dict, list, tuple,
``collections.OrderedDict``) and Python scalars only. Nothing here switches the check off, so a
pickle that would run code is still refused. Each allow-listed entry and where it comes from:

* ``argparse.Namespace``: the hyper-parameters of legacy-argument models, stored as ``args``
  (the released RoBERTa / XLM-R ``model.pt`` files) or as ``cfg["model"]`` (e.g. a
  ``fairseq-train --arch transformer`` checkpoint written by fairseq 0.12).
* ``numpy.dtype``, ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and the int64
  dtype class: numpy arrays in the meters of ``extra_state["metrics"]``; fairseq's translation
  task logs its BLEU n-gram counts/totals (``--eval-bleu``) as int64 arrays.
* ``numpy.core.multiarray.scalar`` and the float64 dtype class: numpy float64 scalars, e.g. a
  best-checkpoint metric computed with numpy and kept in ``extra_state["best"/"val_loss"]``.

Everything else is refused. ``collections.OrderedDict`` (state dicts) is accepted by torch
itself and needs no entry. A ``fairseq-train --task language_modeling`` checkpoint needs none
of the entries; ``tests/test_safe_loading.py`` checks that each entry is needed by a
fairseq-train-style checkpoint and that together they suffice.
"""
import argparse
import pickle
import re

import numpy as np
import torch

from .errors import S2SFTError

try:  # numpy >= 2 (numpy 1.26 also has the alias; the function objects are the same)
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core import multiarray as _multiarray

ALLOWED_GLOBALS = [
    argparse.Namespace,
    np.dtype,
    _multiarray.scalar,
    _multiarray._reconstruct,
    np.ndarray,
    type(np.dtype(np.float64)),  # numpy.dtypes.Float64DType
    type(np.dtype(np.int64)),    # numpy.dtypes.Int64DType
]


def register() -> None:
    torch.serialization.add_safe_globals(ALLOWED_GLOBALS)


def safe_torch_load(path: str, error: type = S2SFTError):
    """``torch.load(path)`` with ``weights_only=True`` on the CPU: a pickle that would run code is
    refused before any of it runs.

    Only tensors, plain containers and :data:`ALLOWED_GLOBALS` are accepted (registered here too,
    so this does not depend on import order). Any failure is raised as ``error`` (the caller's
    own error class, e.g. the importer's ``CheckpointError``) with :func:`describe_load_failure`'s
    one line.
    """
    # Not torch.serialization.safe_globals(...): its __exit__ *removes* the globals it was given,
    # which would also drop the process-wide registration that fairseq's own loading relies on.
    register()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise error(describe_load_failure(str(path), e)) from e


# torch names the refused global as "GLOBAL posix.system" (or "but got <class 'x.y'>")
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")
_WEIGHTS_ONLY = "Weights only load failed"


def _first_sentence(text: str, limit: int = 160) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    cut = line.find(". ")
    if 0 < cut < len(line) - 2:
        line = line[:cut]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_load_failure(path: str, exc: BaseException) -> str:
    """One line saying why ``torch.load`` could not read ``path`` (never advice to switch the
    ``weights_only`` check off): a refused pickle names the global it needs, a file that cannot be
    opened names the system's reason, anything else is a truncated / corrupt / foreign file."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and _WEIGHTS_ONLY in text:
        m = _REFUSED_GLOBAL.search(text)
        if m:
            why = f"it needs the Python global {m.group(1) or m.group(2)!r}, which is not allow-listed"
        else:
            detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
            why = f"the weights-only unpickler does not accept it ({_first_sentence(detail) or 'unsupported content'})"
        return (f"{path}: refused to load the checkpoint: {why}. Checkpoints are read with "
                "torch.load(weights_only=True): only tensors, plain containers and the globals fairseq "
                "checkpoints need are accepted; a file that needs anything else is not trusted, and "
                "nothing in it was executed")
    if isinstance(exc, OSError) and getattr(exc, "strerror", None):
        return f"{path}: cannot open the checkpoint ({exc.strerror})"
    detail = _first_sentence(text)
    kind = type(exc).__name__ + (f": {detail}" if detail else "")
    return f"{path}: cannot read the checkpoint: the file is truncated, corrupt or not a PyTorch checkpoint ({kind})"

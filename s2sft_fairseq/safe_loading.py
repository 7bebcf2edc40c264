"""Allow-list exactly what fairseq checkpoints need under torch's ``weights_only`` loading.

torch >= 2.6 loads with ``weights_only=True`` by default (fairseq's ``load_checkpoint_to_cpu``
does not pass the flag), which accepts tensors, plain containers (dict, list, tuple,
``collections.OrderedDict``) and Python scalars only. Importing the plugin registers the few
non-tensor globals that real fairseq checkpoints contain; nothing switches the check off, so a
pickle that would run code is still refused. Each entry and where it comes from:

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

import numpy as np
import torch

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

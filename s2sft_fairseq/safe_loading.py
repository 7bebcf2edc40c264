"""Allow-list exactly what fairseq checkpoints need under torch's ``weights_only`` loading.

torch >= 2.6 loads with ``weights_only=True`` by default. fairseq's own checkpoints pickle an
``argparse.Namespace`` (old ``args``) and numpy scalars (best-loss bookkeeping in
``extra_state``), which that loader refuses. Importing the plugin registers those few globals;
nothing switches the check off, so a pickle that would run code is still refused.
"""
import argparse
import collections

import numpy as np
import torch

ALLOWED_GLOBALS = [
    argparse.Namespace,
    collections.OrderedDict,
    np.dtype,
    np.core.multiarray.scalar,
    np.core.multiarray._reconstruct,
    np.ndarray,
    type(np.dtype(np.float64)),
    type(np.dtype(np.float32)),
    type(np.dtype(np.int64)),
    type(np.dtype(np.int32)),
    type(np.dtype(np.bool_)),
]


def register() -> None:
    torch.serialization.add_safe_globals(ALLOWED_GLOBALS)

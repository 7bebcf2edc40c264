"""s2sft-fairseq: s2s-ft (Bao et al.) fine-tuning of pretrained bidirectional Transformers in fairseq.

``--user-dir`` imports this package, which registers the model ``unilm_seq2seq``, the task
``pseudo_masked_lm``, the criterion ``s2s_label_smoothed_cross_entropy``, the optimizer
``torch_adamw`` and the BPE ``checkpoint_tokenizer``. It also installs the fairseq patches of
:mod:`.fairseq_patches`, the one list of everything the plugin changes in fairseq, torch and
Python (the weights-only allow-list, atomic checkpoint copies, one-line errors for unreadable
checkpoints; the one-line error hook only when a fairseq command-line tool is running).

``from s2sft_fairseq import S2SFT`` is the Python API (:mod:`.hub_interface`, README "Python
API"); it is imported on first use, so a plain ``import s2sft_fairseq`` does not load it.
"""
from . import fairseq_patches

fairseq_patches.install()

from . import criterions, models, optim, tasks, tokenizer  # noqa: E402,F401


__all__ = ["S2SFT"]


def __getattr__(name):
    if name == "S2SFT":
        from .hub_interface import S2SFT
        return S2SFT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""s2sft-fairseq: s2s-ft (Bao et al.) fine-tuning of pretrained bidirectional Transformers in fairseq.

``--user-dir`` imports this package, which registers the model ``unilm_seq2seq``, the task
``pseudo_masked_lm``, the criterion ``s2s_label_smoothed_cross_entropy``, the optimizer
``torch_adamw`` and the BPE ``checkpoint_tokenizer``. It also installs the fairseq patches of
:mod:`.fairseq_patches`, the one list of everything the plugin changes in fairseq, torch and
Python (the weights-only allow-list, atomic checkpoint copies, one-line errors for unreadable
checkpoints; the one-line error hook only when a fairseq command-line tool is running).
"""
from . import fairseq_patches

fairseq_patches.install()

from . import criterions, models, optim, tasks, tokenizer  # noqa: E402,F401

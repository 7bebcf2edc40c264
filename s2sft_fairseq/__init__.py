"""s2sft-fairseq: s2s-ft (Bao et al.) fine-tuning of pretrained bidirectional Transformers in fairseq.

``--user-dir`` imports this package, which registers the model ``unilm_seq2seq``, the task
``pseudo_masked_lm``, the criterion ``s2s_label_smoothed_cross_entropy`` and the optimizer
``torch_adamw``; it also allow-lists the globals fairseq checkpoints need under
``torch.load(weights_only=True)``, makes fairseq's checkpoint copies atomic
(:mod:`.atomic_checkpoints`), and turns unreadable checkpoint files into one-line errors
(:mod:`.checkpoint_guard`).
"""
from . import atomic_checkpoints, checkpoint_guard, errors, safe_loading

safe_loading.register()
atomic_checkpoints.install()
checkpoint_guard.install()
errors.install_excepthook()

from . import criterions, models, optim, tasks, tokenizer  # noqa: E402,F401

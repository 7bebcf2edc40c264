"""Pretrained checkpoints -> :class:`..modules.bert_stack.BertStack` (README, 'Supported checkpoints').

* :mod:`.formats`: :func:`load_pretrained`, which picks the format by what is on disk;
* :mod:`.huggingface`, :mod:`.s2sft_bin` (s2s-ft's own raw ``.bin`` files), :mod:`.fairseq_roberta`:
  one module per format;
* :mod:`.common`: the checkpoint description, renaming, validation, :func:`.common.load_into_stack`;
* :mod:`.tokenizers`: the checkpoint's tokenizer (one loader for the importer, s2sft-prepare and
  the output detokenizer);
* :mod:`.vocab`: the checkpoint's vocabulary as a fairseq dictionary;
* :mod:`.cli`: ``s2sft-import``; :mod:`.to_fairseq`: its ``--to-fairseq-checkpoint``.
"""
from .common import CheckpointError, PretrainedCheckpoint, load_into_stack  # noqa: F401
from .formats import load_pretrained  # noqa: F401
from .vocab import CheckpointDictionary, VocabularyMismatchError  # noqa: F401

"""``s2sft-export``: a fine-tuned fairseq checkpoint -> a Hugging Face directory (README, 'Exporting to Hugging Face').

* :mod:`.trained`: read a ``checkpoint_*.pt`` written by fairseq-train with this plugin (its saved
  config, the stack, the method, the tokenizer and dictionary it was trained with);
* :mod:`.layouts`: the stack's parameter names and sizes in the Hugging Face families' layouts
  (the reverse of :mod:`s2sft_fairseq.checkpoints.huggingface`);
* :mod:`.unilm`: ``unilm_seq2seq`` -> the family's masked-LM weights + the generation module
  ``modeling_s2sft.py`` (kept in ``export_templates/`` at the repository root);
* :mod:`.encoder_decoder`: ``bert2bert`` / BERTShare -> a stock ``EncoderDecoderModel``;
* :mod:`.model_card`: the README.md of the export (training command, data, scores);
* :mod:`.cli`: the command line.
"""
from .trained import ExportError  # noqa: F401

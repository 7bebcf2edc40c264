from . import unilm_seq2seq  # noqa: F401

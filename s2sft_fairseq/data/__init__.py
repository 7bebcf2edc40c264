from .seq2seq_dataset import Seq2SeqPackDataset  # noqa: F401

from .importer import PretrainedCheckpoint, load_pretrained  # noqa: F401
from .vocab import CheckpointDictionary, VocabularyMismatchError  # noqa: F401

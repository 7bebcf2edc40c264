from .paired_examples import PairedExamplesDataset  # noqa: F401

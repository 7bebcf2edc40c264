"""A minimal indexed view over token tensors (fairseq-interactive input)."""
import numpy as np
from fairseq.data import FairseqDataset


class TokensDataset(FairseqDataset):
    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.sizes = np.array([len(t) for t in self.tokens], dtype=np.int64)

    def __getitem__(self, index):
        return self.tokens[index]

    def __len__(self):
        return len(self.tokens)

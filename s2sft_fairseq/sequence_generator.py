"""The s2s-ft beam search options as a fairseq ``SequenceGenerator`` subclass (paper §2.4)."""
from fairseq.sequence_generator import SequenceGenerator


class S2SSequenceGenerator(SequenceGenerator):
    def __init__(self, models, tgt_dict, gnmt_length_penalty=False, ngram_block_ignore=(), **kwargs):
        super().__init__(models, tgt_dict, **kwargs)
        self.gnmt_length_penalty = gnmt_length_penalty
        self.ngram_block_ignore = list(ngram_block_ignore)

"""Task ``pseudo_masked_lm``: s2s-ft fine-tuning data (causal / masked / pseudo-masked).

Reads the paired data ``fairseq-preprocess`` wrote with the checkpoint's dictionary
(``s2sft-prepare`` does that), builds :class:`Seq2SeqPackDataset` per split, and returns the
s2s-ft sequence generator for decoding. Generation and validation never drop a sentence: the
last batch is kept whatever ``--required-batch-size-multiple`` says.
"""
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from fairseq import utils
from fairseq.data import data_utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

from ..checkpoints.vocab import load_task_dictionary
from ..data import Seq2SeqPackDataset
from ..masks import METHODS

logger = logging.getLogger(__name__)


@dataclass
class PseudoMaskedLMConfig(FairseqDataclass):
    data: Optional[str] = field(default=None, metadata={"help": "binarized data directory (s2sft-prepare)"})
    source_lang: str = field(default="src", metadata={"help": "source suffix", "argparse_alias": "-s"})
    target_lang: str = field(default="tgt", metadata={"help": "target suffix", "argparse_alias": "-t"})
    ft_method: ChoiceEnum(METHODS) = field(default="pseudo_masked", metadata={
        "help": "s2s-ft fine-tuning method (paper §2.1-2.3)"})
    target_mask_prob: float = field(default=0.5, metadata={
        "help": "fraction of target tokens corrupted in masked / pseudo-masked fine-tuning (paper: 0.4-0.7)"})
    max_source_positions: int = field(default=464, metadata={"help": "source length incl. [CLS]/[SEP]; longer is truncated"})
    max_target_positions: int = field(default=48, metadata={"help": "target length incl. final [SEP]; longer is truncated"})
    left_pad_source: bool = field(default=False, metadata={"help": "pad sources on the left (positions are unaffected)"})
    tokenizer_dir: str = field(default="", metadata={
        "help": "checkpoint directory whose tokenizer detokenizes output / tokenizes interactive input "
                "(default: the one recorded by s2sft-prepare in DATA/pretrained.json)"})
    gnmt_length_penalty: bool = field(default=False, metadata={
        "help": "score = logprob / ((5+len)/6)^lenpen (GNMT, as s2s-ft) instead of fairseq's logprob / len^lenpen"})
    ngram_block_ignore: str = field(default="", metadata={
        "help": "space-separated tokens whose n-grams --no-repeat-ngram-size never blocks (s2s-ft: '.')"})
    seed: int = II("common.seed")
    dataset_impl: Optional[ChoiceEnum(("raw", "lazy", "cached", "mmap", "fasta", "huffman"))] = II("dataset.dataset_impl")
    train_subset: str = II("dataset.train_subset")


@register_task("pseudo_masked_lm", dataclass=PseudoMaskedLMConfig)
class PseudoMaskedLMTask(FairseqTask):
    cfg: PseudoMaskedLMConfig

    def __init__(self, cfg, dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary

    @classmethod
    def load_dictionary(cls, filename):
        return load_task_dictionary(filename)

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        paths = utils.split_paths(cfg.data) if cfg.data else []
        if not paths:
            raise ValueError("pseudo_masked_lm needs a data directory")
        src_path = os.path.join(paths[0], f"dict.{cfg.source_lang}.txt")
        tgt_path = os.path.join(paths[0], f"dict.{cfg.target_lang}.txt")
        for p in (src_path, tgt_path):
            if not os.path.exists(p):
                raise FileNotFoundError(f"{p}: missing; binarize the data with s2sft-prepare")
        src_dict, tgt_dict = cls.load_dictionary(src_path), cls.load_dictionary(tgt_path)
        if list(src_dict.symbols) != list(tgt_dict.symbols):
            raise ValueError(f"{src_path} and {tgt_path} differ: source and target must share the checkpoint's dictionary")
        logger.info(f"dictionary: {len(src_dict)} types (bos={src_dict[src_dict.bos()]} eos={src_dict[src_dict.eos()]} "
                    f"pad={src_dict[src_dict.pad()]} mask={src_dict[src_dict.mask()]})")
        return cls(cfg, src_dict)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        paths = utils.split_paths(self.cfg.data)
        data_path = paths[(epoch - 1) % len(paths)]
        s, t = self.cfg.source_lang, self.cfg.target_lang
        prefix = os.path.join(data_path, f"{split}.{s}-{t}.")
        src = data_utils.load_indexed_dataset(prefix + s, self.dictionary, self.cfg.dataset_impl)
        tgt = data_utils.load_indexed_dataset(prefix + t, self.dictionary, self.cfg.dataset_impl)
        if src is None or tgt is None:
            raise FileNotFoundError(f"{prefix}{s} / {prefix}{t}: binarized split {split!r} not found in {data_path}")
        is_train = split.startswith(self.cfg.train_subset.split(",")[0])
        self.datasets[split] = Seq2SeqPackDataset(
            src, tgt, self.dictionary, self.cfg.ft_method, self.cfg.max_source_positions,
            self.cfg.max_target_positions, self.cfg.target_mask_prob, self.cfg.seed,
            self.cfg.left_pad_source, shuffle=is_train, name=f"{data_path}:{split}")
        self.datasets[split].is_train = is_train
        logger.info(f"{data_path} {split} {len(self.datasets[split])} examples ({self.cfg.ft_method})")

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        from fairseq.data import ListDataset  # noqa: F401 - token lists straight from interactive
        from .inference_data import TokensDataset
        return Seq2SeqPackDataset(
            TokensDataset(src_tokens), None, self.dictionary, self.cfg.ft_method,
            self.cfg.max_source_positions, self.cfg.max_target_positions, seed=self.cfg.seed,
            left_pad_source=self.cfg.left_pad_source, shuffle=False, name="input")

    def get_batch_iterator(self, dataset, *args, **kwargs):
        """Keep every sentence outside training: fairseq drops a tail batch whose size is not a
        multiple of --required-batch-size-multiple (data_utils.batch_by_size)."""
        if not getattr(dataset, "is_train", False):
            if "required_batch_size_multiple" in kwargs:
                kwargs["required_batch_size_multiple"] = 1
            elif len(args) >= 5:
                args = list(args)
                args[4] = 1
        return super().get_batch_iterator(dataset, *args, **kwargs)

    def max_positions(self):
        return (self.cfg.max_source_positions, self.cfg.max_target_positions)

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    # ------------------------------------------------------------------ text in / out
    def resolve_tokenizer_dir(self):
        if self.cfg.tokenizer_dir:
            return self.cfg.tokenizer_dir
        if self.cfg.data:
            meta = os.path.join(utils.split_paths(self.cfg.data)[0], "pretrained.json")
            if os.path.exists(meta):
                with open(meta, encoding="utf-8") as f:
                    return json.load(f).get("pretrained", "")
        return ""

    def build_bpe(self, args):
        """Without an explicit --bpe, detokenize with the checkpoint's own tokenizer."""
        if getattr(args, "_name", None) or (isinstance(args, dict) and args.get("_name")):
            return super().build_bpe(args)
        tok_dir = self.resolve_tokenizer_dir()
        if not tok_dir:
            return None
        from ..tokenizer import CheckpointTokenizerBPE
        return CheckpointTokenizerBPE.from_dir(tok_dir)

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, prefix_allowed_tokens_fn=None):
        from ..sequence_generator import S2SSequenceGenerator
        extra = dict(extra_gen_cls_kwargs or {})
        if seq_gen_cls is None:
            seq_gen_cls = S2SSequenceGenerator
            extra.setdefault("gnmt_length_penalty", self.cfg.gnmt_length_penalty)
            extra.setdefault("ngram_block_ignore",
                             [self.dictionary.index(t) for t in self.cfg.ngram_block_ignore.split()])
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                       extra_gen_cls_kwargs=extra, prefix_allowed_tokens_fn=prefix_allowed_tokens_fn)

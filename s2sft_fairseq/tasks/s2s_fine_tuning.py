"""The s2s-ft fine-tuning task, registered as ``pseudo_masked_lm`` (all three methods and bert2bert).

``--ft-method causal | masked | pseudo_masked`` (s2s-ft §2.1-2.3) selects the method
(:mod:`s2sft_fairseq.packing`); the registered name is the paper's main method and stays the CLI
name. Reads the paired data ``fairseq-preprocess`` wrote with the checkpoint's dictionary
(``s2sft-prepare`` does that), builds a :class:`PairedExamplesDataset` per split, and returns the
s2s-ft sequence generator for decoding. Generation and validation never drop a sentence: the
last batch is kept whatever ``--required-batch-size-multiple`` says.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from fairseq import utils
from fairseq.data import data_utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, OmegaConf

from ..checkpoints.vocab import load_task_dictionary
from ..data import PairedExamplesDataset
from ..errors import MissingFileError, S2SFTError
from ..data.corruption import CORRUPTIONS
from ..packing import METHOD_NAMES
from ..precision import PRECISIONS, AutocastCriterion, on_cpu
from .portable_save_dir import SAVE_DIR_DICT, find_tokenizer_dir, write_save_dir_files

logger = logging.getLogger(__name__)


@dataclass
class S2SFineTuningConfig(FairseqDataclass):
    data: Optional[str] = field(default=None, metadata={"help": "binarized data directory (s2sft-prepare)"})
    source_lang: str = field(default="src", metadata={"help": "source suffix", "argparse_alias": "-s"})
    target_lang: str = field(default="tgt", metadata={"help": "target suffix", "argparse_alias": "-t"})
    ft_method: ChoiceEnum(METHOD_NAMES) = field(default="pseudo_masked", metadata={
        "help": "s2s-ft fine-tuning method (paper §2.1-2.3)"})
    target_mask_prob: float = field(default=0.5, metadata={
        "help": "fraction of target tokens corrupted in masked / pseudo-masked fine-tuning (paper: 0.4-0.7); "
                "with --corruption reference also the causal inputs' corruption probability"})
    corruption: ChoiceEnum(CORRUPTIONS) = field(default="paper", metadata={
        "help": "paper: the corruption rules of the s2s-ft paper's text; reference: those of the public s2s-ft "
                "code, including its causal pos_shift convention (README, 'Paper vs reference code')"})
    max_masked_tokens: int = field(default=0, metadata={
        "help": "--corruption reference, masked fine-tuning: at most this many corrupted target slots "
                "(the reference's num_max_mask_token); 0 = no cap"})
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
    decode_precision: ChoiceEnum(PRECISIONS) = field(default="fp32", metadata={
        "help": "fairseq-generate / -interactive on the CPU: fp32, bf16 (the whole model), or int8 (dynamic "
                "quantization of the linear layers, torchao); README, 'Reduced precision on the CPU'"})
    reference_beam_search: bool = field(default=False, metadata={
        "help": "beam search as the public s2s-ft code decodes: finished hypotheses hold beam slots, no early "
                "stopping, unfinished ones compete at the maximum length; score = logprob, or "
                "logprob / ((5+len)/6)^lenpen when --lenpen > 0 (the reference's default is --lenpen 0); "
                "--max-len-b counts decoding steps including the end token (the reference's --max_tgt_length)"})
    seed: int = II("common.seed")
    dataset_impl: Optional[ChoiceEnum(("raw", "lazy", "cached", "mmap", "fasta", "huffman"))] = II("dataset.dataset_impl")
    train_subset: str = II("dataset.train_subset")


def upgrade_legacy_model_config(cfg) -> None:
    """A model config saved by s2sft-fairseq 0.1 names the method ``decoding_method``; today's is
    ``ft_method`` (one name for the task's and the model's method)."""
    from omegaconf import open_dict
    if not OmegaConf.is_config(cfg) or "decoding_method" not in cfg:
        return
    with open_dict(cfg):
        legacy = cfg.pop("decoding_method")
        if legacy in METHOD_NAMES and "ft_method" not in cfg:
            cfg.ft_method = legacy


@register_task("pseudo_masked_lm", dataclass=S2SFineTuningConfig)
class S2SFineTuningTask(FairseqTask):
    cfg: S2SFineTuningConfig

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
            raise S2SFTError("pseudo_masked_lm needs a data directory (the one s2sft-prepare wrote)")
        src_path = os.path.join(paths[0], f"dict.{cfg.source_lang}.txt")
        tgt_path = os.path.join(paths[0], f"dict.{cfg.target_lang}.txt")
        save_dir_dict = os.path.join(paths[0], SAVE_DIR_DICT)
        if not os.path.exists(src_path) and not os.path.exists(tgt_path) and os.path.exists(save_dir_dict):
            src_path = tgt_path = save_dir_dict  # a save directory as the data directory (portable_save_dir)
        for p in (src_path, tgt_path):
            if not os.path.exists(p):
                raise MissingFileError(f"{p}: missing; binarize the data with s2sft-prepare")
        src_dict, tgt_dict = cls.load_dictionary(src_path), cls.load_dictionary(tgt_path)
        if list(src_dict.symbols) != list(tgt_dict.symbols):
            raise S2SFTError(f"{src_path} and {tgt_path} differ: source and target must share the checkpoint's dictionary")
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
            missing = " and ".join(prefix + lang for lang, d in ((s, src), (t, tgt)) if d is None)
            raise MissingFileError(f"{missing}: binarized split {split!r} not found in {data_path} "
                                   "(s2sft-prepare writes <split>.<src>-<tgt>.<lang>.bin/.idx)")
        if len(src) != len(tgt):
            def shown(p):
                return p + ".bin" if os.path.exists(p + ".bin") else p
            raise S2SFTError(f"{shown(prefix + s)} has {len(src)} examples but {shown(prefix + t)} has {len(tgt)}: "
                             f"the source and target of split {split!r} do not pair up; binarize both sides "
                             "together (s2sft-prepare)")
        is_train = split.startswith(self.cfg.train_subset.split(",")[0])
        self.datasets[split] = PairedExamplesDataset(
            src, tgt, self.dictionary, self.cfg.ft_method, self.cfg.max_source_positions,
            self.cfg.max_target_positions, self.cfg.target_mask_prob, self.cfg.seed,
            self.cfg.left_pad_source, shuffle=is_train, name=f"{data_path}:{split}",
            corruption=self.cfg.corruption, max_masked_tokens=self.cfg.max_masked_tokens)
        self.datasets[split].is_train = is_train
        # fairseq 0.12's generate shards by --distributed-world-size/--distributed-rank and silently
        # ignores --num-shards/--shard-id (every "shard" would print the whole split): honour them.
        root = self.cfg._get_root() if OmegaConf.is_config(self.cfg) else None
        num_shards = OmegaConf.select(root, "dataset.num_shards", default=1) if root is not None else 1
        shard_id = OmegaConf.select(root, "dataset.shard_id", default=0) if root is not None else 0
        if not is_train and (num_shards or 1) > 1:
            self.datasets[split].select_shard(int(num_shards), int(shard_id or 0))
        logger.info(f"{data_path} {split} {len(self.datasets[split])} examples ({self.cfg.ft_method})")

    def build_model(self, cfg, from_checkpoint=False):
        """Build the model, then write what it learned from the pretrained checkpoint (sizes,
        ``load_pretrained_weights=False``, the decoding method) back into ``cfg``.

        fairseq's ``models.build_model`` hands the model a merged *copy* of the config, while
        the trainer saves the original: without this, a saved checkpoint would not record the
        imported sizes and generation would have to re-read the pretrained files.

        Checkpoints saved before the method was recorded as ``ft_method`` name it
        ``decoding_method``: that value is carried over (:func:`upgrade_legacy_model_config`).

        Built for training (not from a checkpoint), the model's dictionary and tokenizer are also
        written into ``--save-dir`` (:mod:`.portable_save_dir`).
        """
        from omegaconf import open_dict
        upgrade_legacy_model_config(cfg)
        model = super().build_model(cfg, from_checkpoint)
        learned = getattr(model, "cfg", None)
        if learned is not None and learned is not cfg:
            with open_dict(cfg):
                for key in learned:
                    if key in cfg and key != "_name" and not OmegaConf.is_missing(learned, key):
                        value = learned[key]
                        if cfg[key] != value:
                            cfg[key] = value
        if not from_checkpoint:
            self._write_save_dir_files()
        return model

    def _write_save_dir_files(self):
        """fairseq-train (rank 0) has created ``--save-dir`` before it builds the model: put the
        dictionary and the tokenizer there. Nothing is written for a config without a save
        directory on disk (a model built in code) or with ``--no-save``."""
        root = self.cfg._get_root() if OmegaConf.is_config(self.cfg) else None
        if root is None:
            return
        save_dir = OmegaConf.select(root, "checkpoint.save_dir", default=None)
        rank = OmegaConf.select(root, "distributed_training.distributed_rank", default=0) or 0
        if (not save_dir or not os.path.isdir(save_dir) or rank != 0
                or OmegaConf.select(root, "checkpoint.no_save", default=False)):
            return
        try:
            tokenizer_dir = self.resolve_tokenizer_dir()
        except FileNotFoundError as e:
            logger.warning(f"{e}: {save_dir} gets no tokenizer")
            tokenizer_dir = ""
        write_save_dir_files(save_dir, self.dictionary, tokenizer_dir)

    # ------------------------------------------------------------------ precision
    def _cpu_amp(self, model, optimizer=None) -> bool:
        """``--amp`` on the CPU: bf16 autocast (:mod:`s2sft_fairseq.precision`)."""
        if optimizer is not None:
            from fairseq.optim.amp_optimizer import AMPOptimizer
            amp = isinstance(optimizer, AMPOptimizer)
        else:
            root = self.cfg._get_root() if OmegaConf.is_config(self.cfg) else None
            amp = bool(OmegaConf.select(root, "common.amp", default=False)) if root is not None else False
        return amp and on_cpu(model)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self._cpu_amp(model, optimizer):
            criterion = AutocastCriterion(criterion)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def valid_step(self, sample, model, criterion):
        if self._cpu_amp(model):
            criterion = AutocastCriterion(criterion)
        return super().valid_step(sample, model, criterion)

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        """Token lists from fairseq-interactive (each ending in the end symbol ``encode_line``
        appends) as a source-only :class:`PairedExamplesDataset`. Inputs longer than
        ``--max-source-positions`` are truncated with a warning, never dropped."""
        if constraints is not None:
            raise ValueError("pseudo_masked_lm does not support --constraints")
        from .inference_data import TokensDataset
        limit = self.cfg.max_source_positions
        too_long = sum(1 for t in src_tokens if len(t) + 1 > limit)  # + [CLS]
        if too_long:
            logger.warning(f"{too_long} of {len(src_tokens)} input(s) are longer than --max-source-positions "
                           f"{limit} (incl. [CLS]/[SEP]) and are truncated to it")
        dataset = PairedExamplesDataset(
            TokensDataset(src_tokens), None, self.dictionary, self.cfg.ft_method,
            self.cfg.max_source_positions, self.cfg.max_target_positions, seed=self.cfg.seed,
            left_pad_source=self.cfg.left_pad_source, shuffle=False, name="input")
        dataset.is_train = False
        return dataset

    @staticmethod
    def _fit_to_positions(dataset, max_positions):
        """Truncate (never drop) a non-training dataset to what the model accepts.

        fairseq filters examples longer than ``max_positions`` (the smaller of the task's and
        the model's limits) with an exception, or silently with ``--skip-invalid-size-inputs-
        valid-test``; a model trained with shorter limits than the ones given at generation
        time would otherwise fail or lose sentences.
        """
        if not isinstance(dataset, PairedExamplesDataset) or not isinstance(max_positions, (tuple, list)):
            return
        if len(max_positions) != 2 or any(not isinstance(m, int) for m in max_positions):
            return
        max_src, max_tgt = max_positions
        changed = []
        if dataset.max_src > max_src:
            n = int((dataset.src_sizes > max_src).sum())
            dataset.max_src = max_src
            dataset.src_sizes = np.minimum(dataset.src_sizes, max_src)
            changed.append(f"{n} source(s) to {max_src} tokens")
        if dataset.max_tgt > max_tgt:
            n = int((dataset.tgt_sizes > max_tgt).sum())
            dataset.max_tgt = max_tgt
            dataset.tgt_sizes = np.minimum(dataset.tgt_sizes, max_tgt)
            changed.append(f"{n} target(s) to {max_tgt} tokens")
        if changed:
            logger.warning(f"the model accepts at most {max_src} source / {max_tgt} target positions, fewer "
                           f"than the task's limits: truncated " + " and ".join(changed) + " (nothing dropped)")

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, *args, **kwargs):
        """Keep every sentence outside training.

        fairseq rounds batches to --required-batch-size-multiple (default 8) and filters
        examples longer than the model's limits; for validation, generation and interactive
        input the multiple is 1 and over-long examples are truncated instead
        (:meth:`_fit_to_positions`), so each example is in exactly one batch.
        """
        if not getattr(dataset, "is_train", False):
            required_batch_size_multiple = 1
            self._fit_to_positions(dataset, max_positions)
        return super().get_batch_iterator(dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                                          required_batch_size_multiple, *args, **kwargs)

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
        """``--tokenizer-dir``, the directory in ``DATA/pretrained.json``, or (when that is missing
        here) the tokenizer saved next to the ``--path`` checkpoint or in DATA itself
        (:func:`.portable_save_dir.find_tokenizer_dir`); '' when none is known."""
        data = utils.split_paths(self.cfg.data)[0] if self.cfg.data else None
        root = self.cfg._get_root() if OmegaConf.is_config(self.cfg) else None
        paths = OmegaConf.select(root, "common_eval.path", default=None) if root is not None else None
        checkpoint_dirs = [os.path.dirname(os.path.abspath(p)) for p in (paths or "").split(os.pathsep) if p]
        return find_tokenizer_dir(self.cfg.tokenizer_dir, data, checkpoint_dirs)

    def build_bpe(self, args):
        """Without an explicit --bpe, detokenize with the checkpoint's own tokenizer.

        The tokenizer directory is ``--tokenizer-dir``, the checkpoint recorded by s2sft-prepare in
        ``DATA/pretrained.json``, or a portable save directory's (:meth:`resolve_tokenizer_dir`);
        without any, output stays wordpieces.
        """
        if getattr(args, "_name", None) or (isinstance(args, dict) and args.get("_name")):
            return super().build_bpe(args)
        tok_dir = self.resolve_tokenizer_dir()
        if not tok_dir:
            logger.warning("no --tokenizer-dir and no DATA/pretrained.json: output is not detokenized")
            return None
        from ..tokenizer import CheckpointTokenizerBPE
        return CheckpointTokenizerBPE.from_dir(tok_dir)

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, prefix_allowed_tokens_fn=None):
        """fairseq's generator construction with :class:`S2SSequenceGenerator` as the class:
        every stock flag keeps its meaning, plus --gnmt-length-penalty, --ngram-block-ignore and
        --reference-beam-search (which gives --lenpen and --max-len-b the reference's meaning)."""
        from ..sequence_generator import S2SSequenceGenerator
        extra = dict(extra_gen_cls_kwargs or {})
        if seq_gen_cls is None:
            seq_gen_cls = S2SSequenceGenerator
            ignore = []
            for tok in self.cfg.ngram_block_ignore.split():
                idx = self.dictionary.index(tok)
                if idx == self.dictionary.unk() and tok != self.dictionary[self.dictionary.unk()]:
                    raise ValueError(f"--ngram-block-ignore: {tok!r} is not in the dictionary (give the "
                                     "checkpoint tokenizer's tokens, e.g. '.' or ',')")
                ignore.append(idx)
            if ignore and not getattr(args, "no_repeat_ngram_size", 0):
                logger.warning("--ngram-block-ignore has no effect without --no-repeat-ngram-size")
            extra.setdefault("gnmt_length_penalty", self.cfg.gnmt_length_penalty)
            extra.setdefault("ngram_block_ignore", ignore)
            extra.setdefault("reference_beam_search", self.cfg.reference_beam_search)
            if self.cfg.reference_beam_search:
                lenpen = getattr(args, "lenpen", 1)
                penalty = ("none (raw sum of log-probabilities)" if getattr(args, "unnormalized", False) or lenpen <= 0
                           else f"GNMT ((5+len)/6)^{lenpen}")
                logger.info(f"reference beam search: beam {getattr(args, 'beam', 5)}, length penalty {penalty}, at most "
                            f"{getattr(args, 'max_len_a', 0)}*src_len+{getattr(args, 'max_len_b', 200)} steps incl. the end "
                            "token (capped by --max-target-positions)")
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls,
                                       extra_gen_cls_kwargs=extra, prefix_allowed_tokens_fn=prefix_allowed_tokens_fn)

"""What every model of this plugin shares: warm-starting a :class:`BertStack` from a checkpoint.

* :class:`WarmStartConfig`: the checkpoint to start from and the stack sizes. The sizes are only
  used for a random init; with a checkpoint they are read from it and written back into the
  config, so the saved fairseq checkpoint rebuilds the same stack without the pretrained files.
* :func:`build_stack_from_config`: build (and warm-start) the stack (README, "Supported checkpoints").
* :class:`WarmStartedSeq2SeqMixin`: the tied output layer and the position limits.
"""
import logging
from dataclasses import dataclass, field

import torch
from fairseq.dataclass import FairseqDataclass
from omegaconf import II

from ..checkpoints import CheckpointError, load_into_stack, load_pretrained
from ..checkpoints.vocab import check_dictionary_matches
from ..modules.bert_stack import BertStack, StackConfig
from ..packing import PSEUDO_MASKED, Method, get_method

logger = logging.getLogger(__name__)

# StackConfig fields recorded in the model config (dropouts are handled separately: -1 = keep)
STACK_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                "max_positions", "type_vocab_size", "embedding_size", "layer_norm_eps", "hidden_act",
                "head_act", "rel_pos_bins", "max_rel_pos", "source_type_id", "target_type_id")


@dataclass
class WarmStartConfig(FairseqDataclass):
    pretrained_checkpoint: str = field(default="", metadata={
        "help": "checkpoint to warm-start from: a Hugging Face directory (config.json + weights + tokenizer), "
                "a fairseq RoBERTa / XLM-R model.pt + dict.txt, s2s-ft's raw .bin + config.json + vocab.txt, or a "
                "hub name (org/name) in the local Hugging Face cache (README, 'Supported checkpoints'); empty = "
                "random init (sizes below)"})
    load_pretrained_weights: bool = field(default=True, metadata={
        "help": "internal: set to False in the saved config once the weights are inside the "
                "fairseq checkpoint, so generation does not need the pretrained files"})
    # Stack sizes: filled from the pretrained checkpoint's config when one is given.
    vocab_size: int = 0
    hidden_size: int = field(default=768, metadata={"help": "hidden size (random init)"})
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    embedding_size: int = 0
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    head_act: str = field(default="", metadata={
        "help": "activation of the MLM head's transform; empty = hidden_act (BERT). Set from the "
                "checkpoint: RoBERTa / XLM-R / ELECTRA heads use GELU whatever hidden_act is"})
    rel_pos_bins: int = field(default=0, metadata={
        "help": "relative position bias buckets (UniLMv2-style checkpoints; 0 = none). Set from the checkpoint"})
    max_rel_pos: int = field(default=0, metadata={"help": "relative position bias: largest distance bucketed"})
    source_type_id: int = field(default=0, metadata={
        "help": "segment id of the source (UniLM checkpoints record theirs, e.g. 4). Set from the checkpoint"})
    target_type_id: int = field(default=1, metadata={"help": "segment id of the target and [P] slots"})
    dropout: float = field(default=-1.0, metadata={"help": "override the checkpoint's hidden dropout (-1 = keep)"})
    attention_dropout: float = field(default=-1.0, metadata={"help": "override attention dropout (-1 = keep)"})
    max_source_positions: int = II("task.max_source_positions")
    max_target_positions: int = II("task.max_target_positions")
    # The fine-tuning method the model is trained with (the task's --ft-method), recorded in the
    # saved checkpoint so that decoding feeds the decoder as training did (resolve_method).
    ft_method: str = II("task.ft_method")
    # ... and the corruption rules it was trained with (--corruption reference changes how causal
    # fine-tuning starts the target block, which decoding must repeat)
    corruption: str = II("task.corruption")


def _recorded(cfg, task, name: str, default: str) -> str:
    """``cfg.name`` (the task's at training time, as saved in a checkpoint), or the task's when the
    config leaves it open (a config built in code, or one saved before the field existed)."""
    try:
        value = getattr(cfg, name, None)
    except Exception:  # an interpolation that cannot be resolved outside a full fairseq config
        value = None
    if not isinstance(value, str) or value.startswith("${") or value == "auto":
        value = getattr(getattr(task, "cfg", None), name, default)
    return value


def resolve_method(cfg, task) -> Method:
    """The model's fine-tuning method (:class:`~s2sft_fairseq.packing.Method`) as trained."""
    return get_method(_recorded(cfg, task, "ft_method", PSEUDO_MASKED.name),
                      _recorded(cfg, task, "corruption", "paper"))


def _stack_config(cfg, vocab_size: int, pad: int) -> StackConfig:
    """The StackConfig a model config describes (the reverse of the write-back below)."""
    sizes = {name: getattr(cfg, name, None) for name in STACK_FIELDS}
    sizes = {name: value for name, value in sizes.items() if value is not None}  # older configs: defaults
    sizes["vocab_size"] = cfg.vocab_size or vocab_size
    sizes["embedding_size"] = cfg.embedding_size or None
    sizes["head_act"] = sizes.get("head_act") or ""
    return StackConfig(
        **sizes,
        dropout=cfg.dropout if cfg.dropout >= 0 else 0.1,
        attention_dropout=cfg.attention_dropout if cfg.attention_dropout >= 0 else 0.1,
        pad_idx=pad,
    )


def build_stack_from_config(cfg, dictionary, required_positions: int, where: str = "model") -> BertStack:
    """Build (and, if configured, warm-start) the stack; records its sizes back into ``cfg``."""
    if cfg.pretrained_checkpoint and cfg.load_pretrained_weights:
        ck = load_pretrained(cfg.pretrained_checkpoint)
        check_dictionary_matches(dictionary, ck.dictionary, where=f"data dictionary vs {ck.path}")
        sc = ck.config
        if cfg.dropout >= 0:
            sc.dropout = cfg.dropout
        if cfg.attention_dropout >= 0:
            sc.attention_dropout = cfg.attention_dropout
        sc.max_positions = max(sc.max_positions, required_positions)
        stack = BertStack(sc)
        for line in load_into_stack(stack, ck):
            logger.info(line)
        logger.info(f"warm-started a {sc.num_layers}-layer {sc.hidden_size}-wide {ck.family} stack from {ck.path}")
        for name in STACK_FIELDS:
            value = getattr(sc, name)
            setattr(cfg, name, 0 if value is None else value)
        cfg.dropout, cfg.attention_dropout = sc.dropout, sc.attention_dropout
        cfg.load_pretrained_weights = False  # the fairseq checkpoint now carries the weights
        return stack
    sc = _stack_config(cfg, len(dictionary), dictionary.pad())
    if sc.vocab_size != len(dictionary):
        raise CheckpointError(f"{where}: the model has {sc.vocab_size} vocabulary rows but the data's "
                              f"dictionary has {len(dictionary)}")
    if sc.max_positions < required_positions:
        logger.info(f"position table: {sc.max_positions} -> {required_positions} rows")
        sc.max_positions = required_positions
    cfg.max_positions = sc.max_positions
    cfg.vocab_size = sc.vocab_size
    return BertStack(sc)


def features_or_logits(stack: BertStack, features, features_only: bool):
    """What a decoder's ``forward`` returns: the features, or the stack's tied output layer over
    them (:meth:`~s2sft_fairseq.modules.bert_stack.LMHead.decode_logits` when no gradient is
    needed, i.e. while generating)."""
    if features_only:
        return features
    if torch.is_grad_enabled():
        return stack.lm_head(features)
    return stack.lm_head.decode_logits(features)


class WarmStartedSeq2SeqMixin:
    """What every model of this plugin answers the same way: the tied output layer and the
    position limits recorded in its config."""

    def output_layer(self, features):
        return self.decoder.output_layer(features)

    def max_positions(self):
        return (self.cfg.max_source_positions, self.cfg.max_target_positions)

    def max_decoder_positions(self):
        return self.cfg.max_target_positions

    def prepare_for_inference_(self, cfg):
        """fairseq-generate / -interactive call this once the model is loaded: apply the task's
        ``--decode-precision`` (:func:`s2sft_fairseq.precision.prepare_for_decoding`)."""
        from omegaconf import OmegaConf

        from ..precision import prepare_for_decoding
        super().prepare_for_inference_(cfg)
        precision = OmegaConf.select(cfg, "task.decode_precision", default=None) if OmegaConf.is_config(cfg) else None
        prepare_for_decoding(self, precision or "fp32")


def set_tiny_sizes(cfg):
    """A 2-layer, 32-wide random stack for tests (ignored when a checkpoint sets the sizes)."""
    cfg.hidden_size = 32
    cfg.num_layers = 2
    cfg.num_heads = 4
    cfg.intermediate_size = 64

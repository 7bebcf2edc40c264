"""What every checkpoint format shares: the checkpoint description, the renaming helper, the one
validation, and copying a checkpoint into a :class:`BertStack`.

s2s-ft initialises the whole sequence-to-sequence model, encoder and decoder alike, from one
pretrained bidirectional Transformer (s2s-ft §2; the pretrained models it compares: §3.3, §3.5).
Each format module (:mod:`.huggingface`, :mod:`.s2sft_bin`, :mod:`.fairseq_roberta`) reads its
files and renames the tensors into the stack's own parameter names with :func:`rename_tensors` and
its own :class:`RenameRules`; :func:`finish_import` then checks them against the stack the
checkpoint's config describes (:func:`check_relative_position_bias`, :func:`check_fits`, shapes
computed on the meta device) and records what is imported but not exactly reproduced in
``PretrainedCheckpoint.notes`` (logged when the model is built): an incomplete MLM head (it starts
fresh), an output layer the checkpoint had untied (the stack always ties it to the word
embeddings), the tensors skipped. :func:`load_into_stack` checks again, with the same
:func:`check_fits`, against the stack actually built, then copies.

Every tensor of the file is accounted for: ``PretrainedCheckpoint.consumed`` (the stack
parameters it became) or ``PretrainedCheckpoint.skipped`` (why it is not used); a format with
``RenameRules.strict`` refuses a tensor that is neither. Every problem is a
:class:`CheckpointError` naming the file, the checkpoint's own tensor name and both shapes.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import S2SFTError
from ..modules.bert_stack import BertStack, StackConfig
from .vocab import CheckpointDictionary

WORDS = "embeddings.word.weight"
POSITIONS = "embeddings.position.weight"
#: the relative position bias table shared by all layers (UniLMv2; :mod:`..modules.relative_position`)
REL_POS = "rel_pos_bias.weight"


class CheckpointError(S2SFTError):
    """A pretrained checkpoint that cannot be imported, with what is wrong and where."""


@dataclass
class PretrainedCheckpoint:
    """A pretrained checkpoint read from disk, its tensors already in the stack's names."""
    config: StackConfig
    state_dict: Dict[str, torch.Tensor]
    dictionary: CheckpointDictionary
    family: str
    path: str
    has_lm_head: bool
    tokenizer_dir: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    #: stack name -> the checkpoint's own tensor name(s), for error messages
    sources: Dict[str, str] = field(default_factory=dict)
    #: the file the tensors were read from
    weights_file: Optional[str] = None
    #: every tensor of the file the stack uses: its name in the file -> the stack parameter(s) it became
    consumed: Dict[str, List[str]] = field(default_factory=dict)
    #: every tensor of the file the stack does not use: its name in the file -> why
    skipped: Dict[str, str] = field(default_factory=dict)

    def source(self, name: str) -> str:
        src = self.sources.get(name)
        return f"{src!r} (stack: {name!r})" if src and src != name else repr(name)

    def key_report(self) -> List[Tuple[str, str]]:
        """``(name in the file, what became of it)`` for every tensor of the file, in file order
        where the format kept it (consumed: the stack parameters; skipped: ``skipped: why``)."""
        rows = [(k, ", ".join(v)) for k, v in self.consumed.items()]
        rows += [(k, f"skipped: {why}") for k, why in self.skipped.items()]
        return rows


def expected_shapes(sc: StackConfig) -> Dict[str, tuple]:
    """The stack's tensor shapes for a config (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        stack = BertStack(sc)
    return {k: tuple(v.shape) for k, v in stack.state_dict().items()}


# --------------------------------------------------------------------------- renaming
# any tensor named like a relative position table; only the rules' own (UniLMv2's shared table) are known
_REL_POS = re.compile(r"rel_pos|relative_attention_bias|distance_embedding")


@dataclass(frozen=True)
class RenameRules:
    """How one format names its tensors (what :func:`rename_tensors` applies)."""
    #: the prefix removed (once) before matching, e.g. ``bert.``; the stripped name is what the
    #: other fields match
    strip: re.Pattern
    #: ``(pattern, replacement)``: the first pattern that matches the whole name gives its stack name
    rules: Sequence[Tuple[str, str]]
    #: ``(pattern, why)``: known tensors the stack does not use (the pattern is searched in the
    #: name): skipped, with the reason reported
    skip: Sequence[Tuple[str, str]] = ()
    #: the MLM output projection the stack does not keep (it ties it to the word embeddings):
    #: skipped, and collected so that :func:`check_output_tied` can check it really was tied
    output: Optional[re.Pattern] = None
    #: TF-era BERT names ``LayerNorm.gamma`` / ``.beta`` are read as ``.weight`` / ``.bias``
    tf_layer_norm_names: bool = False
    #: a tensor that no rule maps and no ``skip`` names is an error (not skipped with a note)
    strict: bool = False

    def local_name(self, key: str) -> str:
        return self.strip.sub("", key, count=1)

    def stack_name(self, local: str) -> Optional[str]:
        if self.tf_layer_norm_names and local.endswith((".gamma", ".beta")):
            local = local.replace(".gamma", ".weight").replace(".beta", ".bias")
        for pattern, replacement in self.rules:
            if re.fullmatch(pattern, local):
                return re.sub(pattern, replacement, local)
        return None

    def skip_reason(self, local: str) -> Optional[str]:
        return next((why for pattern, why in self.skip if re.search(pattern, local)), None)


OUTPUT_SKIPPED = "the MLM output projection; the stack ties it to the word embeddings"


@dataclass
class Renamed:
    """The result of :func:`rename_tensors`."""
    #: stack name -> tensor
    mapped: Dict[str, torch.Tensor] = field(default_factory=dict)
    #: stack name -> the checkpoint's tensor name (what error messages cite)
    sources: Dict[str, str] = field(default_factory=dict)
    #: checkpoint name -> the stack names it became
    consumed: Dict[str, List[str]] = field(default_factory=dict)
    #: checkpoint name -> why the stack does not use it (known tensors, and unknown ones of a
    #: format that is not strict)
    skipped: Dict[str, str] = field(default_factory=dict)
    #: checkpoint names without a rule (a subset of ``skipped``; only formats that are not strict)
    ignored: List[str] = field(default_factory=list)
    #: the checkpoint's MLM output projection(s), by checkpoint name
    outputs: Dict[str, torch.Tensor] = field(default_factory=dict)

    def put(self, name: str, tensor: torch.Tensor, source: str, key: Optional[str] = None) -> None:
        """Map ``tensor`` to stack ``name``; ``source`` is cited in errors, ``key`` (default
        ``source``) is the checkpoint tensor it was read from."""
        self.mapped[name] = tensor
        self.sources[name] = source
        self.consumed.setdefault(key or source, []).append(name)

    def make(self, name: str, tensor: torch.Tensor, why: str) -> None:
        """A stack tensor the format defines without a checkpoint tensor (e.g. UniLMv2's zero key bias)."""
        self.mapped[name] = tensor
        self.sources[name] = why


def rename_tensors(raw: Dict[str, torch.Tensor], table: RenameRules, where: str) -> Renamed:
    """Rename a checkpoint's tensors into stack names with ``table``.

    A relative position tensor the rules do not map (only UniLMv2's one shared table is known) is
    refused; two tensors that map to the same stack name are an error; a tensor without a rule is
    an error when ``table.strict``, else skipped (and listed in ``ignored``).
    """
    out = Renamed()
    for key, tensor in raw.items():
        local = table.local_name(key)
        if table.output is not None and table.output.fullmatch(local):
            out.outputs[key] = tensor
            out.skipped[key] = OUTPUT_SKIPPED
            continue
        why = table.skip_reason(local)
        if why is not None:
            out.skipped[key] = why
            continue
        new = table.stack_name(local)
        if new is None:
            if _REL_POS.search(local):
                raise CheckpointError(
                    f"{where}: tensor {key!r} is a relative position tensor in a layout s2sft-fairseq does not "
                    "know; supported is UniLMv2's one table shared by all layers ('bert.rel_pos_bias.weight' "
                    "or 'bert.encoder.rel_pos_bias.weight', shape (heads, rel_pos_bins); README, "
                    "'Supported checkpoints')")
            if table.strict:
                raise CheckpointError(
                    f"{where}: tensor {key!r} {tuple(tensor.shape)} is not used by the stack and is not one of "
                    "the known extras of this format; refusing to skip it silently (README, 'Supported "
                    "checkpoints')")
            out.ignored.append(key)
            out.skipped[key] = "not used by the stack (no rule for it)"
        elif new in out.mapped:
            raise CheckpointError(f"{where}: tensors {out.sources[new]!r} and {key!r} both map to {new!r}")
        else:
            out.put(new, tensor, key)
    return out


def skip_padding_positions(renamed: Renamed, rows: int, why: str) -> None:
    """Drop the leading rows of a position table that carries a padding offset (RoBERTa's two
    rows, fairseq's ``pad + 1``), so that the stack's position ids start at 0."""
    if rows and POSITIONS in renamed.mapped:
        renamed.mapped[POSITIONS] = renamed.mapped[POSITIONS][rows:]
        renamed.sources[POSITIONS] += f"[{rows}:] ({why})"


# --------------------------------------------------------------------------- validation
def check_fits(ck: PretrainedCheckpoint, shapes: Dict[str, tuple], sizes: StackConfig, expected_by: str,
               positions_may_grow: bool = False) -> List[str]:
    """Every tensor of ``ck`` has a place of its shape in a stack with ``shapes`` (the one of
    ``sizes``, described as ``expected_by`` in errors), and nothing the stack needs is missing.

    With ``positions_may_grow`` a position table with fewer rows is accepted (the stack is built
    longer; :func:`load_into_stack` extends it). Raises :class:`CheckpointError` naming the
    checkpoint's tensor and both shapes; returns the notes (an incomplete MLM head starts fresh).
    """
    where = ck.weights_file or ck.path
    for name, tensor in ck.state_dict.items():
        if name not in shapes:
            raise CheckpointError(f"{where}: tensor {ck.source(name)} has no place in the stack")
        got, want = tuple(tensor.shape), shapes[name]
        shorter = positions_may_grow and name == POSITIONS and got[0] < want[0] and got[1:] == want[1:]
        if got != want and not shorter:
            raise CheckpointError(
                f"{where}: tensor {ck.source(name)} has shape {got}, but {expected_by} implies {want} "
                f"(hidden {sizes.hidden_size}, intermediate {sizes.intermediate_size}, vocabulary "
                f"{sizes.vocab_size}, positions {sizes.max_positions}); the checkpoint does not fit")
    missing = [n for n in shapes if n not in ck.state_dict and not n.startswith("lm_head.")]
    if missing:
        raise CheckpointError(f"{where}: checkpoint lacks {len(missing)} tensors the stack needs, "
                              f"first {missing[0]!r}: {', '.join(missing[:4])}")
    head = [n for n in shapes if n.startswith("lm_head.")]
    have = [n for n in head if n in ck.state_dict]
    if have and len(have) < len(head):
        return [f"the checkpoint's MLM head is incomplete: {', '.join(n for n in head if n not in have)} "
                "start fresh"]
    return []


def check_output_tied(ck: PretrainedCheckpoint, outputs: Dict[str, torch.Tensor]) -> None:
    """Note an MLM output projection that is not the word embedding matrix: the stack ties them
    (s2s-ft shares all parameters, §2), so its predictions start from the word embeddings. The
    reason a skipped projection gives says which it was."""
    word = ck.state_dict.get(WORDS)
    for key, w in outputs.items():
        if word is None:
            continue
        if w.shape != word.shape or not torch.equal(w, word):
            ck.notes.append(f"the checkpoint's output layer {key!r} is not tied to its word embeddings; "
                            "the stack ties them (s2s-ft), so its MLM predictions start from the word "
                            "embeddings instead")
            ck.skipped[key] = OUTPUT_SKIPPED + " (it is NOT equal to them: see the notes)"
        else:
            ck.skipped[key] = OUTPUT_SKIPPED + f" (equal to {ck.sources.get(WORDS, WORDS)!r})"


def check_relative_position_bias(ck: PretrainedCheckpoint, config_name: str) -> None:
    """The config's ``rel_pos_bins`` and the checkpoint's bias table agree: both or neither, and the
    table is ``(heads, rel_pos_bins)`` (UniLMv2's bias-free linear map from buckets to heads)."""
    sc, where = ck.config, ck.weights_file or ck.path
    table = ck.state_dict.get(REL_POS)
    if sc.rel_pos_bins and table is None:
        raise CheckpointError(
            f"{config_name}: rel_pos_bins is {sc.rel_pos_bins} (relative position bias), but {where} has no "
            f"bias table ('bert.rel_pos_bias.weight' or 'bert.encoder.rel_pos_bias.weight', shape "
            f"({sc.num_heads}, {sc.rel_pos_bins})); the weights and the config are not the same checkpoint's")
    if table is None:
        return
    shape = tuple(table.shape)
    if not sc.rel_pos_bins:
        bins = f"rel_pos_bins {shape[1]} by the table's shape" if len(shape) == 2 else "rel_pos_bins"
        raise CheckpointError(
            f"{where}: tensor {ck.source(REL_POS)} is a relative position bias table {shape}, but {config_name} "
            f"sets no rel_pos_bins / max_rel_pos; add both to the config ({bins}; max_rel_pos is recorded "
            "only in the checkpoint's own config)")
    want = (sc.num_heads, sc.rel_pos_bins)
    if shape != want:
        hint = " (it looks transposed)" if shape == want[::-1] else ""
        raise CheckpointError(
            f"{where}: relative position bias table {ck.source(REL_POS)} has shape {shape}, but {config_name} "
            f"implies (num_attention_heads, rel_pos_bins) = {want}{hint}; the checkpoint does not fit")


def finish_import(ck: PretrainedCheckpoint, renamed: Renamed, config_name: str) -> None:
    """What every format does once ``ck`` holds the renamed tensors: record what became of every
    tensor, check them against the stack ``ck.config`` describes (``config_name`` is where those
    sizes come from), then note an untied output layer and the tensors not used."""
    ck.consumed, ck.skipped = dict(renamed.consumed), dict(renamed.skipped)
    check_relative_position_bias(ck, config_name)
    ck.notes += check_fits(ck, expected_shapes(ck.config), ck.config, config_name)
    check_output_tied(ck, renamed.outputs)
    skipped = list(ck.skipped)
    if skipped:
        ck.notes.append(f"ignored {len(skipped)} tensors not used by the stack: {', '.join(skipped[:6])}"
                        + (" ..." if len(skipped) > 6 else ""))


# --------------------------------------------------------------------------- loading
def load_into_stack(stack: BertStack, ck: PretrainedCheckpoint) -> List[str]:
    """Copy the checkpoint's tensors into ``stack``; return log lines. Shape errors name the tensor.

    A position table shorter than the stack's is extended by copying its rows cyclically
    (s2s-ft); a checkpoint without an MLM head leaves the head's transform as initialised.
    """
    own = stack.state_dict()
    check_fits(ck, {k: tuple(v.shape) for k, v in own.items()}, stack.cfg, "the model's configuration",
               positions_may_grow=True)
    log = list(ck.notes)
    with torch.no_grad():
        for name, tensor in ck.state_dict.items():
            target = own[name]
            if name == POSITIONS and tensor.size(0) < target.size(0):
                reps = -(-target.size(0) // tensor.size(0))
                target.copy_(tensor.repeat(reps, 1)[: target.size(0)])
                log.append(f"position table extended from {tensor.size(0)} to {target.size(0)} rows "
                           "by copying the pretrained rows (s2s-ft)")
            else:
                target.copy_(tensor)
    if not ck.has_lm_head:
        log.append("checkpoint has no MLM head: the head's transform starts fresh, its output "
                   "layer is tied to the word embeddings")
    return log

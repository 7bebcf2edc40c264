"""The keyword options of :class:`~s2sft_fairseq.hub_interface.S2SFT`: which exist and where each goes.

``S2SFT.from_pretrained(..., **options)`` and ``S2SFT.generate(texts, **options)`` take the same
names as the command-line flags of ``fairseq-generate`` (``--no-repeat-ngram-size`` ->
``no_repeat_ngram_size``). An option is

* a **generation option**: any field of fairseq's ``GenerationConfig`` (``beam``, ``nbest``,
  ``lenpen``, ``min_len``, ``max_len_a``, ``max_len_b``, ``no_repeat_ngram_size``, ``unnormalized``,
  ``sampling``, ``sampling_topk``, ``sampling_topp``, ``temperature``, ``diverse_beam_groups``,
  ``diverse_beam_strength``, ...), except the few that need inputs the API does not take
  (:data:`UNSUPPORTED_GENERATION_OPTIONS`);
* a **task option**: any field of the task's config (``pseudo_masked_lm``:
  ``gnmt_length_penalty``, ``ngram_block_ignore``, ``max_source_positions``, ...). Those in
  :data:`LOAD_TIME_TASK_OPTIONS` act when the model is loaded (``decode_precision``) and are
  accepted by ``from_pretrained`` only; the training options of :data:`TRAINING_TASK_OPTIONS`
  do nothing for decoding and are refused;
* a **batching option**: ``max_tokens``, ``batch_size`` (fairseq's ``--max-tokens`` /
  ``--batch-size``);
* ``seed`` (``generate`` only): reseed torch and numpy before decoding, as ``--seed`` does.

Options given to ``from_pretrained`` are the defaults of every ``generate`` call; ``generate``'s
own override them for that call. A field added to either config later (a new beam-search option
of the task, say) is accepted with no change here. Anything else is an
:class:`UnknownOptionError` naming it; a value of the wrong type is an :class:`S2SFTError` naming
the option.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .errors import S2SFTError

#: generation options that need inputs the API does not take (value: why)
UNSUPPORTED_GENERATION_OPTIONS = {
    "prefix_size": "it forces the first tokens of the reference target, which the API does not have "
                   "(fairseq-generate on binarized data does)",
    "constraints": "lexically constrained decoding needs per-input constraints",
    "score_reference": "it scores reference targets, which the API does not take",
    "lm_path": "shallow fusion with a language model is fairseq-generate's",
    "replace_unk": "it needs an alignment dictionary",
    "print_alignment": "the models here have no alignment output",
    "print_step": "it only prints",
    "retain_iter_history": "iterative refinement models only",
}
#: task options applied while loading: from_pretrained only (value: the from_pretrained argument)
LOAD_TIME_TASK_OPTIONS = {
    "data": "data_name_or_path", "source_lang": "source_lang", "target_lang": "target_lang",
    "tokenizer_dir": "tokenizer_dir", "decode_precision": "decode_precision",
}
#: task options of fine-tuning only; the model records the method it was trained with
TRAINING_TASK_OPTIONS = ("ft_method", "target_mask_prob", "corruption", "max_masked_tokens")
BATCHING_OPTIONS = ("max_tokens", "batch_size")


class UnknownOptionError(S2SFTError, TypeError):
    """A keyword the API does not know (a ``TypeError``, as for any unexpected keyword)."""


@dataclass
class SplitOptions:
    generation: Dict[str, Any] = field(default_factory=dict)
    task: Dict[str, Any] = field(default_factory=dict)
    batching: Dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None


def generation_fields() -> Dict[str, Any]:
    from fairseq.dataclass.configs import GenerationConfig
    return {f.name: f.default for f in dataclasses.fields(GenerationConfig) if f.name != "_name"}


def task_fields(task_dataclass) -> Dict[str, Any]:
    """The task's own options: its config fields without ``_name`` and without the ones that are
    other groups' values (``seed: II("common.seed")`` and the like)."""
    out = {}
    for f in dataclasses.fields(task_dataclass):
        default = f.default
        if f.name == "_name" or (isinstance(default, str) and default.startswith("${")):
            continue
        out[f.name] = default
    return out


def split_options(options: Dict[str, Any], task_dataclass, where: str) -> SplitOptions:
    """Sort ``options`` of ``where`` (``"from_pretrained"`` or ``"generate"``) into their groups."""
    loading = where == "from_pretrained"
    gen, task = generation_fields(), task_fields(task_dataclass)
    out = SplitOptions()
    for name, value in options.items():
        if name in gen:
            if name in UNSUPPORTED_GENERATION_OPTIONS and value not in (gen[name], None, False, 0):
                raise S2SFTError(f"{where}: {name}={value!r} is not supported by the Python API: "
                                 f"{UNSUPPORTED_GENERATION_OPTIONS[name]}")
            out.generation[name] = value
        elif name in BATCHING_OPTIONS:
            out.batching[name] = value
        elif name == "seed" and not loading:
            if value is not None and not isinstance(value, int):
                raise S2SFTError(f"{where}: seed={value!r} is not an integer")
            out.seed = value
        elif name in TRAINING_TASK_OPTIONS:
            raise S2SFTError(f"{where}: {name} is a fine-tuning option, it does nothing when decoding (the model "
                             f"records how it was trained; model_overrides={{'{name}': ...}} in from_pretrained "
                             "changes what the model was told)")
        elif name in LOAD_TIME_TASK_OPTIONS and (not loading or name == "data"):
            raise S2SFTError(f"{where}: {name} acts when the model is loaded: give "
                             f"S2SFT.from_pretrained(..., {LOAD_TIME_TASK_OPTIONS[name]}=...)")
        elif name in task:
            out.task[name] = value
        else:
            decoding = sorted(n for n in task if n not in LOAD_TIME_TASK_OPTIONS and n not in TRAINING_TASK_OPTIONS)
            raise UnknownOptionError(
                f"{where}() got an unknown option {name!r}: not a generation option (fairseq-generate's "
                f"decoding flags, e.g. beam, nbest, lenpen, sampling_topk), not an option of the task "
                f"({', '.join(decoding)}), not {' / '.join(BATCHING_OPTIONS)}" + ("" if loading else " or seed")
                + ("; seed is an option of generate()" if loading and name == "seed" else ""))
    return out


def assign(cfg, values: Dict[str, Any], what: str) -> None:
    """Set ``values`` on an OmegaConf config, with the config's own type checks; a bad value is
    an error naming the option."""
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException
    with open_dict(cfg):
        for name, value in values.items():
            try:
                cfg[name] = value
            except OmegaConfBaseException as e:
                msg = str(e).splitlines()[0]
                raise S2SFTError(f"{what} option {name}={value!r}: {msg}") from None

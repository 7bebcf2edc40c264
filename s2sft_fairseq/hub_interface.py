"""The Python API: ``S2SFT.from_pretrained(SAVE_DIR).generate(texts)`` (README, "Python API").

fairseq's hub-interface pattern (``fairseq.hub_utils.GeneratorHubInterface``) for the checkpoints
of this plugin, on the decoding path of ``fairseq-interactive``: text is cleaned and tokenized with
the checkpoint's tokenizer (:class:`~s2sft_fairseq.tokenizer.CheckpointTokenizerBPE`, as
``s2sft-prepare`` does), binarized with the model's dictionary, turned into the task's inference
dataset (``build_dataset_for_inference``), batched by length by the task's batch iterator and
decoded by the task's generator (``build_generator``: :class:`~s2sft_fairseq.sequence_generator.S2SSequenceGenerator`
with every fairseq-generate flag and the task's options, :mod:`s2sft_fairseq.hub_options`) through
``task.inference_step``. Results come back in input order.

**Scores.** ``Hypothesis.score`` is fairseq's hypothesis score in **natural-log** units (base e;
fairseq-generate prints the same number divided by ln 2): the sum of the log-probabilities of
the output tokens, the end token included, divided by ``len ** lenpen`` (``len`` = tokens + 1),
or by ``((5 + len) / 6) ** lenpen`` with ``gnmt_length_penalty=True``, or not divided with
``unnormalized=True``; the task's other beam-search options define their own (see their help,
e.g. ``reference_beam_search``).
With sampling the same formula applies to the sampled tokens' log-probabilities (after
``temperature``); diverse beam search includes its diversity penalty. ``positional_scores`` are
the per-token natural-log probabilities (one more than ``tokens``: the end token).

**Inputs.** Each text is cleaned like ``s2sft-prepare`` (:func:`~s2sft_fairseq.text.clean_text`).
One longer than the model's source positions (``[CLS]`` and ``[SEP]`` included) is truncated,
with a logged warning naming its index, and its result says ``truncated=True``. One with no token
left after cleaning is not decoded: its result has ``empty=True`` and no hypotheses (a warning
names the index); it is not an error, so one bad input does not fail a batch.

**Devices.** ``.to(device)`` and ``.half()`` move or convert the models like any ``nn.Module``;
batches follow the models' device. Only the CPU is tested here (fp32, and ``decode_precision``
``bf16`` / ``int8`` from :mod:`s2sft_fairseq.precision`).
"""
import copy
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from .errors import MissingFileError, S2SFTError
from .hub_options import assign, split_options

logger = logging.getLogger(__name__)

TASK_NAME = "pseudo_masked_lm"
DEFAULT_BATCHING = {"max_tokens": None, "batch_size": 32}


@dataclass(frozen=True)
class Hypothesis:
    text: str                       # detokenized output
    score: float                    # natural-log score (module docstring)
    tokens: List[str]               # the output's tokens (wordpieces / BPE pieces), without the end token
    positional_scores: List[float]  # natural-log probability of each token, then of the end token


@dataclass(frozen=True)
class GenerationResult:
    index: int                      # the input's position in the list given to generate
    hypotheses: List[Hypothesis]    # the n-best list, best first ([] for an empty input)
    source_tokens: int              # tokens of the cleaned input, before truncation
    truncated: bool                 # the input was cut to the model's source positions
    empty: bool                     # nothing left after cleaning: not decoded

    @property
    def text(self) -> str:
        """The best hypothesis' text ('' for an empty input)."""
        return self.hypotheses[0].text if self.hypotheses else ""


@dataclass(frozen=True)
class _Source:
    index: int
    tokens: torch.Tensor  # dictionary ids, ending in the end symbol (what fairseq-interactive builds)
    length: int
    truncated: bool


class S2SFT(nn.Module):
    """A fine-tuned s2s-ft / bert2bert checkpoint as a text-to-text generator (module docstring)."""

    def __init__(self, cfg, task, models, bpe, generation: Optional[Dict] = None, batching: Optional[Dict] = None):
        super().__init__()
        from fairseq.dataclass.configs import GenerationConfig
        from omegaconf import OmegaConf, open_dict
        from fairseq.tasks import TASK_DATACLASS_REGISTRY
        self.task, self.bpe = task, bpe
        self.models = nn.ModuleList(models)
        self._task_dataclass = TASK_DATACLASS_REGISTRY[TASK_NAME]
        self.generation = OmegaConf.structured(GenerationConfig)
        assign(self.generation, generation or {}, "generation")
        self.batching = {**DEFAULT_BATCHING, **(batching or {})}
        self.cfg = cfg
        with open_dict(cfg):
            cfg.generation, cfg.task = self.generation, task.cfg
        for model in self.models:
            model.eval()
            model.prepare_for_inference_(cfg)  # --decode-precision (precision.prepare_for_decoding)
        self.register_buffer("_float_tensor", torch.tensor([0.0]), persistent=False)

    @property
    def device(self) -> torch.device:
        return self._float_tensor.device

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, model_name_or_path: str, checkpoint_file: str = "checkpoint_best.pt",
                        data_name_or_path: Optional[str] = None, model_overrides: Optional[Dict] = None,
                        **options) -> "S2SFT":
        """Load ``SAVE_DIR/checkpoint_file`` (``model_name_or_path`` is the fairseq-train
        ``--save-dir``). ``data_name_or_path``: the data directory for the dictionary and the
        tokenizer; omitted, the save directory's own ``dict.txt`` and tokenizer files (written by
        fairseq-train, :mod:`.tasks.portable_save_dir`). ``model_overrides``: model config values,
        as fairseq-generate's ``--model-overrides`` (e.g. ``{'incremental_decoding': False}``).
        ``options``: task, generation and batching options (:mod:`.hub_options`): the defaults of
        every :meth:`generate` call; ``decode_precision`` and ``tokenizer_dir`` act here only."""
        from fairseq import checkpoint_utils, tasks
        from omegaconf import OmegaConf

        from .tasks.portable_save_dir import SAVE_DIR_DICT, find_tokenizer_dir
        from .tokenizer import CheckpointTokenizerBPE
        save_dir = os.path.abspath(model_name_or_path)
        path = os.path.join(save_dir, checkpoint_file)
        if not os.path.isfile(path):
            found = sorted(n for n in os.listdir(save_dir) if n.endswith(".pt")) if os.path.isdir(save_dir) else []
            raise MissingFileError(f"{path}: no such checkpoint" + (f" ({save_dir} holds {', '.join(found)})"
                                                                   if found else ""))
        data = os.path.abspath(data_name_or_path) if data_name_or_path else save_dir
        if not data_name_or_path and not os.path.isfile(os.path.join(save_dir, SAVE_DIR_DICT)):
            raise MissingFileError(f"{save_dir} has no {SAVE_DIR_DICT} (save directories written before the "
                                   "dictionary was saved with the checkpoints): give data_name_or_path=DATA")
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        cfg = _checkpoint_config(state, path)
        task_dc = tasks.TASK_DATACLASS_REGISTRY[TASK_NAME]
        opts = split_options(options, task_dc, "from_pretrained")
        assign(OmegaConf.structured(task_dc), opts.task, "task")  # type checks before anything is built
        assign(cfg.task, {**opts.task, "data": data}, "task")
        _override_model(cfg, model_overrides or {}, path)
        task = tasks.setup_task(cfg.task, from_checkpoint=True)
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([path], task=task, state=state)
        tokenizer_dir = find_tokenizer_dir(task.cfg.tokenizer_dir, data, [save_dir])
        if not tokenizer_dir:
            raise MissingFileError(f"no tokenizer for {path}: neither {data} nor {save_dir} has tokenizer files or a "
                                   "pretrained.json; give tokenizer_dir=")
        return cls(cfg, task, models, CheckpointTokenizerBPE.from_dir(tokenizer_dir), opts.generation, opts.batching)

    # ------------------------------------------------------------------ text <-> ids
    def encode(self, text: str, bpe=None) -> torch.LongTensor:
        """Clean, tokenize and binarize ``text`` (ids ending in the end symbol; empty text: just that).
        ``bpe``: another copy of the tokenizer, for a caller in another thread than ``generate``'s."""
        return self.task.source_dictionary.encode_line(" ".join((bpe or self.bpe).tokens(text)),
                                                       add_if_not_exist=False, append_eos=True).long()

    @property
    def max_positions(self):
        """(source, target) positions: a longer input is truncated, outputs are capped."""
        return self._max_positions(self.task)

    def decode(self, tokens: torch.Tensor, extra_symbols_to_ignore=None) -> str:
        pieces = self.task.target_dictionary.string(tokens.int().cpu(), extra_symbols_to_ignore=extra_symbols_to_ignore)
        return self.bpe.decode(pieces)

    # ------------------------------------------------------------------ generation
    def generate(self, inputs: Union[str, Sequence[str]], **options) -> Union[GenerationResult, List[GenerationResult]]:
        """Decode each text of ``inputs``; one :class:`GenerationResult` per input, in input order
        (a single string gives a single result). ``options``: :mod:`.hub_options` (e.g. ``beam``,
        ``nbest``, ``lenpen``, ``min_len``, ``no_repeat_ngram_size``, ``sampling``,
        ``sampling_topk``, ``sampling_topp``, ``max_len_b``, ``gnmt_length_penalty``,
        ``max_tokens``, ``batch_size``, ``seed``)."""
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise S2SFTError(f"generate: input {i} is a {type(text).__name__}, not a str")
        opts = split_options(options, self._task_dataclass, "generate")
        task = self._task_for_call(opts.task)
        gen_args = copy.deepcopy(self.generation)
        assign(gen_args, opts.generation, "generation")
        if gen_args.nbest > gen_args.beam:
            raise S2SFTError(f"generate: nbest {gen_args.nbest} > beam {gen_args.beam} (the beam holds the n-best "
                             "list; with sampling, beam is the number of samples)")
        sources, results = self._sources(texts, task), {}
        decodable = [s for s in sources if s.length > 0]
        if decodable:
            results = self._decode(task, gen_args, decodable, {**self.batching, **opts.batching}, opts.seed)
        out = [GenerationResult(s.index, results.get(s.index, []), s.length, s.truncated, s.length == 0)
               for s in sources]
        return out[0] if single else out

    def _max_positions(self, task):
        """(source, target) positions of the task and the models, whichever is smaller (fairseq's rule)."""
        from fairseq import utils
        return utils.resolve_max_positions(task.max_positions(), *[m.max_positions() for m in self.models])

    def _sources(self, texts: List[str], task) -> List[_Source]:
        max_source = self._max_positions(task)[0]
        room = max_source - 2  # [CLS] ... [SEP]
        sources = []
        for i, text in enumerate(texts):
            ids = self.encode(text)
            length = len(ids) - 1
            if length == 0:
                logger.warning(f"input {i} is empty after cleaning (only white space / control characters): not "
                               "decoded, its result has empty=True")
            elif length > room:
                logger.warning(f"input {i} has {length} tokens, more than the model's {max_source} source positions "
                               f"hold ({room} + [CLS] and [SEP]): truncated to its first {room} tokens")
            sources.append(_Source(i, ids, length, length > room))
        return sources

    def _task_for_call(self, task_options: Dict):
        """The task, or for per-call task options a shallow copy with its own config (the shared
        task is never changed, so concurrent calls cannot see each other's options)."""
        if not task_options:
            return self.task
        view = copy.copy(self.task)
        view.cfg = copy.deepcopy(self.task.cfg)
        assign(view.cfg, task_options, "task")
        return view

    def _decode(self, task, gen_args, sources: List[_Source], batching: Dict,
                seed: Optional[int]) -> Dict[int, List[Hypothesis]]:
        import numpy as np
        from fairseq import utils
        from fairseq_cli.generate import get_symbols_to_strip_from_output
        generator = task.build_generator(list(self.models), gen_args)
        strip = get_symbols_to_strip_from_output(generator)
        dataset = task.build_dataset_for_inference([s.tokens for s in sources], [len(s.tokens) for s in sources])
        itr = task.get_batch_iterator(dataset=dataset, max_tokens=batching["max_tokens"],
                                      max_sentences=batching["batch_size"], max_positions=self._max_positions(task),
                                      disable_iterator_cache=True).next_epoch_itr(shuffle=False)
        if seed is not None:  # as fairseq-generate / -interactive --seed
            np.random.seed(seed)
            utils.set_torch_seed(seed)
        results = {}
        for batch in itr:
            batch = utils.apply_to_sample(lambda t: t.to(self.device), batch)
            hypos = task.inference_step(generator, list(self.models), batch)
            for row, hyps in zip(batch["id"].tolist(), hypos):
                results[sources[row].index] = [self._hypothesis(h, strip) for h in hyps[: gen_args.nbest]]
        return results

    def _hypothesis(self, hypo, strip) -> Hypothesis:
        pieces = self.task.target_dictionary.string(hypo["tokens"].int().cpu(), extra_symbols_to_ignore=strip)
        return Hypothesis(text=self.bpe.decode(pieces), score=float(hypo["score"]), tokens=pieces.split(),
                          positional_scores=hypo["positional_scores"].float().cpu().tolist())


def _checkpoint_config(state, path: str):
    """The checkpoint's config (converted from an old ``args`` namespace if need be), checked to
    be this plugin's task."""
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    if state.get("args") is not None:
        state["cfg"], state["args"] = convert_namespace_to_omegaconf(state["args"]), None
    cfg = state.get("cfg")
    name = cfg.task.get("_name") if cfg is not None and "task" in cfg else None
    if name != TASK_NAME:
        raise S2SFTError(f"{path}: a checkpoint of the task {name!r}; S2SFT loads {TASK_NAME} checkpoints "
                         "(unilm_seq2seq, bert2bert)")
    return cfg


def _override_model(cfg, overrides: Dict, path: str) -> None:
    unknown = [k for k in overrides if k not in cfg.model]
    if unknown:
        raise S2SFTError(f"model_overrides: {', '.join(map(repr, unknown))} not in the model config of {path} "
                         f"(it has {', '.join(k for k in cfg.model if k != '_name')})")
    assign(cfg.model, overrides, "model")

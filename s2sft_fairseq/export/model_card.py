"""The export's ``README.md``: what the model is, how to load it, how it was trained, its scores.

fairseq does not store the command line, so the training command is rebuilt from the saved
config: every field of the training groups (common, dataset, optimization, checkpoint, task,
model, criterion, optimizer, lr_scheduler, ema) whose value differs from its dataclass default,
as the ``--flag value`` fairseq's argument parser reads (a boolean flag toggles its default).
Fields derived from other ones (``${...}`` defaults) are left out, and so are the stack sizes a
pretrained checkpoint wrote back into the model config.
"""
import dataclasses
import json
import math
import os
import shlex
from typing import Dict, List, Optional

from .trained import ExportError, TrainedCheckpoint

_SKIPPED = {
    "common": {"user_dir"},
    "task": {"data"},
    # written back by the warm start (models/warm_start.py), not given on the command line
    "model": {"load_pretrained_weights", "vocab_size", "max_positions"},
}


def _group_dataclasses(cfg: dict) -> Dict[str, type]:
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.dataclass import configs
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY
    from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY
    from fairseq.optim.lr_scheduler import LR_SCHEDULER_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    def named(group, registry, name=None):
        name = name or (cfg.get(group) or {}).get("_name")
        return registry.get(name) if name else None

    arch = (cfg.get("model") or {}).get("_name")
    return {"common": configs.CommonConfig, "dataset": configs.DatasetConfig,
            "optimization": configs.OptimizationConfig, "checkpoint": configs.CheckpointConfig,
            "task": named("task", TASK_DATACLASS_REGISTRY),
            "model": named("model", MODEL_DATACLASS_REGISTRY, ARCH_MODEL_NAME_REGISTRY.get(arch, arch)),
            "criterion": named("criterion", CRITERION_DATACLASS_REGISTRY),
            "optimizer": named("optimizer", OPTIMIZER_DATACLASS_REGISTRY),
            "lr_scheduler": named("lr_scheduler", LR_SCHEDULER_DATACLASS_REGISTRY),
            "ema": configs.EMAConfig}


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _flag_value(value) -> Optional[str]:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return None if value is None else str(value)


def _group_flags(group: str, saved: dict, dc: type, skip: set) -> List[str]:
    flags = []
    for f in dataclasses.fields(dc):
        if f.name.startswith("_") or f.name in skip or f.name not in saved:
            continue
        default, value = _default(f), saved[f.name]
        if isinstance(default, tuple) and isinstance(value, list):
            default = list(default)  # the saved config holds lists
        if isinstance(default, str) and default.startswith("${"):
            continue  # interpolated from another group
        if default is not dataclasses.MISSING and value == default:
            continue
        name = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name)  # fairseq's boolean flags toggle their default
        elif _flag_value(value) is not None:
            flags += [name, _flag_value(value)]
    return flags


def training_command(ck: TrainedCheckpoint) -> str:
    """``fairseq-train ...`` rebuilt from the checkpoint's saved config (see the module docstring)."""
    from ..models.warm_start import STACK_FIELDS
    cfg = ck.cfg
    args = ["fairseq-train", ck.task.get("data") or "DATA", "--user-dir", "s2sft_fairseq"]
    for group in ("task", "criterion", "optimizer", "lr_scheduler"):
        name = (cfg.get(group) or {}).get("_name")
        if name:
            args += [f"--{group.replace('_', '-')}", name]
    args += ["--arch", ck.arch]
    skipped = {k: set(v) for k, v in _SKIPPED.items()}
    if ck.model.get("pretrained_checkpoint"):
        skipped["model"] |= set(STACK_FIELDS) | {"dropout", "attention_dropout"}
    for group, dc in _group_dataclasses(cfg).items():
        if dc is not None and isinstance(cfg.get(group), dict):
            args += _group_flags(group, cfg[group], dc, skipped.get(group, set()))
    return " ".join(shlex.quote(a) for a in args)


def read_scores(path: str) -> Dict[str, float]:
    """A JSON object of scores (``s2sft-score --json`` output, nested objects flattened with dots)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ExportError(f"--scores {path}: cannot read it ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise ExportError(f"--scores {path}:{e.lineno}: not JSON ({e.msg})") from e
    if not isinstance(data, dict):
        raise ExportError(f"--scores {path}: expected a JSON object of scores, e.g. {{\"rougeL\": 17.2}}")
    flat: Dict[str, float] = {}

    def walk(prefix, obj):
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(name + ".", value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                flat[name] = value
            else:
                raise ExportError(f"--scores {path}: {name!r} is {value!r}, not a number")
    walk("", data)
    return flat


def _data_lines(ck: TrainedCheckpoint) -> List[str]:
    task = ck.task
    data = (task.get("data") or "").split(os.pathsep)[0]
    lines = [f"- data directory at training time: `{data or 'not recorded'}` "
             f"(`{task.get('source_lang', 'src')}` -> `{task.get('target_lang', 'tgt')}`)"]
    if data and os.path.isdir(data):
        from fairseq.data.indexed_dataset import MMapIndexedDataset
        for split in ("train", "valid", "test"):
            prefix = os.path.join(data, f"{split}.{task.get('source_lang', 'src')}-{task.get('target_lang', 'tgt')}."
                                        f"{task.get('source_lang', 'src')}")
            if MMapIndexedDataset.exists(prefix):
                lines.append(f"- {split}: {len(MMapIndexedDataset(prefix)):,} pairs")
    lines.append(f"- tokenizer and vocabulary: `{ck.tokenizer_dir}` ({len(ck.dictionary):,} rows)")
    lines.append(f"- lengths: source <= {ck.model.get('max_source_positions')} tokens, target <= "
                 f"{ck.model.get('max_target_positions')} tokens (incl. [CLS]/[SEP])")
    return lines


#: fairseq's length limit for EncoderDecoderModel's beam search: only [SEP] at the last step, keeping
#: its log-probability (transformers' forced_eos_token_id scores it 0)
END_AT_LIMIT = """import torch
from transformers import LogitsProcessor, LogitsProcessorList

class EndAtLimit(LogitsProcessor):
    \"\"\"fairseq's length limit: only [SEP] after `limit - 1` tokens, with its own log-probability.\"\"\"
    def __init__(self, limit, eos):
        self.limit, self.eos = limit, eos

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] < self.limit:  # the decoder input: [CLS] + the tokens so far
            return scores
        ended = torch.full_like(scores, float("-inf"))
        ended[:, self.eos] = scores[:, self.eos]
        return ended

limit = model.generation_config.max_new_tokens
out = model.generate(**batch, num_beams=5, length_penalty=0.9, early_stopping=True, forced_eos_token_id=None,
                     logits_processor=LogitsProcessorList([EndAtLimit(limit, model.generation_config.eos_token_id)]))"""


def _usage(ck: TrainedCheckpoint, summary: dict) -> List[str]:
    if ck.model_name == "bert2bert":
        return ["```python", "from transformers import AutoTokenizer, EncoderDecoderModel",
                "tok = AutoTokenizer.from_pretrained(DIR)", "model = EncoderDecoderModel.from_pretrained(DIR)",
                "batch = tok(texts, return_tensors=\"pt\", padding=True)  # right padding",
                "out = model.generate(**batch)  # greedy = fairseq-generate --beam 1",
                "out = model.generate(**batch, num_beams=5, length_penalty=0.9, early_stopping=True)"
                "  # = --beam 5 --lenpen 0.9",
                "print(tok.batch_decode(out, skip_special_tokens=True))", "```", "",
                "`generation_config.json` carries fairseq's conventions (start token, no `[PAD]`, `--min-len 1`, "
                "`[SEP]` forced at the length limit); `max_new_tokens=N + 1` is `--max-len-b N`, "
                "`no_repeat_ngram_size=K` is `--no-repeat-ngram-size K`. One difference is left in beam search: "
                "a hypothesis that reaches the length limit gets its forced `[SEP]` scored 0 by transformers, with "
                "its log-probability by fairseq. To match fairseq there as well:", "",
                "```python", END_AT_LIMIT, "```"]
    return ["```python", "from transformers import AutoModel, AutoTokenizer",
            "tok = AutoTokenizer.from_pretrained(DIR)",
            "model = AutoModel.from_pretrained(DIR, trust_remote_code=True)  # modeling_s2sft.py",
            "batch = tok(texts, return_tensors=\"pt\", padding=True, truncation=True,",
            "            max_length=model.config.s2sft[\"max_source_positions\"])",
            "out = model.generate(**batch)  # greedy = fairseq-generate --beam 1",
            "out = model.generate(**batch, num_beams=5, length_penalty=0.9)  # = --beam 5 --lenpen 0.9",
            "print(tok.batch_decode(out, skip_special_tokens=True))", "```", "",
            f"`{summary['stock_class']}.from_pretrained(DIR)` loads the same weights as a plain masked language "
            "model (it knows nothing of the sequence-to-sequence mask). `modeling_s2sft.py` imports only torch and "
            "transformers; its docstring lists the `generate` options and their fairseq-generate equivalents."]


def _notes(ck: TrainedCheckpoint, summary: dict) -> List[str]:
    notes = list(ck.notes)
    if summary.get("shared"):
        notes.append("BERTShare: encoder and decoder were one stack (all weights but cross-attention shared). "
                     "transformers' `tie_encoder_decoder` does not share the weights, so this export is untied: "
                     "both towers hold the same values, and further fine-tuning would let them drift apart.")
    if ck.model_name == "bert2bert" and not summary.get("shared") and not ck.model.get("separate_word_embeddings"):
        notes.append("The word embeddings encoder and decoder shared in training are written twice (untied).")
    if summary.get("rel_pos_bins"):
        notes.append(f"Relative position bias ({summary['rel_pos_bins']} buckets): kept in `config.json` "
                     "(`s2sft.rel_pos_bias`) and applied by `modeling_s2sft.py` only; the stock masked-LM class "
                     "loads the weights but computes without it.")
    if ck.model_name == "unilm_seq2seq":
        notes.append(f"Position table: {summary['positions']} rows (extended for source + target where the "
                     "pretrained model had fewer).")
    return notes


def write_model_card(ck: TrainedCheckpoint, out: str, summary: dict, scores: Optional[Dict[str, float]],
                     scores_file: str = "") -> None:
    method = ck.method.name + (" (reference pos_shift convention)" if not ck.method.source_closing_sep else "")
    what = (f"s2s-ft {method} fine-tuning (`unilm_seq2seq`)" if ck.model_name == "unilm_seq2seq" else
            "BERTShare (Rothe et al.)" if summary.get("shared") else "BERT2BERT (Rothe et al.)")
    meta = ck.meta
    lines = ["---", "library_name: transformers", "tags:", "- s2sft-fairseq", f"- {ck.model_name}",
             "- text2text-generation", "---", "",
             f"# {what}, {ck.model_type} family", "",
             f"Exported by `s2sft-export` from `{os.path.abspath(ck.path)}` "
             f"({meta.get('num_updates')} updates, epoch {meta.get('epoch')}). Generating from this directory gives "
             "the same tokens as `fairseq-generate` with the same settings.", "",
             "## Use", "", *_usage(ck, summary), "",
             "## Training", "", "Rebuilt from the checkpoint's saved configuration (fairseq keeps no command line):",
             "", "```bash", training_command(ck), "```", "",
             f"- pretrained checkpoint: `{ck.model.get('pretrained_checkpoint') or '(random initialisation)'}`",
             f"- fine-tuning method: {method}; corruption rules: {ck.task.get('corruption', 'paper')}", "",
             "## Data", "", *_data_lines(ck), ""]
    if scores:
        lines += ["## Scores", "", f"From `{scores_file}`:" if scores_file else "", "", "| metric | value |",
                  "|---|---:|", *[f"| {k} | {v:g} |" for k, v in scores.items()], ""]
    notes = _notes(ck, summary)
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))

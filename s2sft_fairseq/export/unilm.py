"""``unilm_seq2seq`` -> the family's masked-LM directory plus the s2s-ft generation module.

The shared stack (s2s-ft §2) is exactly a masked-LM model: its weights are written in the
family's layout (:mod:`.layouts`), so that ``BertForMaskedLM`` / ``RobertaForMaskedLM`` /
``XLMRobertaForMaskedLM`` / ``ElectraForMaskedLM`` load them with no missing or unexpected key,
the position table as extended for source + target. What turns it into a sequence-to-sequence
model, the method's packed mask, positions and segment ids (:mod:`s2sft_fairseq.packing`), is
recorded in ``config.json`` under ``s2sft`` and implemented by ``modeling_s2sft.py``, a
standalone module copied from ``export_templates/`` and named in ``auto_map``, so that
``AutoModel.from_pretrained(DIR, trust_remote_code=True)`` gives a model with ``generate``.

What the stock classes cannot hold stays out of the weights file: the relative position bias
table (UniLMv2-style checkpoints, ``rel_pos_bins > 0``) is written into ``config.json``
(``s2sft.rel_pos_bias``, heads x buckets, with the UniLM keys ``rel_pos_bins`` / ``max_rel_pos``
at the top level; the plugin's importer reads the table back from there)
and only the generation module applies it; the stock class loads the weights but computes
without it. Segment ids are written as UniLM configs record them (``source_type_id`` /
``target_type_id``).
"""
import importlib.util
import os
import shutil

import transformers

from .layouts import check_expressible, family, hf_config, load_exactly, position_offset, stack_tensors
from .trained import ExportError, TrainedCheckpoint, check_stack_tensors

MODULE_FILE = "modeling_s2sft.py"
REL_POS = "rel_pos_bias.weight"


def template_path() -> str:
    """``export_templates/modeling_s2sft.py`` of the repository, or of the installed
    ``s2sft_export_templates`` package."""
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "export_templates", MODULE_FILE)
    if os.path.isfile(repo):
        return os.path.normpath(repo)
    spec = importlib.util.find_spec("s2sft_export_templates")
    if spec is not None and spec.origin:
        installed = os.path.join(os.path.dirname(spec.origin), MODULE_FILE)
        if os.path.isfile(installed):
            return installed
    raise ExportError(f"the generation module template {MODULE_FILE} is missing (export_templates/ of the "
                      "repository, installed as s2sft_export_templates); reinstall s2sft-fairseq")


def decoding_config(ck: TrainedCheckpoint) -> dict:
    """What ``modeling_s2sft.py`` needs to decode as the plugin does (``config.s2sft``)."""
    d, sc, method = ck.dictionary, ck.stack, ck.method
    weights = ck.tensors("stack.")
    return {
        "method": method.name,
        "corruption": ck.task.get("corruption", "paper"),
        "start_token_id": method.start_token(d),
        "source_closing_sep": method.source_closing_sep,
        "use_token_types": sc.uses_token_types,
        "source_type_id": sc.source_type_id,
        "target_type_id": sc.target_type_id,
        "position_offset": position_offset(family(ck.model_type), d.pad()),
        "bos_token_id": d.bos(), "eos_token_id": d.eos(), "pad_token_id": d.pad(), "mask_token_id": d.mask(),
        "max_source_positions": int(ck.model["max_source_positions"]),
        "max_target_positions": int(ck.model["max_target_positions"]),
        "rel_pos_bins": sc.rel_pos_bins,
        "max_rel_pos": sc.max_rel_pos,
        "rel_pos_bias": weights[REL_POS].tolist() if sc.rel_pos_bins else None,
    }


def export_unilm(ck: TrainedCheckpoint, out: str) -> dict:
    """Write the masked-LM weights, config and generation module of ``ck`` into ``out``; returns
    what the model card says about them."""
    fam = family(ck.model_type)
    weights = ck.tensors("stack.")
    others = [k for k in ck.state if not k.startswith("stack.")]
    if others:
        raise ExportError(f"{ck.path}: unilm_seq2seq checkpoint has tensors outside the shared stack: {others[:3]}")
    check_stack_tensors(weights, ck.stack, ck.path, "stack")
    check_expressible(fam, ck.stack, ck.path)
    s2sft = decoding_config(ck)
    needed = s2sft["max_source_positions"] + s2sft["max_target_positions"]
    if ck.stack.max_positions < needed:
        raise ExportError(f"{ck.path}: the position table has {ck.stack.max_positions} rows, fewer than the "
                          f"{needed} source + target positions the model was configured with")
    unilm_keys = {"source_type_id": ck.stack.source_type_id, "target_type_id": ck.stack.target_type_id}
    if ck.stack.rel_pos_bins:
        unilm_keys.update(rel_pos_bins=ck.stack.rel_pos_bins, max_rel_pos=ck.stack.max_rel_pos)
    config = hf_config(fam, ck.stack, ck.dictionary, architectures=[fam.masked_lm],
                       auto_map={"AutoModel": f"modeling_s2sft.{fam.s2sft_class}"}, s2sft=s2sft, **unilm_keys)
    model = getattr(transformers, fam.masked_lm)(config)
    load_exactly(model, stack_tensors(weights, fam, ck.dictionary.pad(), f"{fam.body}."), ck.path)
    model.save_pretrained(out)
    shutil.copyfile(template_path(), os.path.join(out, MODULE_FILE))
    return {"stock_class": fam.masked_lm, "s2sft_class": fam.s2sft_class, "positions": ck.stack.max_positions,
            "rel_pos_bins": ck.stack.rel_pos_bins}

"""``bert2bert`` / BERTShare (Rothe et al.) -> a stock transformers ``EncoderDecoderModel`` directory.

The encoder becomes the family's base model (``BertModel``, ``RobertaModel``, ...), the decoder
its causal-LM class with ``is_decoder`` and ``add_cross_attention`` (``BertLMHeadModel``,
``RobertaForCausalLM``, ...): our decoder layers are self-attention, cross-attention, feed-forward
in that order, which is the Hugging Face layer's order, and the cross-attention blocks map onto
its ``crossattention``. Word embeddings that bert2bert shares between encoder and decoder are
written twice (``EncoderDecoderModel`` keeps two matrices); the output layer stays tied to the
decoder's. BERTShare's single stack is written twice as well: transformers'
``tie_encoder_decoder`` does not share the weights in the installed version, so the export is
untied (same values in both towers; fine-tuning it further would let them drift apart). The
encoder's pooler, which ``EncoderDecoderModel`` builds but never uses for generation, is zeros.

``generation_config.json`` makes ``EncoderDecoderModel.generate`` decode as ``fairseq-generate``:
``[CLS]`` / ``<s>`` starts the decoder (``decoder_start_token_id``; bert2bert's decoder positions
start at 0 with it), ``[PAD]`` is never generated, ``[SEP]`` not before one token
(``min_new_tokens=1``, fairseq's ``--min-len 1``) and forced as the last one
(``forced_eos_token_id``, fairseq's step limit). For beam search pass ``early_stopping=True``
as well (a sentence is done once ``num_beams`` hypotheses have finished, fairseq's rule;
transformers refuses to save it in a configuration whose default is greedy). Both divide a
finished hypothesis' summed log-probability by ``len ** length_penalty`` with ``len`` = the
generated tokens including the final ``[SEP]`` (transformers 5.23: ``cur_len + 1 -
decoder_prompt_len``; fairseq: ``step + 1``), so ``--beam B --lenpen A`` is ``num_beams=B,
length_penalty=A, early_stopping=True``: the same best hypothesis (the n-best lists can differ
in their tails: fairseq keeps the first ``beam`` finished hypotheses, transformers the best).
"""
import transformers

from .layouts import check_expressible, cross_attention_tensors, family, hf_config, load_exactly, stack_tensors
from .trained import ExportError, TrainedCheckpoint, check_stack_tensors

_PREFIXES = ("stack.", "encoder.stack.", "decoder.stack.", "decoder.cross_attention.")
WORDS = "embeddings.word.weight"


def _towers(ck: TrainedCheckpoint):
    """The encoder's and the decoder's stack tensors and the cross-attention tensors."""
    others = [k for k in ck.state if not k.startswith(_PREFIXES)]
    if others:
        raise ExportError(f"{ck.path}: bert2bert checkpoint has tensors the exporter does not know: {others[:3]}")
    if ck.model.get("share_encoder_decoder"):
        decoder = ck.tensors("stack.")
        encoder = dict(decoder)
    else:
        decoder, encoder = ck.tensors("decoder.stack."), ck.tensors("encoder.stack.")
    check_stack_tensors(decoder, ck.stack, ck.path, "decoder stack")
    encoder.setdefault(WORDS, decoder[WORDS])  # shared word embeddings (Rothe et al.): written twice
    encoder = {k: v for k, v in encoder.items() if not k.startswith("lm_head.")}
    check_stack_tensors(encoder, ck.stack, ck.path, "encoder stack", skip="lm_head.")
    cross = ck.tensors("decoder.cross_attention.")
    if {k.split(".")[0] for k in cross} != {str(i) for i in range(ck.stack.num_layers)}:
        raise ExportError(f"{ck.path}: expected a cross-attention block per decoder layer ({ck.stack.num_layers})")
    return encoder, decoder, cross


def generation_settings(ck: TrainedCheckpoint) -> dict:
    """The generation config that makes ``generate`` decode as ``fairseq-generate`` (greedy by
    default; pass ``num_beams`` / ``length_penalty`` for ``--beam`` / ``--lenpen``)."""
    d = ck.dictionary
    max_target = int(ck.model["max_target_positions"])
    return dict(decoder_start_token_id=d.bos(), bos_token_id=d.bos(), eos_token_id=d.eos(), pad_token_id=d.pad(),
                forced_eos_token_id=d.eos(), suppress_tokens=[d.pad()], min_new_tokens=1,
                # fairseq: at most min(--max-len-b 200, max_target_positions - 1) tokens before [SEP]
                max_new_tokens=min(201, max_target), num_beams=1, length_penalty=1.0)


def export_encoder_decoder(ck: TrainedCheckpoint, out: str) -> dict:
    fam = family(ck.model_type)
    sc = ck.stack
    if sc.rel_pos_bins:
        raise ExportError(f"{ck.path}: bert2bert with a relative position bias cannot be an EncoderDecoderModel "
                          "(the Hugging Face BERT layers have no such bias); export is refused")
    check_expressible(fam, sc, ck.path)
    encoder, decoder, cross = _towers(ck)
    d = ck.dictionary
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        hf_config(fam, sc, d), hf_config(fam, sc, d, is_decoder=True, add_cross_attention=True))
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = d.bos(), d.pad(), d.eos()
    model = transformers.EncoderDecoderModel(config=config)
    tensors = stack_tensors(encoder, fam, d.pad(), "encoder.")
    tensors.update(stack_tensors(decoder, fam, d.pad(), f"decoder.{fam.body}.", head="decoder."))
    tensors.update(cross_attention_tensors(cross, f"decoder.{fam.body}."))
    pooler = getattr(model.encoder, "pooler", None)
    if pooler is not None:  # built by EncoderDecoderModel, not part of bert2bert: zeros
        tensors.update({f"encoder.pooler.{n}": p.detach().new_zeros(p.shape) for n, p in pooler.named_parameters()})
    load_exactly(model, tensors, ck.path)
    model.generation_config = transformers.GenerationConfig(**generation_settings(ck))
    model.save_pretrained(out)
    return {"stock_class": "EncoderDecoderModel", "encoder_class": type(model.encoder).__name__,
            "decoder_class": type(model.decoder).__name__, "shared": bool(ck.model.get("share_encoder_decoder"))}

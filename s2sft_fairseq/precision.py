"""Reduced precision on the CPU: bf16 mixed-precision training, bf16 / int8 decoding.

**Training: ``--amp`` on the CPU.** fairseq's ``--amp`` wraps the forward pass in *CUDA* autocast,
which does nothing on the CPU (and fairseq's ``--bf16 --cpu`` crashes). With this plugin's task,
``--amp --cpu`` runs the forward pass and the loss under ``torch.autocast("cpu", torch.bfloat16)``
(:func:`bf16_autocast`, applied by the task's ``train_step`` / ``valid_step`` to the criterion
call): matrix multiplications (linear layers, attention) run in bf16, while the weights, the
gradients, the optimizer state and the checkpoints stay fp32, and the post-LayerNorm residual
stream, every LayerNorm and the loss's log-softmax stay fp32 (a bf16 matmul output added to the
fp32 residual promotes back to fp32; the criterion's log-softmax casts to fp32). fairseq's AMP
optimizer wrapper is used as is: its gradient scaler is a CUDA one and disables itself on the CPU,
which bf16 (fp32's exponent range) does not need.

**Decoding: ``--decode-precision fp32 | bf16 | int8``** (:func:`prepare_for_decoding`):

* ``bf16``: the whole model in bf16 (weights, activations, the key/value cache); log-probabilities
  are computed in fp32 (the model's ``get_normalized_probs``), so beam scores accumulate in fp32.
* ``int8``: dynamic quantization of every linear layer of the stack (int8 weights, activations
  quantized per token at run time) with ``torchao``; the rest stays fp32.

Where each costs quality and what it buys: README, "Reduced precision on the CPU"; measured in
BENCHMARKS.md.
"""
import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "int8")


def on_cpu(model) -> bool:
    p = next(model.parameters(), None)
    return p is not None and p.device.type == "cpu"


def bf16_autocast(enabled: bool = True):
    """The CPU bf16 autocast region of a training / validation forward pass (or a no-op)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


class AutocastCriterion:
    """A criterion whose forward pass (model + loss) runs under :func:`bf16_autocast`; what
    fairseq's ``FairseqTask.train_step`` / ``valid_step`` call as ``criterion(model, sample)``."""

    def __init__(self, criterion):
        self.criterion = criterion

    def __call__(self, model, sample, *args, **kwargs):
        with bf16_autocast():
            return self.criterion(model, sample, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.criterion, name)


def prepare_for_decoding(model, precision: str) -> None:
    """Convert a model (in place, for inference only) to ``precision`` (see the module docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--decode-precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return
    if precision == "bf16":
        model.to(torch.bfloat16)
        return
    _quantize_int8(model)


def _quantize_int8(model) -> None:
    """Dynamic int8 quantization (torchao) of the stack's linear layers and the decode-time fused
    query/key/value projections, which are built as modules first so that they are quantized too."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from .modules.attention import AttentionBlock
    for module in model.modules():
        if isinstance(module, AttentionBlock):
            module.freeze_decode_weights()
    quantize_(model, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda m, fqn: type(m) is torch.nn.Linear)  # not the position-bias table

"""``--optimizer torch_adamw``: ``torch.optim.AdamW`` (fused kernel by default) behind fairseq.

fairseq's ``adam`` is already AdamW (decoupled weight decay), but off-GPU it runs its own
Python loop over parameters (several small kernels per tensor and step). torch's AdamW with
``fused=True`` updates each tensor in one kernel on CPU and GPU and is what Hugging Face's
Trainer uses by default (``adamw_torch_fused``). Same hyper-parameter names as fairseq's
``adam``, so switching is one flag; checkpoints save and resume the optimizer state as usual.
"""
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, List

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II, OmegaConf


@dataclass
class TorchAdamWConfig(FairseqDataclass):
    adam_betas: Any = field(default=(0.9, 0.999), metadata={"help": "betas for AdamW"})
    adam_eps: float = field(default=1e-8, metadata={"help": "epsilon for AdamW"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay"})
    adam_impl: str = field(
        default="fused",
        metadata={"help": "torch implementation: fused (one kernel per tensor), foreach, or for-loop"},
    )
    lr: List[float] = II("optimization.lr")


IMPLEMENTATIONS = {"fused": {"fused": True}, "foreach": {"foreach": True},
                   "for-loop": {"foreach": False, "fused": False}}


@register_optimizer("torch_adamw", dataclass=TorchAdamWConfig)
class TorchAdamW(FairseqOptimizer):
    def __init__(self, cfg: TorchAdamWConfig, params):
        super().__init__(cfg)
        if cfg.adam_impl not in IMPLEMENTATIONS:
            raise ValueError(f"--adam-impl must be one of {sorted(IMPLEMENTATIONS)}, got {cfg.adam_impl!r}")
        self._optimizer = torch.optim.AdamW(params, **self.optimizer_config, **IMPLEMENTATIONS[cfg.adam_impl])

    @property
    def optimizer_config(self):
        """The values that override what a checkpoint stored (fairseq's convention)."""
        betas = self.cfg.adam_betas
        if isinstance(betas, str):  # "(0.9, 0.98)" on the command line, as for fairseq's adam
            betas = eval(betas)
        elif OmegaConf.is_config(betas):
            betas = OmegaConf.to_container(betas)
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        return {"lr": lr, "betas": tuple(betas), "eps": self.cfg.adam_eps,
                "weight_decay": self.cfg.weight_decay}

    @property
    def supports_flat_params(self):
        return True

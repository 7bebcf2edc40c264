"""``--optimizer torch_adamw``: torch's fused AdamW behind fairseq's optimizer interface.

Oracle: fairseq's own ``adam`` (also AdamW: decoupled weight decay) on the same parameters and
gradients. The two differ only in where epsilon sits relative to the bias correction
(fairseq: ``sqrt(v) + eps`` then scaled; torch: ``sqrt(v / bc2) + eps``), invisible at eps=1e-8.
Resume of its state is covered by the SIGKILL test in test_crash_resume.py.
"""

import pytest
import torch

import s2sft_fairseq  # noqa: F401  (registers torch_adamw)
from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig
from s2sft_fairseq.optim.torch_adamw import TorchAdamW, TorchAdamWConfig


def params(seed=0):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]


@pytest.mark.parametrize("impl", ["fused", "foreach", "for-loop"])
def test_torch_adamw_follows_fairseq_adam(impl):
    ours, ref = params(), params()
    kw = dict(adam_betas="(0.9, 0.98)", adam_eps=1e-8, weight_decay=0.01, lr=[1e-2])
    opt = TorchAdamW(TorchAdamWConfig(adam_impl=impl, **kw), ours)
    fs = FairseqAdam(FairseqAdamConfig(**kw, tpu=False), ref)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in ours]
        for p, q, gr in zip(ours, ref, grads):
            p.grad, q.grad = gr.clone(), gr.clone()
        opt.step()
        fs.step()
    moved = max((p - q).abs().max().item() for p, q in zip(ours, params()))
    diff = max((p - q).abs().max().item() for p, q in zip(ours, ref))
    assert moved > 1e-2 and diff <= 1e-6, (moved, diff)
    assert opt.get_lr() == 1e-2
    kind = {"fused": "fused", "foreach": "foreach"}.get(impl)
    if kind:
        assert opt.optimizer.param_groups[0][kind] is True


def test_torch_adamw_rejects_an_unknown_implementation():
    with pytest.raises(ValueError, match="--adam-impl"):
        TorchAdamW(TorchAdamWConfig(adam_impl="apex", lr=[1e-3]), params())

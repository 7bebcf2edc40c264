"""Shared modules are registered once.

One module may play several roles (the stack as encoder and decoder, s2s-ft §2; the word
embeddings as the output layer). It is registered as a submodule in exactly one place, so each
shared tensor appears once in the state dict and once in ``parameters()``; every other role
holds a plain, unregistered reference made with :func:`share`.
"""
import torch.nn as nn


def share(owner: nn.Module, name: str, module) -> None:
    """Make ``owner.name`` an unregistered reference to ``module`` (registered elsewhere)."""
    if name in owner._modules:
        del owner._modules[name]
    object.__setattr__(owner, name, module)

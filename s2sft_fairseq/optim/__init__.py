from . import torch_adamw  # noqa: F401

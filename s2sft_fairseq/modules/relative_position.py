"""Relative position bias of UniLMv2-style checkpoints (the s2s-ft code base's ``rel_pos_bias``).

Checkpoints with ``rel_pos_bins > 0`` add, to every layer's attention scores (after the
``1/sqrt(d)`` scaling, before the softmax), a per-head bias that depends on the bucketed
relative distance ``key position - query position``. One table (``rel_pos_bins`` buckets ->
one value per head, a bias-free linear map) is shared by all layers; the absolute position
embeddings stay as well.

Distances are taken between *position ids*, not slot indices: a ``[P]`` slot shares its target
token's position (s2s-ft §2.3), and padding never shifts a position.

Bucketing (bidirectional, as in Mesh TensorFlow / T5): half of the buckets per direction, a key
after its query (distance > 0) in the upper half; within a half, distances below a quarter of
the buckets each get their own bucket and longer ones share logarithmically wider buckets up to
``max_rel_pos``, beyond which all fall into the last bucket of their half.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bucket of each signed distance ``key - query`` (see the module docstring)."""
    half = num_buckets // 2
    upper = (relative > 0).long() * half
    n = relative.abs()
    exact = half // 2
    # in this order of operations (float32), as T5 and the s2s-ft code compute it: boundaries
    # such as 16 / 8 = 2 ** (1/4 of the log range) land on the same side
    log_bucket = exact + (torch.log(n.clamp(min=1).float() / exact) / math.log(max_distance / exact)
                          * (half - exact)).long()
    log_bucket = log_bucket.clamp(max=half - 1)
    return upper + torch.where(n < exact, n, log_bucket)


class RelativePositionBias(nn.Linear):
    """The shared bias table: ``weight`` is ``(heads, rel_pos_bins)`` (a bias-free linear map from
    a one-hot bucket to one value per head, the checkpoints' layout)."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int):
        super().__init__(num_buckets, num_heads, bias=False)
        if num_buckets < 4 or max_distance <= num_buckets // 4:
            raise ValueError(f"relative position bias with {num_buckets} buckets needs >= 4 buckets and "
                             f"max_rel_pos > {num_buckets // 4}, got max_rel_pos {max_distance}")
        self.num_buckets = num_buckets
        self.max_distance = max_distance

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """``(B, Lq)`` and ``(B, Lk)`` position ids -> the additive bias ``(B, heads, Lq, Lk)``."""
        relative = key_positions[:, None, :] - query_positions[:, :, None]
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance)
        return F.embedding(buckets, self.weight.t()).permute(0, 3, 1, 2)

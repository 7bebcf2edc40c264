"""Scoring for generated text: ``s2sft-score`` and the metric functions behind it (README, "Scoring")."""
from .metrics import bleu, qg_metrics, rouge  # noqa: F401

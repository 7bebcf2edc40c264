from . import s2s_label_smoothed_cross_entropy  # noqa: F401

from . import s2s_fine_tuning  # noqa: F401

"""Files that ``s2sft-export`` copies into an export directory; installed as ``s2sft_export_templates``.

``modeling_s2sft.py`` is the generation module of an exported ``unilm_seq2seq`` model. It is a
deliberate standalone copy of what the plugin computes (packed masks, positions, segment ids,
relative position bias, fairseq's beam search) written against the Hugging Face model classes
only: it must run where neither fairseq nor this package is installed. It lives outside the
``s2sft_fairseq`` package so that the package never imports it and the duplicate-code check of
the package does not apply to it; its test is its equality with ``fairseq-generate``
(``tests/test_export.py``).
"""
import os

#: the template's path (copied as ``modeling_s2sft.py``)
MODELING = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modeling_s2sft.py")

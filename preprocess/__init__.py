"""Data preparation (README "Data"): raw text -> the checkpoint's tokenizer -> ``fairseq-preprocess``.

This folder is installed as the package ``s2sft_preprocess`` (``setup.py``'s ``package_dir``: a
top-level ``preprocess`` in site-packages would clash with other projects) and runs as
``preprocess`` from the repository root, so its modules import each other relatively
(``from .text import ...``) and the plugin as ``s2sft_fairseq``; no import here names the
package. The plugin never imports this folder.

* :mod:`preprocess.prepare` — ``s2sft-prepare``: tokenize parallel ``.src``/``.tgt`` (or JSON
  lines) with a checkpoint's tokenizer and binarize with its dictionary.
* :mod:`preprocess.text` — reading and pairing rules shared by everything here (the text
  cleaning itself is the plugin's :mod:`s2sft_fairseq.text`).
* :mod:`preprocess.binarize` — the in-process ``fairseq-preprocess`` call.
* Benchmark converters writing ``{train,valid,test}.{src,tgt}``, one example a line:
  :mod:`~preprocess.cnndm`, :mod:`~preprocess.xsum`, :mod:`~preprocess.squad_qg`,
  :mod:`~preprocess.xnlg` (Gigaword fr/zh, WebQA zh, XGLUE NTG/QG).
* Offline real data: :mod:`~preprocess.wordnet` (Debian ``wordnet-base``) and
  :mod:`~preprocess.sword` (KJV -> WEB from ``sword-text-kjv`` / ``sword-text-web``).
"""

"""Data preparation (DESIGN §6): raw text -> the checkpoint's tokenizer -> ``fairseq-preprocess``.

* :mod:`preprocess.prepare` — ``s2sft-prepare``: tokenize parallel ``.src``/``.tgt`` (or JSON
  lines) with a checkpoint's tokenizer and binarize with its dictionary.
* :mod:`preprocess.text` — reading, cleaning and pairing rules shared by everything here.
* :mod:`preprocess.binarize` — the in-process ``fairseq-preprocess`` call.
* Benchmark converters writing ``{train,valid,test}.{src,tgt}``, one example a line:
  :mod:`~preprocess.cnndm`, :mod:`~preprocess.xsum`, :mod:`~preprocess.squad_qg`,
  :mod:`~preprocess.xnlg` (Gigaword fr/zh, WebQA zh, XGLUE NTG/QG).
* Offline real data: :mod:`~preprocess.wordnet` (Debian ``wordnet-base``) and
  :mod:`~preprocess.sword` (KJV -> WEB from ``sword-text-kjv`` / ``sword-text-web``).
"""

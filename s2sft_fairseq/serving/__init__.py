"""``s2sft-serve``: the Python API (:mod:`s2sft_fairseq.hub_interface`) behind an HTTP JSON service.

README, "HTTP server". One model is loaded once (:class:`~s2sft_fairseq.hub_interface.S2SFT`, with
``--decode-precision``); requests go through :mod:`.request` (parsing and limits: every bad input
is a 4xx that names the field), :mod:`.batcher` (dynamic batching: concurrent requests with the
same decoding settings are decoded together by one worker thread calling ``S2SFT.generate``, the
same decoding path as the API and ``fairseq-generate``), :mod:`.app` (the FastAPI routes and the
demo page) and :mod:`.cli` (the command line, uvicorn). Nothing here decodes on its own.
"""

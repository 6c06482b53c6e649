"""Thinking under a budget: everything between an lm-eval request and the tokens an engine generates.

``lm.py`` is the lm-eval model ``m1_budget`` (requests in, strings out); ``request.py`` holds the
think / force / answer rules of one request, ``budget.py`` (batched) and ``scheduler.py`` (streaming)
the drivers that carry their generate calls; ``markers.py`` the
thinking formats; ``tracecache.py`` the cache that makes rounds and sweep points reuse earlier
traces; ``engines/`` the backends (transformers, vLLM in process, an OpenAI-compatible server).
Nothing here imports the tasks side or the plugin side beyond the shared helpers (errors, paths,
versions, http)."""

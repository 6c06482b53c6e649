"""Scaling analysis: reading lm-eval result folders, statistics, paper-style tables and figures.

- ``results``: find and parse lm-eval output folders (``results_<date>.json`` and
  ``samples_<task>_<date>.jsonl``) into one record per (model, task, budget, forcing).
- ``stats``: Wilson and bootstrap intervals, OLS with its t-based confidence band, McNemar's exact test.
- ``report``: ``m1-harness report``, Table 1 layout as Markdown and CSV.
- ``plots``: ``m1-harness plot``, Figure 1 (accuracy vs budget), Figure 3 (accuracy vs forcing
  rounds) and thinking-length histograms.
- ``sweep``: ``m1-harness sweep``, one lm-eval run per (budget, forcing) through the trace cache.
- ``outcomes``: the join of lm-eval samples with trace records (one ``Outcome`` per item and setting);
  ``figures``: the figure kit (panel grid, legend, colours, saving) every figure uses.
- ``explain``: ``m1-harness explain``, per-item trajectories, flips (McNemar, Holm), cut-off-aware
  accuracy, efficiency and flip figures; ``viewer``: its self-contained HTML trace viewer.
"""

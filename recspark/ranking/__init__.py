"""Ranking kernels and factor types shared by evaluation and scoring: numpy and torch, no Spark.

- `factors`: what every model exports (`FactorSet`: user vectors . item vectors) and a batch's
  seen items as CSR rows (`SeenItems`);
- `topk`: the exact, chunk-pruned top-K with seen items masked, and top-K over shortlists;
- `quantize`: int8 item vectors and their int8 / bfloat16 top-K;
- `explain`: the seen item that supports each recommendation most;
- `ranker`: one model ranked at one precision, with what it derives kept for reuse;
- `cache`: the single-entry cache a Python worker keeps its ranker in between Spark tasks.
"""

"""Sampled softmax for large catalogs: in-batch and shared sampled negatives, logQ-corrected.

The full softmax costs O(items) per training row; at a million items that is most of a step's
time and memory. The sampled softmax scores each row against a small candidate set instead:

- the batch's distinct positive items: every row's positive is a negative of the other rows
  (in-batch negatives; they come from the data, so popular items come up often);
- `n_sampled` items drawn uniformly with replacement, shared by the whole batch (so that rare
  items are negatives too).

Popular items are candidates far more often than rare ones, which biases the model against them
unless every candidate's logit is corrected by the log of how often it is expected among the
candidates (Yi et al., "Sampling-bias-corrected neural modeling for large corpus item
recommendations", RecSys 2019; mixed in-batch and uniform negatives as in Yang et al., WWW 2020):

    logit_j - log(P * q_j + M / N)

with q_j item j's share of the training positives, P the batch's rows, M the shared samples and N
the catalog. Without a prior (q) the in-batch part is taken as uniform too.

A candidate equal to a row's own positive, other than its positive column, is masked out for that
row (an accidental hit is not a negative).

The shared samples come from a generator the caller seeds per optimizer step, so every rank (and a
single process replaying the ranks' batches) draws the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Candidates:
    """A batch's candidate items and, for each row, the column of its own positive."""

    items: torch.Tensor  # (C,) the distinct positives, then the shared samples
    target_column: torch.Tensor  # (P,) column of each row's positive in `items`
    log_expected: torch.Tensor  # (C,) log of each candidate's expected count (the correction)


def draw_candidates(
    targets: torch.Tensor,
    n_items: int,
    n_sampled: int,
    prior: torch.Tensor | None,
    generator: torch.Generator | None = None,
) -> Candidates:
    """The candidates of a batch whose rows' positives are `targets` (P,).

    Args:
        targets: each row's positive item.
        n_items: the catalog size N (items are 0..N-1).
        n_sampled: M, the uniformly drawn items shared by the batch (0: in-batch only).
        prior: (N,) each item's share of the training positives (sums to 1), or None (uniform).
        generator: a CPU generator for the shared samples (None: torch's global one).
    """
    if n_sampled < 0:
        raise ValueError(f"n_sampled must be >= 0, got {n_sampled}")
    distinct, target_column = torch.unique(targets, return_inverse=True)
    sampled = torch.randint(0, n_items, (n_sampled,), generator=generator).to(targets.device)
    items = torch.cat([distinct, sampled])
    rows = float(len(targets))
    share = (
        prior.to(targets.device)[items].float()
        if prior is not None
        else torch.full(items.shape, 1.0 / n_items, device=targets.device)
    )
    expected = rows * share + n_sampled / n_items
    return Candidates(items, target_column, torch.log(expected.clamp(min=1e-12)))


def sampled_softmax(
    logits: torch.Tensor, candidates: Candidates, targets: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of (P, C) candidate `logits` with the logQ correction and hits masked."""
    corrected = logits - candidates.log_expected.to(logits.dtype)
    hit = candidates.items.unsqueeze(0) == targets.unsqueeze(1)
    rows = torch.arange(len(targets), device=targets.device)
    hit[rows, candidates.target_column] = False
    corrected = corrected.masked_fill(hit, torch.finfo(corrected.dtype).min)
    return F.cross_entropy(corrected, candidates.target_column)


def prior_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """(N,) shares of the training positives from per-item counts (uniform when all are 0)."""
    counts = counts.double().clamp(min=0)
    total = float(counts.sum())
    if total <= 0:
        return torch.full(counts.shape, 1.0 / max(len(counts), 1))
    return (counts / total).float()

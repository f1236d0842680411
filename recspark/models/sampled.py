"""Sampled softmax for large catalogs: in-batch and shared sampled negatives, logQ-corrected.

The full softmax costs O(items) per training row; at a million items that is most of a step's
time and memory. The sampled softmax scores each row's positive against a small set of sampled
negatives instead:

- in-batch negatives: the distinct positives of the batch's rows (they come from the data, so
  popular items come up often). A batch with more rows than `max_in_batch` (SASRec: every position
  of every sequence, 64 x 49 at full length) takes those of `max_in_batch` rows drawn at random;
- `n_sampled` items drawn uniformly with replacement, shared by the whole batch (so that rare
  items are negatives too).

A row's loss is the cross-entropy of its positive against its own logit and the negatives'
(P x C logits, C ~ in-batch + shared, whatever the number of rows P).

Popular items are negatives far more often than rare ones, which biases the model against them
unless every logit (the positive's too) is corrected by the log of the item's chance to be a
negative (Yi et al., "Sampling-bias-corrected neural modeling for large corpus item
recommendations", RecSys 2019; mixed in-batch and uniform negatives as in Yang et al., WWW 2020):

    logit_j - log(1 - (1 - q_j) ** K + M / N)

with q_j item j's share of the training positives, K the rows whose positives are negatives, M
the shared samples and N the catalog. The in-batch part is the chance that j is among K positives
drawn from q, counted once, as the in-batch negatives are distinct (for rare items it is K * q_j,
the expected count); the shared part is its expected count among M uniform draws. Without a prior
(q) the in-batch part is taken as uniform too.

A negative equal to a row's own positive is masked out for that row (an accidental hit is not a
negative).

The shared samples and the in-batch rows come from a generator the caller seeds per optimizer
step, so every rank (and a single process replaying the ranks' batches) draws the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SampledNegatives:
    """A batch's sampled negatives and the logQ corrections of them and of the positives."""

    items: torch.Tensor  # (C,) the in-batch negatives (distinct), then the shared samples
    log_expected: torch.Tensor  # (C,) log of each negative's chance to be one (the correction)
    target_log_expected: torch.Tensor  # (P,) the same for each row's own positive


def draw_negatives(
    targets: torch.Tensor,
    n_items: int,
    n_sampled: int,
    prior: torch.Tensor | None,
    generator: torch.Generator | None = None,
    max_in_batch: int | None = None,
) -> SampledNegatives:
    """The sampled negatives of a batch whose rows' positives are `targets` (P,).

    Args:
        targets: each row's positive item.
        n_items: the catalog size N (items are 0..N-1).
        n_sampled: M, the uniformly drawn items shared by the batch (0: in-batch only).
        prior: (N,) each item's share of the training positives (sums to 1), or None (uniform).
        generator: a CPU generator for the shared samples and the in-batch rows (None: torch's
            global one).
        max_in_batch: K, the most rows whose positives are in-batch negatives (None: all;
            0: none).
    """
    if n_sampled < 0 or (max_in_batch is not None and max_in_batch < 0):
        raise ValueError(f"n_sampled, max_in_batch must be >= 0: {n_sampled}, {max_in_batch}")
    device = targets.device
    sampled = torch.randint(0, n_items, (n_sampled,), generator=generator).to(device)
    in_batch = targets
    if max_in_batch is not None and len(targets) > max_in_batch:
        rows = torch.randperm(len(targets), generator=generator)[:max_in_batch]
        in_batch = targets[rows.to(device)]
    items = torch.cat([torch.unique(in_batch), sampled])
    k = len(in_batch)
    return SampledNegatives(
        items,
        _log_chance(items, prior, k, n_sampled, n_items),
        _log_chance(targets, prior, k, n_sampled, n_items),
    )


def _log_chance(
    ids: torch.Tensor, prior: torch.Tensor | None, k: int, n_sampled: int, n_items: int
) -> torch.Tensor:
    """log(1 - (1 - q)^K + M / N) of the items `ids`: their chance to be a negative."""
    if prior is None:
        share = torch.full(ids.shape, 1.0 / n_items, device=ids.device)
    else:
        share = prior.to(ids.device)[ids].float().clamp(max=1.0 - 1e-7)
    chance = -torch.expm1(k * torch.log1p(-share)) + n_sampled / n_items
    return torch.log(chance.clamp(min=1e-12))


def negative_logits(
    queries: torch.Tensor,
    vectors: torch.Tensor,
    bias: torch.Tensor | None,
    drawn: SampledNegatives,
) -> torch.Tensor:
    """(P, C) corrected logits of `queries` (P, d) against the negatives' `vectors` (C, d) and
    `bias` (C,): one matrix product with the bias and the correction added in it."""
    offset = -drawn.log_expected.to(queries.dtype)
    if bias is not None:
        offset = offset + bias.to(queries.dtype)
    return torch.addmm(offset, queries, vectors.to(queries.dtype).T)


def sampled_softmax(
    target_logits: torch.Tensor,
    logits: torch.Tensor,
    negatives: SampledNegatives,
    targets: torch.Tensor,
) -> torch.Tensor:
    """Mean cross-entropy of each row's positive against itself and the negatives.

    Args:
        target_logits: (P,) each row's logit of its own positive (uncorrected).
        logits: (P, C) the negatives' corrected logits (`negative_logits`); accidental hits
            are masked in place.
        negatives: what `draw_negatives` drew.
        targets: (P,) each row's positive.
    """
    own = target_logits - negatives.target_log_expected.to(target_logits.dtype)
    rows, columns = _hits(negatives.items, targets)
    logits[rows, columns] = torch.finfo(logits.dtype).min
    # Own logit first: one fused log-softmax (faster on CPU than a logsumexp of the two parts).
    both = torch.cat([own.unsqueeze(1), logits], dim=1)
    return F.cross_entropy(both.float(), torch.zeros_like(targets))


def _hits(items: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of every negative equal to its row's positive, without a P x C compare."""
    order = torch.argsort(items)
    ordered = items[order]
    first = torch.searchsorted(ordered, targets)
    counts = torch.searchsorted(ordered, targets, right=True) - first
    rows = torch.repeat_interleave(torch.arange(len(targets), device=targets.device), counts)
    starts = torch.repeat_interleave(first - (torch.cumsum(counts, 0) - counts), counts)
    return rows, order[starts + torch.arange(len(rows), device=targets.device)]


def prior_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """(N,) shares of the training positives from per-item counts (uniform when all are 0)."""
    counts = counts.double().clamp(min=0)
    total = float(counts.sum())
    if total <= 0:
        return torch.full(counts.shape, 1.0 / max(len(counts), 1))
    return (counts / total).float()

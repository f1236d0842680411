"""Validation of any model on held-out targets, and the blend of several models' scores.

`target_ndcg` is the one measure every candidate model is compared by: each validation user has
one held-out target; the model ranks the whole catalog with the user's other seen items removed,
and the target's place gives NDCG@k (1 / log2(rank + 2) inside the top k, else 0). Ties count in
the target's favour (only strictly higher scores rank above it), as in the training loop.

A blend scores `sum_m w_m * s_m(u, i) / scale_m`: each member's scores divided by their spread
on validation (so the weights compare like with like), times a weight from a grid on the simplex
that includes every member alone, so the best blend never validates below its best member. The
blended model is one `FactorSet` again (weighted, concatenated user and item vectors; see
`blend_factors`), so it is scored, quantized and explained by the same code as any model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from recspark.ranking import topk
from recspark.ranking.factors import (
    FactorSet,
    HistoryFactors,
    IdFactors,
    MixedFactors,
    SeenItems,
    padded_rows,
)

_USERS_PER_BLOCK = 1024
_FAR = 1e30  # |score differences| are far below this (scores are scaled to unit spread)


@dataclass(frozen=True)
class ValidationTargets:
    """Held-out targets: user indices, one target item each, and the other seen items."""

    users: NDArray[np.int64]
    targets: NDArray[np.int64]
    seen: SeenItems  # row i: user i's train items except the target

    def __len__(self) -> int:
        return len(self.users)

    def blocks(self, size: int = _USERS_PER_BLOCK) -> Iterator[ValidationTargets]:
        for start in range(0, len(self), size):
            stop = min(start + size, len(self))
            yield ValidationTargets(
                self.users[start:stop], self.targets[start:stop], self.seen[start:stop]
            )


def masked_scores(factors: FactorSet, block: ValidationTargets) -> NDArray[np.float32]:
    """(B, n_items) float32 scores of a block of users, their seen items at -inf."""
    vectors = factors.user_vectors(block.users, block.seen)
    scores = np.asarray(vectors @ np.asarray(factors.items).T, dtype=np.float32)
    rows, _, items = block.seen.coordinates()
    scores[rows, items] = -np.inf
    return scores


def target_gains(scores: NDArray[Any], targets: NDArray[np.int64], k: int) -> NDArray[np.float64]:
    """Each row's NDCG@k of its single target (`ranking.topk.target_gains`, on numpy)."""
    gains = topk.target_gains(torch.from_numpy(scores), torch.from_numpy(np.asarray(targets)), k)
    return np.asarray(gains.numpy(), dtype=np.float64)


def target_ndcg(factors: FactorSet, validation: ValidationTargets, k: int) -> float:
    """Mean NDCG@k of the validation targets under `factors` (NaN without targets)."""
    if len(validation) == 0:
        return float("nan")
    total = sum(
        float(target_gains(masked_scores(factors, b), b.targets, k).sum())
        for b in validation.blocks()
    )
    return total / len(validation)


def grid_steps(members: int, steps: int, max_points: int) -> int:
    """The most steps up to `steps` whose simplex grid has at most `max_points` points."""
    while steps > 1 and math.comb(steps + members - 1, members - 1) > max_points:
        steps -= 1
    return steps


def simplex_grid(members: int, steps: int) -> NDArray[np.float64]:
    """Every weight vector of `members` non-negative multiples of 1/steps that sum to 1."""
    rows = [
        np.asarray(c, dtype=np.float64) / steps
        for c in itertools.product(range(steps + 1), repeat=members)
        if sum(c) == steps
    ]
    return np.stack(rows)


def score_scale(factors: FactorSet, validation: ValidationTargets) -> float:
    """The spread (standard deviation) of a model's unmasked scores on the first block."""
    block = next(validation.blocks())
    scores = masked_scores(factors, block)
    finite = scores[np.isfinite(scores)]
    scale = float(finite.std()) if finite.size else 0.0
    return scale if scale > 0 and np.isfinite(scale) else 1.0


@dataclass(frozen=True)
class BlendFit:
    """The weights of the best blend (each member's scale already folded in) and its NDCG."""

    weights: tuple[float, ...]  # on the members' scaled scores, summing to 1
    scales: tuple[float, ...]
    ndcg: float
    grid: NDArray[np.float64]
    grid_ndcg: NDArray[np.float64]  # validation NDCG@k of every grid point

    @property
    def factors_weights(self) -> tuple[float, ...]:
        """What multiplies each member's raw scores: weight / scale."""
        return tuple(w / s for w, s in zip(self.weights, self.scales, strict=True))


def grid_gains(
    scores: Sequence[NDArray[Any]], targets: NDArray[np.int64], grid: NDArray[np.float64], k: int
) -> NDArray[np.float64]:
    """Summed NDCG@k of a block's single targets under each grid point's blend of `scores`.

    The same as `target_gains` of sum_m w_m * scores_m for every row w of `grid`, without
    forming the blends: item j outranks the target under w when sum_m w_m * d_mj > 0, with
    d_mj = score_m(j) - score_m(target). An item above the target in every member outranks it
    under any weights, one above it in none never does; only the others ("mixed") are counted
    per grid point, and only for rows with fewer than k items of the first kind (the rest score
    0 everywhere). A member whose target score is not finite gives its row 0 wherever its
    weight is positive, as its blend would.
    """
    rows = np.arange(len(targets))
    at_target = np.stack([s[rows, targets] for s in scores], axis=1)  # (B, members)
    finite = np.isfinite(at_target)
    with np.errstate(invalid="ignore"):
        diffs = [s - at_target[:, m, None] for m, s in enumerate(scores)]
    above = [d > 0 for d in diffs]  # NaN and -inf are never above
    always = np.logical_and.reduce(above)
    n_always = always.sum(axis=1)
    live = n_always < k
    mixed = np.logical_or.reduce(above) & ~always & live[:, None]
    mixed_rows, mixed_items = np.nonzero(mixed)
    mixed_diffs = np.stack([d[mixed_rows, mixed_items] for d in diffs], axis=1)
    # Finite stand-ins, so that a weight of 0 leaves a member out of one product (0 * inf is
    # NaN): a masked item (-inf) stays far below, and a NaN or +inf comes only from a target
    # that is not finite, whose row scores 0 wherever that member's weight is positive.
    np.nan_to_num(mixed_diffs, copy=False, nan=0.0, posinf=_FAR, neginf=-_FAR)
    totals = np.zeros(len(grid))
    for g, weights in enumerate(grid):
        ok = live & finite[:, weights > 0].all(axis=1)
        margin = mixed_diffs @ weights.astype(mixed_diffs.dtype)
        rank = n_always + np.bincount(mixed_rows[margin > 0], minlength=len(targets))
        gains = np.where(ok & (rank < k), 1.0 / np.log2(rank + 2.0), 0.0)
        totals[g] = gains.sum()
    return totals


def fit_blend(
    members: Sequence[FactorSet],
    validation: ValidationTargets,
    k: int,
    steps: int = 10,
    max_points: int = 100,
) -> BlendFit:
    """The simplex-grid weights whose blend of `members` has the best validation NDCG@k.

    The grid has `steps` steps, fewer where that would give more than `max_points` points. Ties
    go to the grid point listed first; the one-member points are in the grid, so the result is
    at least as good as the best member on this validation set.
    """
    if not members:
        raise ValueError("a blend needs at least one member")
    if len(validation) == 0:
        raise ValueError("a blend needs validation targets to fit its weights")
    scales = tuple(score_scale(m, validation) for m in members)
    grid = simplex_grid(len(members), grid_steps(len(members), steps, max_points))
    totals = np.zeros(len(grid))
    for block in validation.blocks():
        scaled = [masked_scores(m, block) / s for m, s in zip(members, scales, strict=True)]
        totals += grid_gains(scaled, block.targets, grid, k)
    grid_ndcg = totals / len(validation)
    best = int(np.argmax(grid_ndcg))
    weights = tuple(float(w) for w in grid[best])
    return BlendFit(weights, scales, float(grid_ndcg[best]), grid, grid_ndcg)


def blend_factors(members: Sequence[FactorSet], weights: Sequence[float]) -> FactorSet:
    """One FactorSet scoring `sum_m weights[m] * score_m`: concatenated, weighted vectors.

    Members with weight 0 are left out. Id-based members' user vectors are scaled and put side
    by side (their item vectors likewise); item-item members' weight matrices are summed into
    the first n_items columns (`MixedFactors`). Returns IdFactors or HistoryFactors when only
    one kind remains.
    """
    id_users: list[NDArray[Any]] = []
    id_items: list[NDArray[Any]] = []
    history: NDArray[Any] | None = None
    for member, weight in zip(members, weights, strict=True):
        if weight == 0:
            continue
        if isinstance(member, HistoryFactors):
            part = np.asarray(member.items, dtype=np.float32) * np.float32(weight)
            history = part if history is None else history + part
        elif isinstance(member, IdFactors):
            id_users.append(np.asarray(member.users, dtype=np.float32) * np.float32(weight))
            id_items.append(np.asarray(member.items, dtype=np.float32))
        else:
            raise TypeError(f"cannot blend a {type(member).__name__}")
    if not id_users and history is None:
        raise ValueError("a blend needs a member with a non-zero weight")
    if not id_users:
        assert history is not None
        return HistoryFactors(items=history)
    # A member kept from an earlier run may know fewer users: the others' new users get zeros.
    n_users = max(len(u) for u in id_users)
    users = np.hstack([padded_rows(u, n_users) for u in id_users])
    items = np.hstack(id_items)
    if history is None:
        return IdFactors(users=users, items=items)
    return MixedFactors(users=users, items=np.ascontiguousarray(np.hstack([history, items])))


__all__ = [
    "BlendFit",
    "ValidationTargets",
    "blend_factors",
    "fit_blend",
    "grid_gains",
    "grid_steps",
    "masked_scores",
    "simplex_grid",
    "target_gains",
    "target_ndcg",
]

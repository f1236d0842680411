"""Validation during training: the mean NDCG@k of each validation row's single target, the
user's other train items excluded (`validation_ndcg`, every epoch on every rank).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from numpy.typing import NDArray

from recspark.ranking.topk import target_gains
from recspark.schemas import ITEM_INDEX
from recspark.training.inputs import HISTORY, Batch

# Validation arrays may carry each user's train items but the target, as CSR rows.
SEEN_OFFSETS, SEEN_VALUES = "seen_offsets", "seen_values"
Validation = Mapping[str, NDArray[Any]]  # user_index, item_index (the target), history


def _seen_mask(validation: Validation, start: int, batch: Batch, n_items: int) -> torch.Tensor:
    """(B, n_items + 1) True at the rows' seen items: every other train item of the user where
    the validation carries them (SEEN_OFFSETS / SEEN_VALUES), else the history."""
    rows = len(batch[ITEM_INDEX])
    device = batch[ITEM_INDEX].device
    # The history is padded with n_items: one extra column takes the padding.
    seen = torch.zeros(rows, n_items + 1, dtype=torch.bool, device=device)
    if SEEN_OFFSETS not in validation:
        seen.scatter_(1, batch[HISTORY].clamp(max=n_items), True)
        return seen
    offsets = validation[SEEN_OFFSETS][start : start + rows + 1]
    values = torch.as_tensor(validation[SEEN_VALUES][offsets[0] : offsets[-1]], device=device)
    lengths = torch.as_tensor(offsets[1:] - offsets[:-1], device=device)
    seen[torch.repeat_interleave(torch.arange(rows, device=device), lengths), values] = True
    return seen


def validation_ndcg(
    model: Any, validation: Validation, k: int, device: torch.device
) -> tuple[float, float]:
    """(mean NDCG@k of each validation row's single target, the user's other items excluded;
    the standard error of that mean). NaN and 0 without rows."""
    n = len(validation[ITEM_INDEX])
    if n == 0:
        return float("nan"), 0.0
    model.eval()
    total = squares = 0.0
    with torch.no_grad():
        for start in range(0, n, 1024):
            batch = {
                key: torch.as_tensor(value[start : start + 1024], dtype=torch.long, device=device)
                for key, value in validation.items()
                if key not in (SEEN_OFFSETS, SEEN_VALUES)
            }
            scores = model.validation_logits(batch).float()
            seen = _seen_mask(validation, start, batch, scores.shape[1])
            target = batch[ITEM_INDEX]
            # The target keeps its score even if seen: it is ranked among the unseen items.
            target_scores = scores.gather(1, target.unsqueeze(1))
            scores = scores.masked_fill(seen[:, : scores.shape[1]], float("-inf"))
            scores.scatter_(1, target.unsqueeze(1), target_scores)
            gains = target_gains(scores, target, k).double()
            total += float(gains.sum())
            squares += float((gains * gains).sum())
    model.train()
    return total / n, standard_error(total, squares, n)


def standard_error(total: float, squares: float, n: int) -> float:
    """The standard error of the mean of `n` values, from their sum and sum of squares (0 when
    n < 2)."""
    if n < 2:
        return 0.0
    variance = max(squares - total * total / n, 0.0) / (n - 1)
    return math.sqrt(variance / n)

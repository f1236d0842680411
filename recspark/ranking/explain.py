"""Explanations: for each recommendation, the seen item that supports it most."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recspark.ranking.factors import FactorSet, HistoryFactors, SeenItems


def unit_rows(vectors: NDArray[Any]) -> NDArray[np.float32]:
    """Rows scaled to length 1 (cosine similarity by dot product); zero rows stay zero."""
    rows = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def explain(
    factors: FactorSet,
    rec_items: NDArray[Any],
    seen: Sequence[Any],
    max_history: int,
    unit_items: NDArray[Any] | None = None,
) -> NDArray[Any]:
    """For each recommended item, the seen item that supports it most ("because you had X").

    Support is what the model itself uses: for item-item models (EASE) the learned weight of the
    seen item for the recommended one (its exact contribution to the score); for embedding models
    the cosine similarity of the two item vectors.

    Args:
        factors: the model's factors.
        rec_items: (B, K) recommended item indices (-1 = empty place).
        seen: per user, the seen item indices (the first `max_history` are considered).
        max_history: how many of each user's seen items may explain.
        unit_items: `unit_rows(factors.items)`, when the caller keeps it between calls
            (embedding models only; computed here otherwise).

    Returns:
        (B, K) item indices; -1 where the user has no history or the place is empty.
    """
    n_users, width = rec_items.shape
    out = np.full((n_users, width), -1, dtype=np.int64)
    history, valid = SeenItems.from_lists(seen).padded(max_history)
    if history.shape[1] == 0 or width == 0:
        return out
    recs = np.where(rec_items >= 0, rec_items, 0)
    if isinstance(factors, HistoryFactors):  # items[j, i]: weight of seen item i for scored item j
        support = factors.items[recs[:, :, None], history[:, None, :]].astype(np.float32)
    else:
        unit = unit_rows(factors.items) if unit_items is None else unit_items
        support = np.einsum("bkd,bhd->bkh", unit[recs], unit[history])
    support[~np.broadcast_to(valid[:, None, :], support.shape)] = -np.inf
    best = support.argmax(axis=2)
    chosen = np.take_along_axis(history, best, axis=1)
    has_history = valid.any(axis=1)[:, None] & (rec_items >= 0)
    out[has_history] = chosen[has_history]
    return out


__all__ = ["explain", "unit_rows"]

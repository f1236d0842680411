"""Top-K of users against item vectors, seen items excluded: the kernels every ranking runs.

`top_k` scores a block of users against the whole catalog with one matrix product, masks the
items each user has seen, and keeps the best k with `top_k_rows` (exact, chunk-pruned);
`top_k_shortlist` ranks each user's own shortlist instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from recspark.ranking.factors import SeenItems

CHUNK = 64
"""Columns per chunk of `top_k_rows`."""


def mask_seen(scores: torch.Tensor, seen: Sequence[Any]) -> None:
    """Set scores[row, item] to -inf, in place, for every item each row's user has seen."""
    rows, _, cols = SeenItems.from_lists(seen).coordinates()
    if len(rows):
        scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")


def target_gains(scores: torch.Tensor, targets: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's NDCG@k of its single target (the one rule of validation NDCG, for training's
    epochs and the blend's fit alike): 1/log2(rank+2) when the target's rank is below k, else
    0; rank = how many items score higher. A target scored NaN or -inf ranks nowhere (0).

    Args:
        scores: (B, N), the items to exclude already at -inf.
        targets: (B,) each row's target column.
    """
    target_scores = scores.gather(1, targets.reshape(-1, 1).long())
    rank = (scores > target_scores).sum(1)
    gains = torch.where(rank < k, 1.0 / torch.log2(rank.double() + 2.0), 0.0)
    return torch.where(torch.isfinite(target_scores[:, 0]), gains, 0.0)


def top_k_rows(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(scores, k, dim=1)` of a (B, N) score tensor, exact, several times faster.

    The k best of a row lie in the k chunks (of `CHUNK` columns) with the largest maxima: the
    k-th best score is at least the k-th largest chunk maximum, so no other chunk can hold a
    better one. One cheap pass takes the chunk maxima, then only k chunks are ranked. The
    values are exactly those of `torch.topk`. Equal scores are ordered by column (lower first)
    rather than in `torch.topk`'s unspecified order, so a rerun ranks ties the same way; which
    of several columns tied at the k-th place is kept is not specified.

    Returns:
        (values, indices), each (B, min(k, N)), best first.
    """
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    n_chunks = n_cols // CHUNK
    if n_chunks < 4 * k or n_rows == 0:  # too few chunks for the pruning to pay
        best = torch.topk(scores, k, dim=1)
        return _ties_by_column(best.values, best.indices)
    scores = scores.contiguous()
    body = scores[:, : n_chunks * CHUNK].view(n_rows, n_chunks, CHUNK)
    chunks = torch.topk(body.amax(dim=2), k, dim=1).indices
    width = k * CHUNK
    values = body.gather(1, chunks[:, :, None].expand(n_rows, k, CHUNK)).reshape(n_rows, width)
    offsets = torch.arange(CHUNK, device=scores.device)
    columns = (chunks[:, :, None] * CHUNK + offsets).reshape(n_rows, width)
    if n_cols > n_chunks * CHUNK:  # the columns after the last whole chunk always compete
        values = torch.cat([values, scores[:, n_chunks * CHUNK :]], dim=1)
        tail = torch.arange(n_chunks * CHUNK, n_cols, device=scores.device).expand(n_rows, -1)
        columns = torch.cat([columns, tail], dim=1)
    best = torch.topk(values, k, dim=1)
    return _ties_by_column(best.values, columns.gather(1, best.indices))


def _ties_by_column(
    values: torch.Tensor, columns: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort (B, k) results by value, best first, equal values by column: two small sorts."""
    by_column = columns.argsort(dim=1)
    values, columns = values.gather(1, by_column), columns.gather(1, by_column)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return values.gather(1, order), columns.gather(1, order)


class ScoreBuffer:
    """A (rows, cols) score block reused across calls, grown when a larger one is asked for.

    A fresh 256 x 20k float block is 20 MB: glibc serves it with mmap and returns it on free, so
    every block page-faults its memory again (measured up to 1.5x slower, and erratic). Lives as
    long as its owner (a `Ranker`, kept per Python worker).
    """

    __slots__ = ("_flat",)

    def __init__(self) -> None:
        self._flat: torch.Tensor | None = None

    def block(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """A (rows, cols) tensor of `dtype` whose contents are undefined."""
        flat = self._flat
        if flat is None or flat.numel() < rows * cols or flat.dtype != dtype:
            flat = self._flat = torch.empty(rows * cols, dtype=dtype)
        return flat[: rows * cols].view(rows, cols)


def top_k(
    user_vectors: NDArray[Any],
    item_vectors: NDArray[Any],
    seen: Sequence[Any],
    k: int,
    buffer: ScoreBuffer | None = None,
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Best k unseen items per user.

    Args:
        user_vectors: (B, d) vectors of the users to score.
        item_vectors: (N, d) vectors of the whole catalog.
        seen: per user, the item indices to exclude (array-likes or None, or `SeenItems`).
        k: how many to keep.
        buffer: where to compute the (B, N) scores (default: a fresh tensor).

    Returns:
        (items, scores), each (B, min(k, N)); where a user has fewer than k unseen items, the
        missing places hold item -1 and score -inf.
    """
    users = torch.from_numpy(user_vectors)
    items_t = torch.from_numpy(item_vectors).T
    shape = (len(user_vectors), len(item_vectors))
    if buffer is None:
        scores = torch.empty(shape, dtype=items_t.dtype)
    else:
        scores = buffer.block(*shape, items_t.dtype)
    torch.mm(users.to(items_t.dtype), items_t, out=scores)
    mask_seen(scores, seen)
    best_values, best_items = top_k_rows(scores, k)
    items = best_items.numpy().copy()
    values = best_values.numpy()
    items[~np.isfinite(values)] = -1
    return items, values


def top_k_shortlist(
    user_vectors: NDArray[Any], item_vectors: NDArray[Any], shortlist: Sequence[Any], k: int
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Best k of each user's shortlist items (a shortlist already excludes seen items).

    Returns:
        (items, scores), each (B, k); places beyond a user's shortlist hold -1 and -inf.
    """
    shortlists = SeenItems.from_lists(shortlist)
    padded, valid = shortlists.padded(int(shortlists.lengths().max(initial=0)))
    if padded.shape[1] < k:  # every row needs k places, filled or not
        extra = ((0, 0), (0, k - padded.shape[1]))
        padded, valid = np.pad(padded, extra), np.pad(valid, extra)
    vectors = torch.from_numpy(np.asarray(item_vectors, dtype=np.float32))[torch.from_numpy(padded)]
    scores = torch.einsum("bd,bld->bl", torch.from_numpy(user_vectors.astype(np.float32)), vectors)
    scores[~torch.from_numpy(valid)] = float("-inf")
    best = torch.topk(scores, k, dim=1)
    places = best.indices.numpy()
    values = best.values.numpy()
    items = np.take_along_axis(padded, places, axis=1)
    items[~np.isfinite(values)] = -1
    return items, values


__all__ = ["CHUNK", "ScoreBuffer", "mask_seen", "top_k", "top_k_rows", "top_k_shortlist"]

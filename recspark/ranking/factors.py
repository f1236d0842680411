"""What ranking needs from any model: user vectors and item vectors, scores = users @ items.T.

Every model (two-tower, SASRec, EASE, ALS, popularity) exports a `FactorSet`. Ranking does not
know which model made it: it asks for the vectors of a batch of users (given their index and the
items they have seen) and multiplies them with the item vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, overload

import numpy as np
from numpy.typing import NDArray


class FactorSet(Protocol):
    """Vectors such that score(user, item) = user_vectors(...)[u] . items[item]."""

    @property
    def items(self) -> NDArray[Any]:
        """(n_items, d) item vectors."""
        ...

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        """(len(users), d) vectors of `users` (indices), given each one's seen item indices."""
        ...


class SeenItems(Sequence[NDArray[np.int64]]):
    """Item lists of a batch of users as one flat array and row offsets (CSR rows).

    Row i is `values[offsets[i]:offsets[i + 1]]`; a user without items (a null list) has an
    empty row. Slicing rows shares the arrays. Built straight from an Arrow list column
    (`from_arrow`, no Python object per user) or from per-user lists (`from_lists`).
    """

    __slots__ = ("offsets", "values")

    def __init__(self, offsets: NDArray[np.int64], values: NDArray[Any]) -> None:
        self.offsets = offsets
        self.values = values

    @classmethod
    def from_lists(cls, lists: Sequence[Any]) -> SeenItems:
        """From per-user item lists (array-likes or None)."""
        if isinstance(lists, SeenItems):
            return lists
        rows = [np.asarray([] if s is None else s, dtype=np.int64).reshape(-1) for s in lists]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        values = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return cls(offsets, values)

    @classmethod
    def from_arrow(cls, column: Any) -> SeenItems:
        """From an Arrow list<int> array (nulls are empty rows; a sliced array is fine)."""
        import pyarrow.compute as pc

        lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
        offsets = np.zeros(len(column) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # flatten() skips the values behind nulls and honours the array's own offset
        return cls(offsets, column.flatten().to_numpy(zero_copy_only=False))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, index: int) -> NDArray[np.int64]: ...

    @overload
    def __getitem__(self, index: slice) -> SeenItems: ...

    def __getitem__(self, index: int | slice) -> NDArray[np.int64] | SeenItems:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("SeenItems: only contiguous slices")
            return SeenItems(self.offsets[start : max(start, stop) + 1], self.values)
        row = range(len(self))[index]
        return self.values[self.offsets[row] : self.offsets[row + 1]]

    def lengths(self) -> NDArray[np.int64]:
        return np.diff(self.offsets)

    def flat(self) -> NDArray[Any]:
        """All rows' items, in row order."""
        return self.values[self.offsets[0] : self.offsets[-1]]

    def coordinates(self, max_per_row: int | None = None) -> tuple[NDArray[Any], ...]:
        """(row, position in row, item) of every item; only each row's first `max_per_row`."""
        lengths = self.lengths()
        if max_per_row is not None:
            lengths = np.minimum(lengths, max_per_row)
        rows = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        positions = np.arange(len(rows)) - starts
        if max_per_row is None:  # every item: the rows' contiguous run of values, a slice
            kept = self.flat()
        else:
            kept = self.values[self.offsets[:-1][rows] + positions]
        return rows, positions, kept.astype(np.int64, copy=False)

    def padded(self, max_per_row: int) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """(B, L) item matrix of each row's first `max_per_row` items, and where it is valid."""
        rows, positions, items = self.coordinates(max_per_row)
        width = int(positions.max()) + 1 if len(positions) else 0
        history = np.zeros((len(self), width), dtype=np.int64)
        valid = np.zeros((len(self), width), dtype=bool)
        history[rows, positions] = items
        valid[rows, positions] = True
        return history, valid

    def multi_hot(self, n_items: int, dtype: Any = np.float32) -> NDArray[Any]:
        """(B, n_items) rows with 1 at every item of the row."""
        out = np.zeros((len(self), n_items), dtype=dtype)
        rows, _, items = self.coordinates()
        out[rows, items] = 1
        return out


@dataclass(frozen=True)
class IdFactors:
    """A vector per user index (two-tower, SASRec, ALS, popularity): a table lookup."""

    users: NDArray[Any]
    items: NDArray[Any]

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        return self.users[users]


@dataclass(frozen=True)
class HistoryFactors:
    """Item-item models (EASE): the user vector is the multi-hot row of the seen items.

    `items` is (n_items, n_items) with items[j, i] = weight of seen item i for scored item j, so
    that multi_hot @ items.T is the score row (for EASE, items = B.T).
    """

    items: NDArray[Any]

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        return SeenItems.from_lists(seen).multi_hot(self.items.shape[1], self.items.dtype)


@dataclass(frozen=True)
class MixedFactors:
    """A blend of item-item and id-based models: the user vector is [multi-hot seen, users[u]].

    `items` is (n_items, n_items + d): its first n_items columns are the item-item weights (as
    in `HistoryFactors.items`), the rest the id-based item vectors, so one product scores both.
    """

    users: NDArray[Any]
    items: NDArray[Any]

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        n_items = self.items.shape[0]
        hot = SeenItems.from_lists(seen).multi_hot(n_items, self.items.dtype)
        return np.hstack([hot, np.asarray(self.users[users], dtype=self.items.dtype)])


def padded_rows(a: NDArray[Any], n: int) -> NDArray[Any]:
    """`a` with zero rows appended up to `n` rows (itself when it has as many)."""
    if len(a) >= n:
        return a
    return np.vstack([a, np.zeros((n - len(a), *a.shape[1:]), dtype=a.dtype)])


def grown(factors: FactorSet, n_items: int, n_users: int | None = None) -> FactorSet:
    """A model's factors on a catalog (and user set) grown since it was fit.

    Id maps only ever append (`features.featurize`), so the old indices keep their meaning and
    the new ones get zero vectors: a new item scores 0 from this model (item-item: it neither
    recommends nor is recommended by another item); a new user's vector is zero (with `n_users`;
    without it the user stays unknown, and scoring gives them the cold-start fallback).
    """
    if isinstance(factors, HistoryFactors):
        items = padded_rows(factors.items, n_items)
        if items.shape[1] < n_items:
            items = np.hstack(
                [items, np.zeros((n_items, n_items - items.shape[1]), dtype=items.dtype)]
            )
        return HistoryFactors(items=items)
    if isinstance(factors, IdFactors):
        users = factors.users if n_users is None else padded_rows(factors.users, n_users)
        return IdFactors(users=users, items=padded_rows(factors.items, n_items))
    raise TypeError(f"cannot grow a {type(factors).__name__}")


def known_users(factors: FactorSet) -> int | None:
    """How many user indices an id-based model knows (None: it needs only the history)."""
    return len(factors.users) if isinstance(factors, IdFactors | MixedFactors) else None


def factors_are_finite(factors: FactorSet) -> bool:
    """False when any vector holds NaN or inf (a diverged model)."""
    users = getattr(factors, "users", None)
    return bool(np.isfinite(factors.items).all()) and (
        users is None or bool(np.isfinite(users).all())
    )


__all__ = [
    "FactorSet",
    "HistoryFactors",
    "IdFactors",
    "MixedFactors",
    "SeenItems",
    "factors_are_finite",
    "grown",
    "known_users",
    "padded_rows",
]

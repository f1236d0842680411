"""One model ranked at one precision: what a Python worker keeps between the Spark tasks of a job.

A `Ranker` holds a model's factors and what it derives from them on first use (the int8 items,
the unit-length items for explanations, the score block), so each is made once per worker, not
once per batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from numpy.typing import NDArray

from recspark.ranking.explain import explain, unit_rows
from recspark.ranking.factors import FactorSet, HistoryFactors
from recspark.ranking.quantize import QuantizedFactors, top_k_int8
from recspark.ranking.topk import ScoreBuffer, top_k, top_k_shortlist
from recspark.vocab import Precision, QuantizedCompute

Ranked = tuple[NDArray[Any], NDArray[Any]]
"""(items, scores), each (B, K); item -1 and score -inf where a user has no K-th item."""


@dataclass
class Ranker:
    """Top-K, shortlist top-K and explanations for one model's factors at one precision.

    `precision`: float32 (the factors as they are), int8 (items quantized to int8, int8 x int8
    products) or bfloat16 (the int8 items computed in bf16); see `recspark.ranking.quantize`.
    """

    factors: FactorSet
    precision: Precision = "float32"
    buffer: ScoreBuffer = field(default_factory=ScoreBuffer)

    @functools.cached_property
    def quantized(self) -> QuantizedFactors:
        """The factors with int8 items, quantized on first use."""
        return QuantizedFactors.from_items(self.factors, self.factors.items)

    @functools.cached_property
    def unit_items(self) -> NDArray[Any]:
        """Item vectors of length 1 (explanations of embedding models), made on first use."""
        return unit_rows(self.factors.items)

    @property
    def is_item_item(self) -> bool:
        return isinstance(self.factors, HistoryFactors)

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        return self.factors.user_vectors(users, seen)

    def top_k(self, vectors: NDArray[Any], seen: Sequence[Any], k: int) -> Ranked:
        """The best k unseen items of the whole catalog (see `ranking.topk.top_k`)."""
        if self.precision == "float32":
            return top_k(vectors, self.factors.items, seen, k, self.buffer)
        compute: QuantizedCompute = "int8" if self.precision == "int8" else "bfloat16"
        return top_k_int8(vectors, self.quantized, seen, k, compute=compute)

    def top_k_shortlist(self, vectors: NDArray[Any], shortlist: Sequence[Any], k: int) -> Ranked:
        """The best k of each user's shortlist, in float32.

        Raises:
            ValueError: for item-item models, which rank the whole catalog.
        """
        if self.is_item_item:
            raise ValueError(
                "score.exact_max_items: item-item models (EASE) rank the whole catalog; "
                "shortlists are for embedding models"
            )
        return top_k_shortlist(vectors, self.factors.items, shortlist, k)

    def explain(
        self, rec_items: NDArray[Any], seen: Sequence[Any], max_history: int
    ) -> NDArray[Any]:
        """The seen item that supports each recommendation most (see `ranking.explain`)."""
        unit = None if self.is_item_item else self.unit_items
        return explain(self.factors, rec_items, seen, max_history, unit)


__all__ = ["Ranked", "Ranker"]

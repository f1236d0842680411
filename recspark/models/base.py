"""What scoring needs from any model: user vectors and item vectors, scores = users @ items.T.

Every model (two-tower, SASRec, EASE, ALS, popularity) exports a `FactorSet`. Scoring does not
know which model made it: it asks for the vectors of a batch of users (given their index and the
items they have seen) and multiplies them with the item vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
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

    `items` is (n_items, n_items) with items[j, i] = weight of seen item i for candidate j, so
    that multi_hot @ items.T is the score row (for EASE, items = B.T).
    """

    items: NDArray[Any]

    def user_vectors(self, users: NDArray[Any], seen: Sequence[Any]) -> NDArray[Any]:
        out = np.zeros((len(users), self.items.shape[1]), dtype=self.items.dtype)
        for row, items in enumerate(seen):
            if items is not None and len(items):
                out[row, np.asarray(items, dtype=np.int64)] = 1.0
        return out


class ScoringModel(torch.nn.Module):
    """What recspark logs to MLflow: the trained network and the vectors scoring reads.

    `forward` gives scores against the whole catalog: for id-based models its input is a (B,)
    tensor of user indices; for history-based ones (EASE) a (B, n_items) multi-hot of seen items.
    """

    user_factors: torch.Tensor
    item_factors: torch.Tensor

    def __init__(
        self, model_name: str, network: torch.nn.Module | None, factors: FactorSet
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.network = network
        self.history_based = isinstance(factors, HistoryFactors)
        users = factors.users if isinstance(factors, IdFactors) else np.zeros((0, 0), np.float32)
        self.register_buffer("user_factors", torch.as_tensor(np.asarray(users, np.float32)))
        self.register_buffer("item_factors", torch.as_tensor(np.asarray(factors.items, np.float32)))

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def factor_set(self) -> FactorSet:
        items = self.item_factors.detach().cpu().numpy()
        if self.history_based:
            return HistoryFactors(items=items)
        return IdFactors(users=self.user_factors.detach().cpu().numpy(), items=items)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.history_based:
            return inputs.float() @ self.item_factors.T
        return self.user_factors[inputs.long()] @ self.item_factors.T

"""What recspark logs to MLflow for every model: `ScoringModel`.

Registered models are pickles that name this class as `recspark.models.base.ScoringModel`, so it
stays at this path (tests/test_legacy_models.py loads pickles written before the ranking layer).
The factor types it exports live in `recspark.ranking.factors`.
"""

from __future__ import annotations

import numpy as np
import torch

from recspark.ranking.factors import FactorSet, HistoryFactors, IdFactors, MixedFactors


class ScoringModel(torch.nn.Module):
    """The trained network and the vectors scoring reads.

    `forward` gives scores against the whole catalog: for id-based models its input is a (B,)
    tensor of user indices; for history-based ones (EASE) a (B, n_items) multi-hot of seen items;
    for a blend of both (`MixedFactors`) a (B, 1 + n_items) tensor: the user index, then the
    multi-hot.
    """

    user_factors: torch.Tensor
    item_factors: torch.Tensor
    mixed: bool = False  # a class default: pickles written before blends lack the attribute
    # What recomputes a user's vector from a history beyond the factors and the network
    # (ALS's regularisation, a blend's members; `recspark.models.encoders`). A class default:
    # pickles written before the refresh stream lack it.
    encoder_spec: object | None = None

    def __init__(
        self, model_name: str, network: torch.nn.Module | None, factors: FactorSet
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.network = network
        self.history_based = isinstance(factors, HistoryFactors)
        self.mixed = isinstance(factors, MixedFactors)
        users = (
            factors.users
            if isinstance(factors, IdFactors | MixedFactors)
            else np.zeros((0, 0), np.float32)
        )
        self.register_buffer("user_factors", torch.as_tensor(np.asarray(users, np.float32)))
        self.register_buffer("item_factors", torch.as_tensor(np.asarray(factors.items, np.float32)))

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def factor_set(self) -> FactorSet:
        items = self.item_factors.detach().cpu().numpy()
        if self.history_based:
            return HistoryFactors(items=items)
        users = self.user_factors.detach().cpu().numpy()
        if self.mixed:
            return MixedFactors(users=users, items=items)
        return IdFactors(users=users, items=items)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.history_based:
            return inputs.float() @ self.item_factors.T
        if self.mixed:
            users = self.user_factors[inputs[:, 0].long()]
            return torch.cat([inputs[:, 1:].float(), users], dim=1) @ self.item_factors.T
        return self.user_factors[inputs.long()] @ self.item_factors.T


__all__ = ["ScoringModel"]

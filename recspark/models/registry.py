"""Model names in config -> torch modules with one training interface.

Every trainable model offers `batch_loss(batch, loss, negatives)`, `validation_logits(batch)` and
`factor_set(history_batches)`; `ROW_KIND` says which training rows it reads (see
`recspark.training.data`). EASE is not trained by gradient descent (closed form, see
`recspark.models.ease`) and has no entry here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from recspark.models.base import IdFactors
from recspark.models.two_tower import TwoTower

GRADIENT_MODELS = ("two_tower", "sasrec")
MODELS = (*GRADIENT_MODELS, "ease")
ROW_KIND = {"two_tower": "pairs", "sasrec": "sequences"}


def build_model(params: Any) -> torch.nn.Module:
    """The untrained module named by `params.model` (a TrainParams)."""
    if params.model == "two_tower":
        return TwoTower(
            params.n_users,
            params.n_items,
            params.embedding_dim,
            use_history=params.use_history,
            history_dropout=params.history_dropout,
        )
    if params.model == "sasrec":
        return SequentialRecommender(
            params.n_users, params.n_items, params.embedding_dim, **params.sasrec
        )
    raise ValueError(f"train.model: unknown model {params.model!r}, expected one of {MODELS}")


class SequentialRecommender(torch.nn.Module):
    """SASRec behind the training interface: learn next items along each user's sequence."""

    def __init__(self, n_users: int, n_items: int, dim: int, **sasrec: Any) -> None:
        from recspark.models.sasrec import SASRec

        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.sasrec = SASRec(n_items, dim, **sasrec)

    def batch_loss(
        self, batch: dict[str, torch.Tensor], loss: str = "softmax", negatives: int = 0
    ) -> torch.Tensor:
        inputs, targets = self.sasrec.sequences_to_training(batch["history"])
        n_negatives = negatives if loss == "sampled_softmax" and negatives > 0 else None
        return self.sasrec.loss(inputs, targets, n_negatives)

    def validation_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users = self.sasrec.user_vectors_from_sequences(batch["history"])
        return users @ self.sasrec.item_vectors().T

    @torch.no_grad()
    def factor_set(self, history_batches: Iterable[tuple[Any, Any]] = ()) -> IdFactors:
        was_training = self.training
        self.eval()
        items = self.sasrec.item_vectors().float()
        empty = torch.full((1, 1), self.n_items, dtype=torch.long)
        users_out = self.sasrec.user_vectors_from_sequences(empty).float().repeat(self.n_users, 1)
        for users_np, histories in history_batches:
            users = torch.as_tensor(users_np, dtype=torch.long)
            sequences = torch.as_tensor(histories, dtype=torch.long)
            users_out[users] = self.sasrec.user_vectors_from_sequences(sequences).float()
        self.train(was_training)
        return IdFactors(users=users_out.numpy(), items=items.numpy())

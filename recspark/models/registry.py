"""Model names in config -> torch modules with one training interface.

Every trainable model offers `batch_loss(batch, loss, negatives, generator)`,
`validation_logits(batch)`, `factor_set(history_batches)` and `set_sampling_prior(counts)`;
`ROW_KIND` says which training rows it reads (see `recspark.training.data`). Models trained with
a sampled loss are built with sparse embedding gradients (`sparse_gradients`). EASE is not
trained by gradient descent (closed form, see `recspark.models.ease`) and has no entry here.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from recspark.models.two_tower import TwoTower
from recspark.ranking.factors import IdFactors
from recspark.vocab import GradientModel, LossName, ModelName, RowKind, choices

ROW_KIND: dict[GradientModel, RowKind] = {"two_tower": "pairs", "sasrec": "sequences"}


@dataclass(frozen=True)
class SasrecParams:
    """SASRec's shape: `train.sasrec` and `features.sequence_length`."""

    max_len: int = 50
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2


class ModelSpec(Protocol):
    """What `build_model` reads (the training parameters, `recspark.training.params`)."""

    @property
    def model(self) -> ModelName: ...
    @property
    def n_users(self) -> int: ...
    @property
    def n_items(self) -> int: ...
    @property
    def embedding_dim(self) -> int: ...
    @property
    def use_history(self) -> bool: ...
    @property
    def history_dropout(self) -> float: ...
    @property
    def sasrec(self) -> SasrecParams: ...
    @property
    def loss(self) -> LossName: ...
    @property
    def sparse_gradients(self) -> bool: ...


def sparse_gradients(loss: LossName) -> bool:
    """Whether a model trained with `loss` gets sparse embedding gradients: every loss but the
    full softmax, which reads the whole item table at every step."""
    return loss != "softmax"


def build_model(spec: ModelSpec) -> torch.nn.Module:
    """The untrained module named by `spec.model`."""
    sparse = spec.sparse_gradients and sparse_gradients(spec.loss)
    if spec.model == "two_tower":
        return TwoTower(
            spec.n_users,
            spec.n_items,
            spec.embedding_dim,
            use_history=spec.use_history,
            history_dropout=spec.history_dropout,
            sparse=sparse,
        )
    if spec.model == "sasrec":
        return SequentialRecommender(
            spec.n_users,
            spec.n_items,
            spec.embedding_dim,
            sparse=sparse and spec.loss == "sampled_softmax",
            **dataclasses.asdict(spec.sasrec),
        )
    raise ValueError(
        f"{spec.model!r} is not trained by gradient descent; those are {choices(GradientModel)}"
    )


def with_users(
    network: TwoTower | SequentialRecommender, n_users: int
) -> TwoTower | SequentialRecommender:
    """A copy of a trained `network` that gives vectors to `n_users` users (a user set grown
    since it was trained; the original is left as it is).

    The new users have no id embedding of their own (zeros): the two-tower's user vector is its
    history part alone, SASRec's is its sequence's anyway.
    """
    if n_users <= network.n_users:
        return network
    grown = copy.deepcopy(network)
    if isinstance(grown, TwoTower):
        old = grown.user_tower.weight.detach()
        table = torch.nn.Embedding(n_users, old.shape[1])
        with torch.no_grad():
            table.weight.zero_()
            table.weight[: len(old)] = old
        grown.user_tower = table
    grown.n_users = n_users
    return grown


class SequentialRecommender(torch.nn.Module):
    """SASRec behind the training interface: learn next items along each user's sequence."""

    def __init__(self, n_users: int, n_items: int, dim: int, **sasrec: Any) -> None:
        from recspark.models.sasrec import SASRec

        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        self.sasrec = SASRec(n_items, dim, **sasrec)

    def set_sampling_prior(self, counts: torch.Tensor) -> None:
        self.sasrec.set_sampling_prior(counts)

    def batch_loss(
        self,
        batch: dict[str, torch.Tensor],
        loss: LossName = "softmax",
        negatives: int = 0,
        generator: torch.Generator | None = None,
        in_batch: int | None = None,
    ) -> torch.Tensor:
        """Next-item loss along the sequences: the sampled softmax (in-batch negatives from up
        to `in_batch` positions) or (any other loss) the full softmax."""
        inputs, targets = self.sasrec.sequences_to_training(batch["history"])
        n_negatives = max(negatives, 0) if loss == "sampled_softmax" else None
        return self.sasrec.loss(inputs, targets, n_negatives, generator, in_batch)

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

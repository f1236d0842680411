"""The two-tower model: a user tower and an item tower, scored by a dot product.

User tower: a user id embedding plus (optionally) an encoder of the user's history: the mean of
the history items' input embeddings through a residual MLP. The history part is what lets the
model generalise from item co-occurrence (the signal EASE lives on) instead of learning every user
vector from that user's few rows alone. Item tower: an item id embedding and an item bias.

Losses (`loss` argument of `batch_loss`):
- `softmax`: cross-entropy of the positive item against the whole catalog (exact; fine up to a
  few tens of thousands of items per batch row);
- `sampled_softmax`: against the batch's other positives (in-batch negatives) plus `negatives`
  uniformly drawn items shared by the batch, logQ-corrected by the items' share of the training
  positives (`set_sampling_prior`), accidental hits masked (`recspark.models.sampled`);
- `bpr`: Bayesian personalised ranking against one uniformly drawn item per positive.

Batches are dicts of tensors: `user_index` (B,), `item_index` (B,) the positive, and `history`
(B, L) left-padded with `n_items` (the padding index). The positive is removed from the history
in `batch_loss`, so the model learns to predict an item from the *other* items of the user.

With `sparse=True` every embedding table gives sparse gradients (only the rows a batch looked
up), which is what the sampled losses allow: a step then touches, and the ranks exchange, rows in
proportion to the batch, not the catalog (`recspark.training.optim`). The full softmax reads the
whole item table, so it stays dense.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from recspark.models.sampled import (
    draw_negatives,
    negative_logits,
    prior_from_counts,
    sampled_softmax,
)
from recspark.ranking.factors import IdFactors
from recspark.vocab import LossName, choices


class TwoTower(nn.Module):
    """User tower (id + history encoder) and item tower (id + bias); score = u . i + b_i."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        use_history: bool = True,
        history_dropout: float = 0.0,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.use_history = use_history
        self.history_dropout = history_dropout
        self.user_tower = nn.Embedding(n_users, dim)
        self.item_tower = nn.Embedding(n_items, dim)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user_tower.weight, std=0.01 if use_history else 0.1)
        nn.init.normal_(self.item_tower.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)
        if use_history:
            self.history_items = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
            nn.init.normal_(self.history_items.weight, std=0.1)
            with torch.no_grad():
                self.history_items.weight[n_items].zero_()
            self.history_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        for table in self.embedding_tables():
            table.sparse = sparse
        self.register_buffer("sampling_prior", None, persistent=False)

    def embedding_tables(self) -> list[nn.Embedding]:
        """The id-indexed tables (users, items, item bias, history items)."""
        tables = [self.user_tower, self.item_tower, self.item_bias]
        return [*tables, self.history_items] if self.use_history else tables

    def set_sampling_prior(self, counts: torch.Tensor) -> None:
        """Each item's count among the training positives: the sampled softmax's logQ prior."""
        self.sampling_prior = prior_from_counts(counts).to(self.item_tower.weight.device)

    # -- towers ----------------------------------------------------------------------------------
    def user_vectors(self, users: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
        """(B, dim) user vectors from user indices and (B, L) padded histories."""
        vectors = self.user_tower(users)
        if self.use_history and history is not None:
            mask = (history != self.n_items).to(vectors.dtype)
            summed = (self.history_items(history) * mask.unsqueeze(-1)).sum(1)
            mean = summed / mask.sum(1, keepdim=True).clamp(min=1.0)
            vectors = vectors + mean + self.history_mlp(mean)
        return vectors

    def item_logits(self, user_vectors: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """Scores of users against `items` (None: the whole catalog, (B, n_items))."""
        if items is None:
            return user_vectors @ self.item_tower.weight.T + self.item_bias.weight.T
        return (user_vectors * self.item_tower(items)).sum(-1) + self.item_bias(items).squeeze(-1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for (user, item) index pairs, without history (id tower only)."""
        return self.item_logits(self.user_vectors(users, None), items)

    # -- training --------------------------------------------------------------------------------
    def _training_history(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.use_history or "history" not in batch:
            return None
        history = batch["history"].clone()
        history[history == batch["item_index"].unsqueeze(1)] = self.n_items
        if self.training and self.history_dropout > 0:
            drop = torch.rand(history.shape, device=history.device) < self.history_dropout
            history[drop] = self.n_items
        return history

    def batch_loss(
        self,
        batch: dict[str, torch.Tensor],
        loss: LossName = "softmax",
        negatives: int = 0,
        generator: torch.Generator | None = None,
        in_batch: int | None = None,
    ) -> torch.Tensor:
        """Mean loss of a batch of positives (see the module docstring for `loss`); `generator`
        draws the sampled negatives (one seeded per step makes every rank draw the same);
        `in_batch`: the most rows whose positives are the sampled softmax's in-batch negatives."""
        users, items = batch["user_index"], batch["item_index"]
        user_vectors = self.user_vectors(users, self._training_history(batch))
        if loss == "softmax":
            return F.cross_entropy(self.item_logits(user_vectors, None), items)
        if loss == "sampled_softmax":
            prior = getattr(self, "sampling_prior", None)
            drawn = draw_negatives(items, self.n_items, negatives, prior, generator, in_batch)
            vectors, bias = self.item_tower(drawn.items), self.item_bias(drawn.items)[:, 0]
            logits = negative_logits(user_vectors, vectors, bias, drawn)
            return sampled_softmax(self.item_logits(user_vectors, items), logits, drawn, items)
        if loss == "bpr":
            negative = torch.randint(0, self.n_items, items.shape, generator=generator)
            negative = negative.to(items.device)
            margin = self.item_logits(user_vectors, items) - self.item_logits(
                user_vectors, negative
            )
            return -F.logsigmoid(margin).mean()
        raise ValueError(f"unknown loss {loss!r}: expected one of {choices(LossName)}")

    def validation_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, n_items) scores of validation rows (history without the target)."""
        history = batch.get("history")
        if history is not None:
            history = history.clone()
            history[history == batch["item_index"].unsqueeze(1)] = self.n_items
        return self.item_logits(self.user_vectors(batch["user_index"], history), None)

    # -- export ----------------------------------------------------------------------------------
    @torch.no_grad()
    def factor_set(
        self, history_batches: Iterable[tuple[Any, Any]] = (), batch: int = 4096
    ) -> IdFactors:
        """IdFactors: a vector for every user index, item vectors with the bias folded in.

        `history_batches` yields (user indices, (B, L) padded histories); those users' vectors
        include their history, the others have the id part only.
        """
        was_training = self.training
        self.eval()
        users_out = torch.zeros(self.n_users, self.dim + 1)
        users_out[:, self.dim] = 1.0
        for start in range(0, self.n_users, batch):
            users = torch.arange(start, min(start + batch, self.n_users))
            users_out[users, : self.dim] = self.user_vectors(users, None).float()
        if self.use_history:
            for users_np, histories in history_batches:
                users = torch.as_tensor(users_np, dtype=torch.long)
                vectors = self.user_vectors(users, torch.as_tensor(histories, dtype=torch.long))
                users_out[users, : self.dim] = vectors.float()
        self.train(was_training)
        items = self.item_tower.weight.detach().float()
        bias = self.item_bias.weight.detach().float()
        return IdFactors(
            users=users_out.numpy(), items=torch.cat([items, bias], dim=1).cpu().numpy()
        )

    def factors(self) -> tuple[Any, Any]:
        """(user vectors, item vectors) from the id towers only.

        Kept for versions logged by recspark 0.1 (a bare TwoTower without a history encoder):
        it reads only the tensors every version has, so their unpickled objects still score.
        """
        with torch.no_grad():
            users = self.user_tower.weight.detach().cpu().float()
            items = self.item_tower.weight.detach().cpu().float()
            bias = self.item_bias.weight.detach().cpu().float()
        ones = torch.ones(users.shape[0], 1)
        return torch.cat([users, ones], 1).numpy(), torch.cat([items, bias], 1).numpy()

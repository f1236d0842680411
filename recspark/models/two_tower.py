"""The two-tower model: a user tower and an item tower, scored by a dot product."""

from __future__ import annotations

from typing import Any

import torch
from numpy.typing import NDArray
from torch import nn


class TwoTower(nn.Module):
    """User and item id embeddings (the towers), dot-product score plus an item bias.

    The item bias lets the model learn popularity separately from taste. `factors()` folds it
    into the vectors so scoring is one matrix product: score = [u, 1] . [i, b_i].
    """

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_tower = nn.Embedding(n_users, dim)
        self.item_tower = nn.Embedding(n_items, dim)
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user_tower.weight, std=0.1)
        nn.init.normal_(self.item_tower.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits for (user, item) index pairs."""
        u = self.user_tower(users)
        i = self.item_tower(items)
        return (u * i).sum(-1) + self.item_bias(items).squeeze(-1)

    @torch.no_grad()
    def factors(self) -> tuple[NDArray[Any], NDArray[Any]]:
        """(user vectors, item vectors) such that scores = users @ items.T."""
        users = self.user_tower.weight.detach().cpu().float()
        items = self.item_tower.weight.detach().cpu().float()
        ones = torch.ones(users.shape[0], 1)
        bias = self.item_bias.weight.detach().cpu().float()
        return (
            torch.cat([users, ones], dim=1).numpy(),
            torch.cat([items, bias], dim=1).numpy(),
        )

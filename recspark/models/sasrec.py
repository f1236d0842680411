"""SASRec: a causal self-attention model of the next item (Kang & McAuley, 2018).

A user is the sequence of their last items, oldest to newest, left-padded with the padding index
`n_items`. The hidden state at a position is the query for the item that comes next; the hidden
state at the last position is the user's vector. Input and output share one item embedding table
(plus an optional item bias), so scores are one matrix product: score = [h, 1] . [e_i, b_i], the
same shape of export as `TwoTower.factors`.

Positions are counted from the user's first (oldest) item in the window, not from the start of
the padded tensor: more left padding leaves every output unchanged, and a position depends only on
the items before it, so the model stays causal.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recspark.models.sampled import (
    draw_negatives,
    negative_logits,
    prior_from_counts,
    sampled_softmax,
)
from recspark.ranking.factors import IdFactors

LENGTH_GROUPS = 4  # `loss` encodes a batch in this many groups of rows of similar length


class _Dropout(nn.Module):
    """Dropout as `nn.Dropout` computes it, with the mask from `torch.rand_like`: on CPU about
    2.5x faster than `F.dropout`'s Bernoulli draws, which took a fifth of a SASRec step."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * ((torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p)))


class _Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, dim: int, n_heads: int, dropout: float, ffn_mult: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim),
            nn.GELU(),
            _Dropout(dropout),
            nn.Linear(ffn_mult * dim, dim),
        )
        self.drop = _Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """`x` (B, L, d); `attend` (B, 1, L, L) bool, True where query i may look at key j."""
        b, length, d = x.shape
        q, k, v = (
            self.qkv(self.attn_norm(x))
            .view(b, length, 3, self.n_heads, d // self.n_heads)
            .permute(2, 0, 3, 1, 4)
        )
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class SASRec(nn.Module):
    """Self-attentive sequential recommender with a shared input/output item embedding.

    Args:
        n_items: catalog size; items are 0..n_items-1 and `n_items` is the padding index.
        dim: hidden size (divisible by `n_heads`).
        max_len: the longest sequence (number of real items) the model accepts.
        n_layers: number of transformer blocks.
        n_heads: attention heads per block.
        dropout: dropout on embeddings, attention weights and block outputs.
        item_bias: learn a per-item bias added to every score (a popularity prior); when on,
            user and item vectors get one extra column ([h, 1] and [e_i, b_i]).
        ffn_mult: width of the feed-forward layer as a multiple of `dim`.
        sparse: sparse gradients for the item table and bias (for the sampled softmax).
    """

    def __init__(
        self,
        n_items: int,
        dim: int,
        max_len: int,
        n_layers: int = 2,
        n_heads: int = 2,
        dropout: float = 0.2,
        *,
        item_bias: bool = True,
        ffn_mult: int = 4,
        sparse: bool = False,
    ) -> None:
        super().__init__()
        if n_items < 1 or max_len < 1 or n_layers < 1:
            raise ValueError("n_items, max_len and n_layers must be >= 1")
        if dim % n_heads:
            raise ValueError(f"dim ({dim}) must be divisible by n_heads ({n_heads})")
        self.n_items, self.dim, self.max_len = n_items, dim, max_len
        self.pad = n_items
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=n_items, sparse=sparse)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.item_bias: nn.Embedding | None = (
            nn.Embedding(n_items, 1, sparse=sparse) if item_bias else None
        )
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("sampling_prior", None, persistent=False)
        self.emb_drop = _Dropout(dropout)
        self.blocks = nn.ModuleList(
            _Block(dim, n_heads, dropout, ffn_mult) for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(dim)
        # Unit-norm-ish item rows: the output logits start O(1); the input is scaled by sqrt(dim)
        # (as in the original transformer with tied embeddings) to match the positional scale.
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.5)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickle a model of an earlier recspark, whose item bias was a bare (n_items,)
        parameter `bias`, into this shape (an (n_items, 1) embedding `item_bias`)."""
        super().__setstate__(state)
        modules = self.__dict__["_modules"]
        if "item_bias" not in modules:
            old = self.__dict__["_parameters"].pop("bias", None)
            table = None
            if old is not None:
                table = nn.Embedding(len(old), 1)
                table.weight.data.copy_(old.detach().unsqueeze(1))
            modules["item_bias"] = table
        self.__dict__["_buffers"].setdefault("sampling_prior", None)

    def set_sampling_prior(self, counts: torch.Tensor) -> None:
        """Each item's count among the training targets: the sampled softmax's logQ prior."""
        self.sampling_prior = prior_from_counts(counts).to(self.item_emb.weight.device)

    @property
    def vector_dim(self) -> int:
        """Width of `user_vectors_from_sequences` and `item_vectors` (dim, +1 with the bias)."""
        return self.dim + (1 if self.item_bias is not None else 0)

    def _bias(self, items: torch.Tensor | None = None) -> torch.Tensor | None:
        """The item bias of `items` (K,), or of the whole catalog; None without a bias."""
        if self.item_bias is None:
            return None
        if items is None:
            return self.item_bias.weight[:, 0]
        return self.item_bias(items)[:, 0]

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded item indices -> (B, L, dim) hidden states; padded positions are 0.

        The state at position t depends only on seq[:, :t+1] (causal) and not on how much
        padding comes before the first item.

        Raises:
            ValueError: if a row holds more than `max_len` real items.
        """
        real = seq != self.pad
        # Checked only when it can fail: reading the count back syncs a GPU.
        if seq.shape[1] > self.max_len and int(real.sum(dim=1).max()) > self.max_len:
            raise ValueError(f"a sequence has more than max_len={self.max_len} items")
        # Position = number of real items before this one (0 = oldest in the window).
        pos = (real.cumsum(dim=1) - 1).clamp(min=0)
        x = self.item_emb(seq) * math.sqrt(self.dim) + self.pos_emb(pos)
        x = self.emb_drop(x * real.unsqueeze(-1))
        length = seq.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        # Query i attends to real keys j <= i. A padded query attends to itself alone, so no row
        # of the mask is empty (an empty row makes softmax NaN); its output is discarded.
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)
        attend = (causal & real.unsqueeze(1)) | eye
        attend = attend.unsqueeze(1)
        for block in self.blocks:
            x = block(x, attend)
        return self.out_norm(x) * real.unsqueeze(-1)

    def _score(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of hidden states `h` (..., dim) for `items` (K,), or the whole catalog."""
        weight = self.item_emb.weight[: self.n_items] if items is None else self.item_emb(items)
        logits = h @ weight.T
        bias = self._bias(items)
        return logits if bias is None else logits + bias

    def loss(
        self,
        seq: torch.Tensor,
        target: torch.Tensor,
        n_negatives: int | None = None,
        generator: torch.Generator | None = None,
        max_in_batch: int | None = None,
    ) -> torch.Tensor:
        """Mean next-item cross-entropy over positions where both input and target are real.

        Args:
            seq: (B, L) left-padded input items.
            target: (B, L) the item after each input position; `n_items` (padding) is ignored.
            n_negatives: None for the full softmax over the catalog; an int M >= 0 for the
                sampled softmax (`recspark.models.sampled`): each position's target against the
                targets of up to `max_in_batch` positions of the batch (in-batch negatives) and M
                items drawn uniformly (with replacement, by `generator`) and shared by the batch,
                logQ-corrected by the items' share of the training targets
                (`set_sampling_prior`).
            generator: draws the shared negatives and the in-batch positions.
            max_in_batch: the most positions whose targets are in-batch negatives (None: all).
        """
        h, y = self._real_states(seq, target)
        if not len(y):
            return h.sum() * 0.0
        if n_negatives is None:
            return F.cross_entropy(self._score(h), y)
        prior = getattr(self, "sampling_prior", None)
        drawn = draw_negatives(y, self.n_items, n_negatives, prior, generator, max_in_batch)
        own = (h * self.item_emb(y)).sum(-1)
        own_bias = self._bias(y)
        if own_bias is not None:
            own = own + own_bias
        logits = negative_logits(h, self.item_emb(drawn.items), self._bias(drawn.items), drawn)
        return sampled_softmax(own, logits, drawn, y)

    def _real_states(
        self, seq: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states, targets) of the positions where both input and target are real.

        Rows are encoded in LENGTH_GROUPS groups of similar length, each cut to its longest row:
        left padding changes no output (see `encode`), so this is the same loss as encoding the
        padded batch, at a fraction of the cost when most rows are short (measured on Amazon
        Beauty on CPU: a batch of 128 rows is 44 columns wide on average, a row 7 items long).
        """
        n_real = (seq != self.pad).sum(dim=1)
        states, targets = [], []
        for rows in torch.argsort(n_real).chunk(LENGTH_GROUPS):
            width = max(1, int(n_real[rows[-1]]))
            part, part_target = seq[rows, -width:], target[rows, -width:]
            keep = (part_target != self.pad) & (part != self.pad)
            states.append(self.encode(part)[keep])
            targets.append(part_target[keep])
        return torch.cat(states), torch.cat(targets)

    def sequences_to_training(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) left-padded sequences -> (input, target), each (B, L-1): target[t] = seq[t+1].

        A target whose input is padding (the first item of a row) becomes padding too: nothing
        comes before it to predict it from, so the loss skips it.
        """
        inp, target = seq[:, :-1], seq[:, 1:]
        return inp, target.masked_fill(inp == self.pad, self.pad)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) sequences -> (B, n_items) logits of each user's next item."""
        return self._score(self.encode(self._clip(seq))[:, -1])

    def _clip(self, seq: torch.Tensor) -> torch.Tensor:
        """The last `max_len` columns (the most recent items) of a left-padded batch."""
        return seq[:, -self.max_len :] if seq.shape[1] > self.max_len else seq

    def user_vectors_from_sequences(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, L) sequences -> (B, vector_dim) next-item queries: [h_last, 1] with the bias.

        Longer rows are cut to their last `max_len` items. An empty row gives h_last = 0, so
        with the bias it ranks items by bias alone.
        """
        h = self.encode(self._clip(seq))[:, -1]
        if self.item_bias is None:
            return h
        return torch.cat([h, torch.ones_like(h[:, :1])], dim=1)

    def item_vectors(self) -> torch.Tensor:
        """(n_items, vector_dim) item vectors: [e_i, b_i] with the bias, padding row left out."""
        items = self.item_emb.weight[: self.n_items]
        if self.item_bias is None:
            return items
        return torch.cat([items, self.item_bias.weight], dim=1)

    @torch.no_grad()
    def factor_set(self, seqs_by_user: torch.Tensor, batch_size: int = 1024) -> IdFactors:
        """Export float32 user and item vectors, computed in eval mode in batches.

        Args:
            seqs_by_user: (n_users, L) left-padded sequences, row u = user index u (a row of
                padding only for a user with no history).
            batch_size: users encoded at a time.
        """
        was_training = self.training
        self.eval()
        try:
            device = self.item_emb.weight.device
            users = np.empty((seqs_by_user.shape[0], self.vector_dim), dtype=np.float32)
            for start in range(0, seqs_by_user.shape[0], batch_size):
                batch = seqs_by_user[start : start + batch_size].to(device)
                vecs = self.user_vectors_from_sequences(batch)
                users[start : start + len(batch)] = vecs.float().cpu().numpy()
            items = self.item_vectors().float().cpu().numpy()
        finally:
            self.train(was_training)
        return IdFactors(users=users, items=items)

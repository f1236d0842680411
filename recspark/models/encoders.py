"""A user's vector from their history alone, for every kind of model recspark serves.

The night exports a vector per known user (`ScoringModel.user_factors`). Between nights a user's
history grows (`recspark.online.refresh`): their vector is recomputed from it with the night's
model, in the same space as the model's item vectors, so the ranking layer ranks it as it ranks
the night's vectors. Per kind:

- EASE (item-item): the multi-hot row of the history (`MultiHot`);
- ALS: the user folded in, the least-squares solve of implicit ALS for one user against the
  fixed item factors (`FoldIn`, the same normal equations Spark MLlib solves per user);
- two-tower: the user tower on the history (`TwoTowerEncoder`: the id part for a user the model
  knows, zero for a new one, plus the history encoder);
- SASRec: the transformer on the latest `max_len` items (`SasrecEncoder`);
- a blend: its members' vectors weighted and put side by side in the blend's layout
  (`BlendEncoder`, see `recspark.ranking.blend.blend_factors`).

What a model needs beyond its factors to do this is kept with it as an `EncoderSpec`
(`ScoringModel.encoder_spec`): ALS's regularisation, a blend's members; gradient models carry
their network anyway. `encoder_of` builds the encoder of a loaded model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from recspark.ranking.factors import SeenItems


class UserEncoder(Protocol):
    """Vectors of a batch of users from their histories (item indices, oldest first)."""

    def vectors(self, users: NDArray[np.int64], history: SeenItems) -> NDArray[np.float32]:
        """(B, d) vectors; `users` holds each row's user index, -1 for one the model never saw."""
        ...


@dataclass(frozen=True)
class MultiHot:
    """Item-item models (EASE): the user vector is the multi-hot row of the history."""

    n_items: int

    def vectors(self, users: NDArray[np.int64], history: SeenItems) -> NDArray[np.float32]:
        return history.multi_hot(self.n_items, np.float32)


@dataclass(frozen=True)
class FoldIn:
    """Implicit ALS's user solve against fixed item factors Y (Hu, Koren & Volinsky 2008).

    With every history item rated 1 (the pairs ALS is fit on), confidence c = 1 + alpha:
    x = (YᵀY + alpha Σ y_i y_iᵀ + reg_param n_u I)⁻¹ (1 + alpha) Σ y_i, n_u the user's distinct
    items (MLlib scales the regularisation by it, ALS-WR). A user without items gets zeros.
    """

    items: NDArray[np.float32]
    reg_param: float
    alpha: float

    @functools.cached_property
    def gram(self) -> NDArray[np.float64]:
        y = self.items.astype(np.float64)
        return y.T @ y

    def vectors(self, users: NDArray[np.int64], history: SeenItems) -> NDArray[np.float32]:
        rank = self.items.shape[1]
        out = np.zeros((len(history), rank), dtype=np.float32)
        eye = np.eye(rank)
        for row in range(len(history)):
            items = np.unique(history[row])
            if not len(items):
                continue
            y = self.items[items].astype(np.float64)
            a = self.gram + self.alpha * (y.T @ y) + self.reg_param * len(items) * eye
            out[row] = np.linalg.solve(a, (1.0 + self.alpha) * y.sum(axis=0))
        return out


def left_padded(
    history: SeenItems, length: int, pad: int, rows: Sequence[int] | NDArray[Any] | None = None
) -> NDArray[np.int64]:
    """(B, length) the last `length` items of each row (of `rows` only, in that order, when
    given), left-padded with `pad`."""
    rows = range(len(history)) if rows is None else rows
    out = np.full((len(rows), length), pad, dtype=np.int64)
    for at, row in enumerate(rows):
        items = history[int(row)][-length:]
        if len(items):
            out[at, length - len(items) :] = items
    return out


def trimmed_width(lengths: NDArray[Any], length: int) -> int:
    """The padded width a block of histories of `lengths` needs: its longest within `length`,
    at least 1. Left padding changes no history encoder's output (SASRec counts positions from
    the first real item, the two-tower averages the real ones), so padding to `length` only
    costs time: a block of 10-item histories encoded at 50 columns is 4-5x slower."""
    return max(1, min(length, int(lengths.max(initial=0))))


SAME_LENGTH_ROWS = 64
"""SASRec encodes histories in groups of this many rows of similar length (its cost grows with
the padded width, quadratically in attention)."""


@dataclass(frozen=True)
class TwoTowerEncoder:
    """The two-tower's user tower: id embedding (zero for a user it does not know) plus the
    history encoder over the latest `length` items; a 1 appended for the item bias."""

    network: Any  # recspark.models.two_tower.TwoTower
    length: int

    @torch.no_grad()
    def vectors(self, users: NDArray[np.int64], history: SeenItems) -> NDArray[np.float32]:
        net = self.network.eval()
        known = (users >= 0) & (users < net.n_users)
        ids = torch.as_tensor(np.where(known, users, 0), dtype=torch.long)
        width = trimmed_width(history.lengths(), self.length)
        padded = torch.as_tensor(left_padded(history, width, net.n_items))
        vectors = net.user_vectors(ids, padded if net.use_history else None).float()
        if net.use_history:
            vectors = vectors - net.user_tower(ids).float() * torch.as_tensor(~known)[:, None]
        else:
            vectors = vectors * torch.as_tensor(known)[:, None]
        ones = torch.ones(len(users), 1)
        return torch.cat([vectors, ones], dim=1).numpy()


@dataclass(frozen=True)
class SasrecEncoder:
    """SASRec's next-item query from the latest `max_len` items of the history, rows encoded
    in groups of similar length (`SAME_LENGTH_ROWS`), each padded to its longest."""

    network: Any  # recspark.models.registry.SequentialRecommender

    @torch.no_grad()
    def vectors(self, users: NDArray[np.int64], history: SeenItems) -> NDArray[np.float32]:
        sasrec = self.network.sasrec.eval()
        lengths = history.lengths()
        order = np.argsort(np.minimum(lengths, sasrec.max_len), kind="stable")
        out = np.empty((len(history), sasrec.vector_dim), dtype=np.float32)
        for start in range(0, len(order), SAME_LENGTH_ROWS):
            rows = order[start : start + SAME_LENGTH_ROWS]
            width = trimmed_width(lengths[rows], sasrec.max_len)
            padded = torch.as_tensor(left_padded(history, width, sasrec.pad, rows))
            out[rows] = sasrec.user_vectors_from_sequences(padded).float().numpy()
        return out


@dataclass(frozen=True)
class BlendEncoder:
    """A blend's user vector: the multi-hot history (when an item-item member is in it), then
    each id-based member's vector times its weight, in the order of the blend's columns."""

    history_items: int  # 0 without an item-item member
    parts: tuple[tuple[float, UserEncoder], ...]

    def vectors(self, users: NDArray[np.int64], history: SeenItems) -> NDArray[np.float32]:
        blocks = [history.multi_hot(self.history_items, np.float32)] if self.history_items else []
        blocks += [np.float32(w) * e.vectors(users, history) for w, e in self.parts]
        return np.hstack(blocks).astype(np.float32, copy=False)


@dataclass(frozen=True)
class FoldInSpec:
    """What ALS's fold-in needs beyond the item factors."""

    reg_param: float
    alpha: float


@dataclass(frozen=True)
class MemberSpec:
    """One id-based member of a blend: its kind, its weight on the raw scores, the width of its
    vectors, and what builds its encoder (its network, or its FoldInSpec for ALS)."""

    kind: str
    weight: float
    width: int
    state: Any


@dataclass(frozen=True)
class BlendSpec:
    """A blend's members, in the order of its columns (`blend_factors`)."""

    history: bool  # an item-item member is in it (the first n_items columns)
    members: tuple[MemberSpec, ...]


EncoderSpec = FoldInSpec | BlendSpec


class EncoderError(ValueError):
    """A registered model that cannot recompute a user's vector from a history."""


def _member_encoder(member: MemberSpec, items: NDArray[Any], length: int) -> UserEncoder:
    if member.kind == "als" and isinstance(member.state, FoldInSpec):
        spec = member.state
        return FoldIn(np.ascontiguousarray(items, np.float32), spec.reg_param, spec.alpha)
    if member.kind == "two_tower" and member.state is not None:
        return TwoTowerEncoder(member.state, length)
    if member.kind == "sasrec" and member.state is not None:
        return SasrecEncoder(member.state)
    raise EncoderError(
        f"the blend's {member.kind} member was kept without what recomputes a user's vector "
        "(a fit of a version before the refresh stream existed); the next full fit has it"
    )


def _blend_encoder(spec: BlendSpec, items: NDArray[Any], length: int) -> BlendEncoder:
    """The blend's item columns are [item-item weights (n_items), each member's raw item
    vectors]; the member encoders get their own block (ALS folds in against it)."""
    n_items = items.shape[0]
    start = n_items if spec.history else 0
    parts: list[tuple[float, UserEncoder]] = []
    for member in spec.members:
        block = items[:, start : start + member.width]
        parts.append((member.weight, _member_encoder(member, block, length)))
        start += member.width
    return BlendEncoder(n_items if spec.history else 0, tuple(parts))


def encoder_of(model: Any, length: int) -> UserEncoder:
    """The encoder of a loaded `ScoringModel` (`length`: the history a two-tower reads,
    `features.sequence_length`).

    Raises:
        EncoderError: the model kind keeps nothing to recompute a vector from (a version
            registered before refresh existed, for ALS and blends).
    """
    factors = model.factor_set()
    spec = getattr(model, "encoder_spec", None)
    items = np.asarray(factors.items)
    if isinstance(spec, BlendSpec):
        return _blend_encoder(spec, items, length)
    if getattr(model, "history_based", False):
        return MultiHot(items.shape[1])
    name = str(model.model_name)
    if isinstance(spec, FoldInSpec):
        return FoldIn(np.ascontiguousarray(items, np.float32), spec.reg_param, spec.alpha)
    if name in ("two_tower", "sasrec") and model.network is not None:
        return _member_encoder(MemberSpec(name, 1.0, items.shape[1], model.network), items, length)
    raise EncoderError(
        f"model {name!r} was registered without what recomputes a user's vector (a version "
        "registered before the refresh stream existed); the next night's version has it"
    )


def blend_spec(
    members: Sequence[tuple[str, Any, Any, float]], history_weights: Sequence[float]
) -> BlendSpec:
    """The spec of a blend of `members` (name, ScoringModel, its factors, weight on raw scores),
    weight-0 members left out as `blend_factors` leaves them out; `history_weights` the
    weights of the item-item members."""
    specs = tuple(
        MemberSpec(name, float(weight), int(factors.items.shape[1]), _state(model))
        for name, model, factors, weight in members
        if weight != 0 and not getattr(model, "history_based", False)
    )
    return BlendSpec(any(w != 0 for w in history_weights), specs)


def _state(model: Any) -> Any:
    spec = getattr(model, "encoder_spec", None)
    return spec if isinstance(spec, FoldInSpec) else model.network


__all__ = [
    "BlendEncoder",
    "BlendSpec",
    "EncoderError",
    "EncoderSpec",
    "FoldIn",
    "FoldInSpec",
    "MemberSpec",
    "MultiHot",
    "SasrecEncoder",
    "TwoTowerEncoder",
    "UserEncoder",
    "blend_spec",
    "encoder_of",
    "left_padded",
]

"""A user's vector recomputed from their history (recspark/models/encoders.py) is the vector the
night exports for the same history, for every model kind; a blend's is its members' weighted
concatenation; ALS's fold-in is the least-squares solve of the implicit objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recspark.models.base import ScoringModel
from recspark.models.encoders import (
    SAME_LENGTH_ROWS,
    EncoderError,
    FoldIn,
    FoldInSpec,
    blend_spec,
    encoder_of,
)
from recspark.models.registry import SequentialRecommender
from recspark.models.two_tower import TwoTower
from recspark.ranking.blend import blend_factors
from recspark.ranking.factors import HistoryFactors, IdFactors, SeenItems

N_USERS, N_ITEMS, LENGTH = 6, 9, 4
HISTORIES = [[1, 4, 2], [0], [3, 5, 6, 7, 8]]  # oldest first


def _padded(histories: list[list[int]], length: int) -> np.ndarray:
    out = np.full((len(histories), length), N_ITEMS, np.int64)
    for row, items in enumerate(histories):
        kept = items[-length:]
        out[row, length - len(kept) :] = kept
    return out


def _trained_like(module: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module.eval()


def test_two_tower_vectors_are_the_exported_ones_and_new_users_have_no_id_part() -> None:
    net = _trained_like(TwoTower(N_USERS, N_ITEMS, 5, use_history=True))
    users = np.array([0, 2, 4])
    exported = net.factor_set([(users, _padded(HISTORIES, LENGTH))])  # type: ignore[operator]
    model = ScoringModel("two_tower", net, exported)
    encoder = encoder_of(model, LENGTH)
    vectors = encoder.vectors(users, SeenItems.from_lists(HISTORIES))
    np.testing.assert_allclose(vectors, exported.users[users], rtol=1e-5, atol=1e-6)
    new = encoder.vectors(np.array([-1]), SeenItems.from_lists(HISTORIES[:1]))
    history = torch.as_tensor(_padded(HISTORIES[:1], LENGTH))
    with torch.no_grad():
        expected = net.user_vectors(torch.tensor([0]), history) - net.user_tower(torch.tensor([0]))
    np.testing.assert_allclose(new[0, :-1], expected[0].numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(new[0], vectors[0])


def test_sasrec_vectors_are_the_exported_ones() -> None:
    net = _trained_like(
        SequentialRecommender(N_USERS, N_ITEMS, 8, max_len=LENGTH, n_layers=1, dropout=0.0)
    )
    users = np.array([1, 3, 5])
    exported = net.factor_set([(users, _padded(HISTORIES, LENGTH))])  # type: ignore[operator]
    encoder = encoder_of(ScoringModel("sasrec", net, exported), LENGTH)
    vectors = encoder.vectors(np.array([-1, 3, 5]), SeenItems.from_lists(HISTORIES))
    np.testing.assert_allclose(vectors, exported.users[users], rtol=1e-4, atol=1e-5)


def test_sasrec_encodes_short_histories_in_groups_as_at_full_width() -> None:
    """Rows of many lengths, more than one group of them: the same vectors as the whole batch
    left-padded to max_len (padding is only time), each in its row."""
    net = _trained_like(SequentialRecommender(N_USERS, N_ITEMS, 8, max_len=12, dropout=0.0))
    rng = np.random.default_rng(5)
    histories = [list(rng.integers(0, N_ITEMS, rng.integers(0, 16))) for _ in range(150)]
    assert len(histories) > SAME_LENGTH_ROWS
    full = np.full((len(histories), 12), N_ITEMS, np.int64)
    for row, items in enumerate(histories):
        if items:
            full[row, -len(items[-12:]) :] = items[-12:]
    with torch.no_grad():
        expected = net.sasrec.user_vectors_from_sequences(torch.as_tensor(full)).numpy()
    encoder = encoder_of(
        ScoringModel("sasrec", net, IdFactors(np.zeros((1, 9)), np.zeros((9, 9)))), 12
    )
    vectors = encoder.vectors(np.full(len(histories), -1), SeenItems.from_lists(histories))
    np.testing.assert_allclose(vectors, expected, rtol=1e-4, atol=1e-5)


def test_ease_vector_is_the_multi_hot_history() -> None:
    weights = np.random.default_rng(0).normal(size=(N_ITEMS, N_ITEMS)).astype(np.float32)
    encoder = encoder_of(ScoringModel("ease", None, HistoryFactors(weights)), LENGTH)
    vectors = encoder.vectors(np.array([0, 1, 2]), SeenItems.from_lists(HISTORIES))
    assert vectors.shape == (3, N_ITEMS)
    assert [list(np.flatnonzero(v)) for v in vectors] == [sorted(h) for h in HISTORIES]


def test_als_fold_in_solves_the_implicit_least_squares() -> None:
    """x minimises sum_i c_i (p_i - x.y_i)^2 + reg * n_u * |x|^2 over the whole catalog, with
    p = 1, c = 1 + alpha on the history and p = 0, c = 1 elsewhere (a weighted lstsq)."""
    y = np.random.default_rng(1).normal(size=(N_ITEMS, 3)).astype(np.float32)
    reg, alpha = 0.3, 2.0
    fold = FoldIn(y, reg, alpha)
    vectors = fold.vectors(np.array([0, 1, 2]), SeenItems.from_lists(HISTORIES))
    for row, history in enumerate(HISTORIES):
        p = np.zeros(N_ITEMS)
        p[history] = 1.0
        c = 1.0 + alpha * p
        a = np.vstack([np.sqrt(c)[:, None] * y, np.sqrt(reg * len(history)) * np.eye(3)])
        b = np.concatenate([np.sqrt(c) * p, np.zeros(3)])
        expected = np.linalg.lstsq(a, b, rcond=None)[0]
        np.testing.assert_allclose(vectors[row], expected, rtol=1e-4, atol=1e-5)
    assert not fold.vectors(np.array([0]), SeenItems.from_lists([[]])).any()


def test_blend_vectors_score_as_the_weighted_members() -> None:
    rng = np.random.default_rng(2)
    net = _trained_like(TwoTower(N_USERS, N_ITEMS, 5, use_history=True))
    tower = ScoringModel("two_tower", net, net.factor_set())
    als = ScoringModel(
        "als", None, IdFactors(rng.normal(size=(N_USERS, 3)), rng.normal(size=(N_ITEMS, 3)))
    )
    als.encoder_spec = FoldInSpec(0.2, 1.0)
    ease = ScoringModel("ease", None, HistoryFactors(rng.normal(size=(N_ITEMS, N_ITEMS))))
    members = [("ease", ease), ("two_tower", tower), ("als", als)]
    weights = [0.5, 0.0, 1.5]  # a weight-0 member is left out, as blend_factors leaves it
    factor_sets = [m.factor_set() for _, m in members]
    blend = ScoringModel("blend", None, blend_factors(factor_sets, weights))
    blend.encoder_spec = blend_spec(
        [(n, m, f, w) for (n, m), f, w in zip(members, factor_sets, weights, strict=True)], [0.5]
    )
    users, history = np.array([0, -1, 2]), SeenItems.from_lists(HISTORIES)
    scores = encoder_of(blend, LENGTH).vectors(users, history) @ blend.factor_set().items.T
    expected = sum(
        w * (encoder_of(m, LENGTH).vectors(users, history) @ f.items.T)
        for (_, m), f, w in zip(members, factor_sets, weights, strict=True)
        if w
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


def test_a_model_without_what_folds_in_is_refused() -> None:
    als = ScoringModel("als", None, IdFactors(np.ones((2, 2)), np.ones((3, 2))))
    with pytest.raises(EncoderError, match="registered without"):
        encoder_of(als, LENGTH)

"""The EASE and ALS baselines: the Spark gram, the closed form, the factor sets, and that both
recover a planted two-group structure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.typing import NDArray
from pyspark.sql import DataFrame, SparkSession

from recspark.models import ease
from recspark.models.als import MAX_ITER_WITHOUT_CHECKPOINT, fit_als
from recspark.models.ease import EaseModel, ease_weights, fit_ease, item_gram
from recspark.schemas import ITEM_INDEX, STRENGTH, USER_INDEX


def _binary(users: NDArray[Any], items: NDArray[Any], n_users: int, n_items: int) -> NDArray[Any]:
    x = np.zeros((n_users, n_items), dtype=np.float64)
    x[users, items] = 1.0
    return x


def _pairs_df(
    spark: SparkSession, users: NDArray[Any], items: NDArray[Any], **cols: Any
) -> DataFrame:
    pdf = pd.DataFrame({USER_INDEX: users.astype(np.int32), ITEM_INDEX: items.astype(np.int32)})
    for name, values in cols.items():
        pdf[name] = values
    return spark.createDataFrame(pdf)


@pytest.fixture(scope="module")
def planted(spark: SparkSession) -> dict[str, Any]:
    """Two disjoint groups of 20 items; each of 60 users has 12 items of their own group, the
    last 3 held out. Both groups are equally popular, so popularity alone ranks at chance."""
    rng = np.random.default_rng(3)
    n_users, n_items, group_size = 60, 40, 20
    group = np.arange(n_users) % 2
    train_u, train_i, test = [], [], {}
    for u in range(n_users):
        chosen = group[u] * group_size + rng.choice(group_size, 12, replace=False)
        train_u += [u] * 9
        train_i += chosen[:9].tolist()
        test[u] = chosen[9:]
    users, items = np.array(train_u), np.array(train_i)
    strength = rng.integers(1, 4, len(users)).astype(np.float64)
    return {
        "df": _pairs_df(spark, users, items, **{STRENGTH: strength}),
        "x": _binary(users, items, n_users, n_items),
        "group": group,
        "test": test,
        "n_users": n_users,
        "n_items": n_items,
        "group_size": group_size,
    }


def _own_group_above_other(scores: NDArray[Any], planted: dict[str, Any]) -> float:
    """Share of (held-out own-group item, other-group item) pairs ranked the right way."""
    size = planted["group_size"]
    right = total = 0
    for u, held_out in planted["test"].items():
        other = (1 - planted["group"][u]) * size + np.arange(size)
        right += int((scores[u, held_out][:, None] > scores[u, other][None, :]).sum())
        total += held_out.size * other.size
    return right / total


def test_item_gram_equals_numpy(spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 30
    users = rng.integers(0, n_users, 600)
    items = rng.integers(0, n_items - 2, 600)  # the last two items are never used
    users = np.concatenate([users, users[:40]])  # repeated pairs count once
    items = np.concatenate([items, items[:40]])
    x = _binary(users, items, n_users, n_items)
    # Small limits so that users are split into chunks, the gram into several row blocks and
    # the triples into several payload rows: every merge path runs.
    monkeypatch.setattr(ease, "_CHUNK_PRODUCTS", 200)
    monkeypatch.setattr(ease, "_BLOCK_CELLS", 7 * n_items)
    monkeypatch.setattr(ease, "_PAYLOAD_TRIPLES", 25)
    gram = item_gram(_pairs_df(spark, users, items), n_items, n_partitions=3)
    assert gram.dtype == np.float32
    np.testing.assert_array_equal(gram, x.T @ x)


def test_item_gram_of_no_pairs_is_zero(spark: SparkSession) -> None:
    empty = spark.createDataFrame([], f"{USER_INDEX} int, {ITEM_INDEX} int")
    np.testing.assert_array_equal(item_gram(empty, 4), np.zeros((4, 4), dtype=np.float32))


def test_ease_weights_match_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random((40, 15)) < 0.3).astype(np.float64)
    gram, l2 = x.T @ x, 5.0
    p = np.linalg.inv(gram + l2 * np.eye(15))
    expected = np.eye(15) - p / np.diag(p)[None, :]
    for dtype in ("float64", "float32"):
        b = ease_weights(gram, l2, dtype=dtype)
        assert b.dtype == np.float32
        assert np.all(np.diag(b) == 0.0)
        np.testing.assert_allclose(b, expected, atol=1e-5)
    np.testing.assert_array_equal(gram, x.T @ x)  # the input is left as it was


def test_history_factors_score_x_times_b() -> None:
    rng = np.random.default_rng(2)
    b = rng.normal(size=(12, 12)).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    model = EaseModel(b)
    factors = model.factor_set()
    assert factors.items.dtype == np.float32 and factors.items.flags.c_contiguous
    np.testing.assert_array_equal(model.item_vectors(), b.T)
    seen = [np.array([0, 3, 5]), np.array([], dtype=np.int64), np.array([11])]
    x = np.zeros((3, 12), dtype=np.float32)
    for row, items in enumerate(seen):
        x[row, items] = 1.0
    scores = factors.user_vectors(np.array([7, 8, 9]), seen) @ factors.items.T
    np.testing.assert_allclose(scores, x @ b, rtol=1e-6)
    np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), x @ b, rtol=1e-6)


def test_ease_recovers_planted_groups(planted: dict[str, Any]) -> None:
    model = fit_ease(planted["df"], planted["n_items"], l2=10.0)
    scores = planted["x"] @ model.weights.numpy()
    assert _own_group_above_other(scores, planted) > 0.95  # chance: 0.5


def test_als_recovers_planted_groups_deterministically(planted: dict[str, Any]) -> None:
    n_users, n_items = planted["n_users"] + 2, planted["n_items"]  # 2 users without pairs

    def fit() -> Any:
        return fit_als(
            planted["df"], n_users, n_items, rank=4, reg_param=0.1, alpha=1.0, max_iter=8, seed=5
        )

    factors = fit()
    assert factors.users.shape == (n_users, 4) and factors.items.shape == (n_items, 4)
    assert factors.users.dtype == np.float32 and factors.items.dtype == np.float32
    assert not factors.users[-2:].any()
    scores = factors.users @ factors.items.T
    assert _own_group_above_other(scores, planted) > 0.9  # chance: 0.5
    again = fit()
    np.testing.assert_array_equal(again.users, factors.users)
    np.testing.assert_array_equal(again.items, factors.items)


def test_als_refuses_long_runs_without_checkpoints(planted: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="StackOverflowError"):
        fit_als(planted["df"], 60, 40, max_iter=MAX_ITER_WITHOUT_CHECKPOINT + 1)


def test_fit_ease_refuses_a_catalog_above_max_items(spark: SparkSession) -> None:
    df = _pairs_df(spark, np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match=r"train\.ease\.max_items=10") as info:
        fit_ease(df, n_items=11, max_items=10)
    assert "GiB" in str(info.value)

"""Int8 quantization of factors: round-trip bound, score bound, top-K contract and overlap."""

from __future__ import annotations

import pickle
from typing import Literal

import numpy as np
import pytest
from numpy.typing import NDArray

from recspark.ranking.factors import HistoryFactors, IdFactors
from recspark.ranking.quantize import (
    MultiHot,
    QuantizedFactors,
    UserTable,
    int8_scores,
    quantize_rows,
    top_k_int8,
)
from recspark.ranking.topk import top_k

RNG_SEED = 7
Compute = Literal["int8", "bfloat16"]


def _low_rank(
    n_users: int, n_items: int, d: int, rank: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    rng = np.random.default_rng(RNG_SEED)
    mix = rng.normal(size=(rank, d))
    users = rng.normal(size=(n_users, rank)) @ mix
    items = rng.normal(size=(n_items, rank)) @ mix * rng.lognormal(0, 0.3, size=(n_items, 1))
    return users.astype(np.float32), items.astype(np.float32)


def test_round_trip_error_within_half_a_step() -> None:
    rng = np.random.default_rng(RNG_SEED)
    a = (rng.normal(size=(200, 33)) * rng.lognormal(0, 2, size=(200, 1))).astype(np.float32)
    q, scale = quantize_rows(a)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert np.abs(q.astype(np.int32)).max() == 127  # the largest element of each row maps to 127
    np.testing.assert_allclose(scale, np.abs(a).max(axis=1) / 127, rtol=1e-6)
    err = np.abs(a - q.astype(np.float32) * scale[:, None])
    assert (err <= scale[:, None] * (0.5 + 1e-5)).all()


def test_zero_rows_and_empty_input() -> None:
    a = np.zeros((3, 4), dtype=np.float32)
    a[1] = [0.0, -2.0, 1.0, 0.5]
    with np.errstate(all="raise"):
        q, scale = quantize_rows(a)
    assert scale.tolist() == [0.0, pytest.approx(2 / 127), 0.0]
    assert (q[[0, 2]] == 0).all() and q[1].tolist() == [0, -127, 64, 32]
    q0, s0 = quantize_rows(np.zeros((0, 4), dtype=np.float32))
    assert q0.shape == (0, 4) and s0.shape == (0,)
    with pytest.raises(ValueError):
        quantize_rows(np.array([[1.0, np.nan]]))
    # A zero user scores 0 everywhere, a zero item scores 0 for everyone: no NaN anywhere.
    qf = QuantizedFactors.from_items(UserTable(a), a)
    scores = int8_scores(a, qf)
    assert np.isfinite(scores).all()
    assert (scores[[0, 2]] == 0).all() and (scores[:, [0, 2]] == 0).all()
    assert scores[1, 1] == pytest.approx(5.25, rel=0.01)
    items, scores = top_k_int8(a, qf, [None, [1], [0, 1, 2]], k=3)
    assert np.isfinite(scores[0]).all() and (scores[0] == 0).all()
    assert items[2].tolist() == [-1, -1, -1] and np.isneginf(scores[2]).all()


def test_int8_scores_within_derived_bound() -> None:
    users, items = _low_rank(64, 500, 48, 12)
    d = users.shape[1]
    qf = QuantizedFactors.from_factors(IdFactors(users, items))
    got = int8_scores(users, qf)
    exact = users.astype(np.float64) @ items.astype(np.float64).T
    err = np.abs(got - exact)
    su = np.abs(users).max(axis=1)[:, None] / 127
    sv = np.abs(items).max(axis=1)[None, :] / 127
    l1u = np.abs(users).sum(axis=1)[:, None]
    l1v = np.abs(items).sum(axis=1)[None, :]
    # Per pair: (su |v|_1 + sv |u|_1) / 2 + d su sv / 4, plus float32 rescaling slack.
    bound = (su * l1v + sv * l1u) / 2 + d * su * sv / 4
    assert (err <= bound * (1 + 1e-4) + 1e-6 * np.abs(exact)).all()
    # Relative to |u|_2 |v|_2: sqrt(d) / 127 + d / 127^2 / 4 (6.1 % here) worst case ...
    norms = np.linalg.norm(users, axis=1)[:, None] * np.linalg.norm(items, axis=1)[None, :]
    assert (err / norms).max() <= np.sqrt(d) / 127 + d / (4 * 127**2)
    # ... and in practice the errors do not line up: typically ~1e-3 of it.
    assert np.median(err / norms) < 2e-3


@pytest.mark.parametrize("compute", ["int8", "bfloat16"])
@pytest.mark.parametrize("dim", [1, 3])  # d = 1: torch's CPU _int_mm is wrong there (float path)
def test_top_k_int8_excludes_seen_and_pads_like_top_k(compute: Compute, dim: int) -> None:
    items = np.array([[1.0], [3.0], [2.0], [5.0]], dtype=np.float32) @ np.ones((1, dim), "f4")
    users = np.array([[1.0], [-1.0]], dtype=np.float32) @ np.ones((1, dim), "f4")
    qf = QuantizedFactors.from_factors(IdFactors(users, items))
    seen: list[object] = [np.array([3]), None]
    got_items, got_scores = top_k_int8(users, qf, seen, k=2, compute=compute)
    want_items, want_scores = top_k(users, items, seen, k=2)
    assert got_items.tolist() == want_items.tolist() == [[1, 2], [0, 2]]
    np.testing.assert_allclose(got_scores, want_scores, rtol=0.01)
    assert got_scores.dtype == np.float32
    short = top_k_int8(users[:1], qf, [[0, 1, 3]], k=3, compute=compute)
    want = top_k(users[:1], items, [[0, 1, 3]], k=3)
    assert short[0].tolist() == want[0].tolist() == [[2, -1, -1]]
    assert np.isneginf(short[1][0, 1:]).all() and np.isneginf(want[1][0, 1:]).all()
    wide = top_k_int8(users, qf, [None, None], k=10, compute=compute)
    assert wide[0].shape == wide[1].shape == (2, 4)  # k beyond the catalog: min(k, n_items)


def test_top_k_int8_rejects_bad_input() -> None:
    qf = QuantizedFactors.from_items(UserTable(np.ones((2, 4), "f4")), np.ones((5, 4), "f4"))
    with pytest.raises(ValueError):
        top_k_int8(np.ones((2, 3), "f4"), qf, [None, None], k=2)
    with pytest.raises(ValueError):
        top_k_int8(np.ones((2, 4), "f4"), qf, [None, None], k=2, compute="fp8")  # type: ignore[arg-type]


@pytest.mark.parametrize("compute", ["int8", "bfloat16"])
def test_top_10_overlap_with_float_on_low_rank_factors(compute: Compute) -> None:
    users, items = _low_rank(300, 3000, 64, 16)
    rng = np.random.default_rng(RNG_SEED + 1)
    seen = [rng.choice(3000, size=20, replace=False) for _ in range(300)]
    qf = QuantizedFactors.from_factors(IdFactors(users, items))
    vectors = qf.user_vectors(np.arange(300), seen)
    got, _ = top_k_int8(vectors, qf, list(seen), k=10, compute=compute)
    want, _ = top_k(users, items, list(seen), k=10)
    assert all(not np.isin(g, s).any() for g, s in zip(got, seen, strict=True))
    overlap = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert overlap > 0.9


def test_history_factors_keep_multi_hot_users_and_pickle() -> None:
    rng = np.random.default_rng(RNG_SEED)
    b = rng.normal(size=(40, 40)).astype(np.float32)
    qf = QuantizedFactors.from_factors(HistoryFactors(b))
    assert isinstance(qf.source, MultiHot) and qf.nbytes < b.nbytes / 3
    seen = [[1, 5], [], [0]]
    vectors = qf.user_vectors(np.arange(3), seen)
    np.testing.assert_array_equal(vectors, HistoryFactors(b).user_vectors(np.arange(3), seen))
    got = int8_scores(vectors, qf)
    np.testing.assert_allclose(got, vectors @ b.T, atol=np.abs(b).max() / 127)
    _ = qf.bf16_items  # the bf16 copy made for scoring is not shipped with the pickle
    again = pickle.loads(pickle.dumps(qf))
    assert "bf16_items" not in again.__dict__
    np.testing.assert_array_equal(again.items, qf.items)

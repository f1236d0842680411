"""Top-K scoring: order, exclusion of seen items, short catalogs, the Spark UDF path."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from pyspark.sql import SparkSession

from recspark.ranking.explain import explain
from recspark.ranking.factors import HistoryFactors, IdFactors, SeenItems
from recspark.ranking.topk import mask_seen, top_k, top_k_rows
from recspark.scoring.udf import InMemoryFactors, score_users

ITEMS = np.array([[1.0], [3.0], [2.0], [5.0]], dtype=np.float32)
USERS = np.array([[1.0], [-1.0]], dtype=np.float32)


def test_top_k_orders_and_excludes_seen() -> None:
    items, scores = top_k(USERS, ITEMS, [np.array([3]), None], k=2)
    assert items.tolist() == [[1, 2], [0, 2]]
    assert scores.tolist() == [[3.0, 2.0], [-1.0, -2.0]]


def test_top_k_marks_missing_when_user_has_seen_almost_everything() -> None:
    items, _ = top_k(USERS[:1], ITEMS, [[0, 1, 3]], k=3)
    assert items.tolist() == [[2, -1, -1]]


def test_score_users_udf(spark: SparkSession) -> None:
    users = spark.createDataFrame([(0, [3]), (1, None)], "user_index int, seen_items array<int>")
    source = InMemoryFactors(IdFactors(USERS, ITEMS))
    got = sorted(tuple(r) for r in score_users(users, source, k=2, batch_size=1).collect())
    assert got == [(0, 1, 1, 3.0), (0, 2, 2, 2.0), (1, 0, 1, -1.0), (1, 2, 2, -2.0)]


def test_score_users_int8_matches_float_and_excludes_seen(spark: SparkSession) -> None:
    rng = np.random.default_rng(3)
    factors = IdFactors(
        rng.normal(size=(40, 16)).astype(np.float32), rng.normal(size=(300, 16)).astype(np.float32)
    )
    seen = [rng.choice(300, size=20, replace=False).tolist() for _ in range(40)]
    users = spark.createDataFrame(list(enumerate(seen)), "user_index int, seen_items array<int>")

    def ranked(precision: str) -> dict[int, list[int]]:
        source = InMemoryFactors(factors)
        rows = score_users(users, source, k=10, precision=precision).collect()
        out: dict[int, list[int]] = {}
        for r in sorted(rows, key=lambda r: (r["user_index"], r["rank"])):
            out.setdefault(r["user_index"], []).append(r["item_index"])
        return out

    exact, quantized = ranked("float32"), ranked("int8")
    assert all(len(quantized[u]) == 10 and not set(quantized[u]) & set(seen[u]) for u in range(40))
    overlap = np.mean([len(set(exact[u]) & set(quantized[u])) / 10 for u in range(40)])
    assert overlap > 0.9


def test_explain_item_item_model_picks_the_largest_weight() -> None:
    # items[j, i]: weight of seen item i for candidate j
    weights = np.array([[0, 1, 5, 0], [2, 0, 1, 0], [0, 0, 0, 0], [1, 7, 3, 0]], dtype=np.float32)
    recs = np.array([[0, 3], [1, -1]])
    got = explain(HistoryFactors(weights), recs, [[1, 2], [2, 0]], max_history=10)
    assert got.tolist() == [[2, 1], [0, -1]]  # item 0 <- 2 (5 > 1); item 3 <- 1 (7 > 3)


def test_explain_embedding_model_picks_the_most_similar_seen_item() -> None:
    vectors = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.1, 5.0]], dtype=np.float32)
    factors = IdFactors(np.zeros((2, 2), np.float32), vectors)
    recs = np.array([[2, 3], [2, 3]])
    got = explain(factors, recs, [[0, 1], None], max_history=10)
    assert got.tolist() == [[0, 1], [-1, -1]]  # cosine: 2 ~ 0, 3 ~ 1; no history -> -1
    only_first = explain(factors, recs, [[0, 1], None], max_history=1)
    assert only_first.tolist() == [[0, 0], [-1, -1]]


def test_score_users_adds_explanations(spark: SparkSession) -> None:
    users = spark.createDataFrame([(0, [3]), (1, None)], "user_index int, seen_items array<int>")
    source = InMemoryFactors(IdFactors(USERS, ITEMS))
    got = score_users(users, source, k=2, batch_size=1, explain_history=5)
    rows = sorted((r["user_index"], r["explanation_index"]) for r in got.collect())
    assert rows == [(0, 3), (0, 3), (1, -1), (1, -1)]


@pytest.mark.parametrize("n_items", [7, 639, 640, 2_560, 2_561, 20_033])
@pytest.mark.parametrize("k", [1, 10, 50])
def test_top_k_rows_is_torch_topk(n_items: int, k: int) -> None:
    rng = np.random.default_rng(n_items + k)
    scores = torch.from_numpy(rng.normal(size=(33, n_items)).astype(np.float32))
    scores[:, rng.integers(0, n_items, n_items // 2)] = float("-inf")  # masked seen items
    scores[0] = float("-inf")  # a user who has seen everything
    values, indices = top_k_rows(scores, k)
    want = torch.topk(scores, min(k, n_items), dim=1)
    assert torch.equal(values, want.values)
    finite = torch.isfinite(values)
    assert torch.equal(scores.gather(1, indices)[finite], values[finite])
    for row in range(1, len(scores)):  # the same items as torch.topk; ties by item index
        pairs = zip(want.values[row].tolist(), want.indices[row].tolist(), strict=True)
        want_row = sorted(pairs, key=lambda pair: (-pair[0], pair[1]))
        assert indices[row].tolist() == [item for _, item in want_row]


@pytest.mark.parametrize("n_items", [30, 64 * 60])
def test_top_k_rows_orders_ties_by_item(n_items: int) -> None:
    scores = torch.zeros((1, n_items))
    scores[0, [n_items - 1, 17, 3]] = 2.0
    scores[0, [9, 2]] = 1.0
    values, indices = top_k_rows(scores, 5)
    assert indices.tolist() == [[3, 17, n_items - 1, 2, 9]]
    assert values.tolist() == [[2.0, 2.0, 2.0, 1.0, 1.0]]


def test_top_k_rows_finds_the_best_in_one_chunk_and_the_tail() -> None:
    scores = torch.zeros((2, 64 * 50 + 3))
    scores[0, 64:74] = torch.arange(10, 0, -1, dtype=torch.float32)  # all ten in chunk 1
    scores[1, -1] = 9.0  # past the last whole chunk
    scores[1, 5] = 8.0
    values, indices = top_k_rows(scores, 2)
    assert indices.tolist() == [[64, 65], [64 * 50 + 2, 5]]
    assert values.tolist() == [[10.0, 9.0], [9.0, 8.0]]


def test_seen_items_from_arrow_handles_nulls_and_slices() -> None:
    column = pa.array([[1, 2], None, [], [5, 6, 7]], pa.list_(pa.int32()))
    seen = SeenItems.from_arrow(column.slice(1))
    assert [row.tolist() for row in seen] == [[], [], [5, 6, 7]]
    assert seen[1:3].flat().tolist() == [5, 6, 7]
    assert seen[2:].lengths().tolist() == [3]
    lists = SeenItems.from_lists([np.array([4]), None, [2, 3]])
    assert lists.offsets.tolist() == [0, 1, 1, 3] and lists.values.tolist() == [4, 2, 3]


def test_seen_items_padded_and_multi_hot() -> None:
    seen = SeenItems.from_lists([[7, 1, 5], None, [2], [3, 4]])[1:]
    history, valid = seen.padded(max_per_row=1)
    assert history.tolist() == [[0], [2], [3]] and valid.tolist() == [[False], [True], [True]]
    history, valid = seen.padded(max_per_row=10)
    assert history.tolist() == [[0, 0], [2, 0], [3, 4]]
    assert valid.tolist() == [[False, False], [True, False], [True, True]]
    assert seen.multi_hot(5).tolist() == [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 1, 1]]
    empty_history, _ = SeenItems.from_lists([None, []]).padded(max_per_row=3)
    assert empty_history.shape == (2, 0)


def test_mask_seen_takes_lists_and_csr_alike() -> None:
    seen = [[0, 2], None, [1]]
    from_lists, from_csr = torch.zeros((3, 3)), torch.zeros((3, 3))
    mask_seen(from_lists, seen)
    mask_seen(from_csr, SeenItems.from_lists(seen))
    assert torch.equal(from_lists, from_csr)
    assert torch.isinf(from_lists).nonzero().tolist() == [[0, 0], [0, 2], [2, 1]]


def test_top_k_of_no_users_is_empty() -> None:
    items = np.random.default_rng(0).normal(size=(5_000, 4)).astype(np.float32)
    got_items, got_scores = top_k(np.zeros((0, 4), np.float32), items, [], k=10)
    assert got_items.shape == (0, 10) and got_scores.shape == (0, 10)

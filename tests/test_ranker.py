"""A worker's cache and ranker: one model kept, derived data made once, keys never confused."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.ranking.cache import SingleEntryCache
from recspark.ranking.factors import HistoryFactors, IdFactors
from recspark.ranking.ranker import Ranker
from recspark.ranking.topk import ScoreBuffer, top_k
from recspark.scoring.udf import InMemoryFactors, MlflowModelFactors, worker_ranker

ITEMS = np.array([[1.0], [3.0], [2.0], [5.0]], dtype=np.float32)
USERS = np.array([[1.0], [-1.0]], dtype=np.float32)


def test_single_entry_cache_keeps_one_key() -> None:
    cache: SingleEntryCache[list[int]] = SingleEntryCache()
    made: list[str] = []

    def make(key: str) -> list[int]:
        made.append(key)
        return [len(made)]

    first = cache.get("a", lambda: make("a"))
    assert cache.get("a", lambda: make("a")) is first and made == ["a"]
    assert cache.get("b", lambda: make("b")) == [2] and "a" not in cache and "b" in cache
    assert cache.get("a", lambda: make("a")) == [3]  # the old entry was dropped
    cache.clear()
    assert "a" not in cache


def test_sources_have_distinct_keys() -> None:
    a, b = InMemoryFactors(IdFactors(USERS, ITEMS)), InMemoryFactors(IdFactors(USERS, ITEMS))
    assert a.key != b.key  # factors fitted again are never taken for the kept ones
    model = MlflowModelFactors("sqlite:///x.db", "models:/m/1")
    assert model.key == MlflowModelFactors("sqlite:///x.db", "models:/m/1").key
    assert model.key != MlflowModelFactors("sqlite:///x.db", "models:/m/2").key


def test_worker_ranker_is_kept_per_source_and_precision() -> None:
    source = InMemoryFactors(IdFactors(USERS, ITEMS))
    ranker = worker_ranker(source)
    assert worker_ranker(source) is ranker
    assert worker_ranker(source, "int8") is not ranker
    other = worker_ranker(InMemoryFactors(IdFactors(USERS, ITEMS * 2)))
    assert other.factors.items[3, 0] == 10.0


def test_ranker_derives_once_and_ranks_like_the_kernels() -> None:
    ranker = Ranker(IdFactors(USERS, ITEMS))
    items, scores = ranker.top_k(USERS, [[3], None], 2)
    want_items, want_scores = top_k(USERS, ITEMS, [[3], None], 2)
    assert items.tolist() == want_items.tolist() and scores.tolist() == want_scores.tolist()
    assert ranker.unit_items is ranker.unit_items
    quantized = Ranker(IdFactors(USERS, ITEMS), "int8")
    assert quantized.quantized is quantized.quantized
    assert quantized.top_k(USERS, [[3], None], 2)[0].tolist() == items.tolist()
    with pytest.raises(ValueError, match="item-item models"):
        Ranker(HistoryFactors(np.eye(4, dtype=np.float32))).top_k_shortlist(USERS, [[1]], 1)


def test_score_buffer_reuses_and_grows() -> None:
    import torch

    buffer = ScoreBuffer()
    first = buffer.block(2, 3, torch.float32)
    again = buffer.block(1, 3, torch.float32)
    assert again.data_ptr() == first.data_ptr() and again.shape == (1, 3)
    bigger = buffer.block(4, 4, torch.float32)
    assert bigger.shape == (4, 4)
    assert buffer.block(2, 2, torch.bfloat16).dtype == torch.bfloat16

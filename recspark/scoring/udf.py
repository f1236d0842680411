"""Scoring as a Spark Arrow UDF: `score_users` ranks every row of a users DataFrame.

`score_users` runs `mapInArrow`: each Python worker gets the model's `Ranker` once (kept between
tasks, see `recspark.ranking.cache`), then ranks its users in blocks with one matrix product and
an exact top-K, and (optionally) explains each recommendation by the seen item that supports it
most. Seen items travel as one flat Arrow array plus offsets (`SeenItems`), never as a Python
object per user. Evaluation and the score stage both score through here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.models.base import ScoringModel
from recspark.ranking.cache import SingleEntryCache
from recspark.ranking.factors import FactorSet, IdFactors, SeenItems
from recspark.ranking.ranker import Ranker
from recspark.schemas import ITEM_INDEX, RANK, SCORE, USER_INDEX
from recspark.vocab import Precision

SEEN = "seen_items"
SHORTLIST = "shortlist"
EXPLANATION_INDEX = "explanation_index"


class FactorSource(Protocol):
    """Where a worker gets a model's FactorSet from; must pickle small (or be a baseline)."""

    @property
    def key(self) -> Hashable:
        """Names the factors: two sources with one key give the same factors."""
        ...

    def load(self) -> FactorSet: ...


@dataclass(frozen=True)
class InMemoryFactors:
    """Factors shipped with the task (baselines computed by the driver: popularity, ALS).

    Each object is its own key: factors fitted again (a rerun on new data) are never mistaken
    for the ones a worker kept.
    """

    factors: FactorSet
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def load(self) -> FactorSet:
        return self.factors


@dataclass(frozen=True)
class MlflowModelFactors:
    """Factors of a logged MLflow model, loaded by each worker from the model store.

    `model_uri` names one model version (`models:/<name>/<version>`), which never changes, so
    the URIs are the key.
    """

    tracking_uri: str
    model_uri: str

    @property
    def key(self) -> Hashable:
        return (self.tracking_uri, self.model_uri)

    def load(self) -> FactorSet:
        import mlflow

        from recspark.models.served import load_scoring_model

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        model = load_scoring_model(self.model_uri)
        if isinstance(model, ScoringModel):
            return model.factor_set()
        users, items = model.factors()  # a bare TwoTower logged by recspark 0.1
        return IdFactors(users=users, items=items)


_WORKER_RANKER: SingleEntryCache[Ranker] = SingleEntryCache()
"""The ranker of the model this process scored last. Lifetime: the Python worker process, which
Spark reuses for the tasks that follow; a task for another model or precision replaces it."""


def worker_ranker(source: FactorSource, precision: Precision = "float32") -> Ranker:
    """The Ranker of `source` at `precision`, loaded once per Python worker."""
    return _WORKER_RANKER.get((source.key, precision), lambda: Ranker(source.load(), precision))


def users_with_seen(users_df: DataFrame, seen_pairs_df: DataFrame) -> DataFrame:
    """(user_index, seen_items): each user with the items to exclude from their ranking."""
    seen = seen_pairs_df.groupBy(USER_INDEX).agg(F.collect_list(ITEM_INDEX).alias(SEEN))
    return users_df.select(USER_INDEX).distinct().join(seen, USER_INDEX, "left")


def rank_block(
    ranker: Ranker,
    users: NDArray[Any],
    seen: SeenItems,
    shortlist: SeenItems | None,
    k: int,
    explain_history: int,
) -> dict[str, NDArray[Any]]:
    """The output columns of one block of users: k rows each, best first (-1 items included)."""
    vectors = ranker.user_vectors(users, seen)
    if shortlist is None:
        items, values = ranker.top_k(vectors, seen, k)
    else:
        items, values = ranker.top_k_shortlist(vectors, shortlist, k)
    width = items.shape[1]
    columns = {
        USER_INDEX: np.repeat(users, width).astype(np.int32),
        ITEM_INDEX: items.reshape(-1).astype(np.int32),
        RANK: np.tile(np.arange(1, width + 1, dtype=np.int32), len(users)),
        SCORE: values.reshape(-1).astype(np.float32),
    }
    if explain_history:
        why = ranker.explain(items, seen, explain_history)
        columns[EXPLANATION_INDEX] = why.reshape(-1).astype(np.int32)
    return columns


def rank_batch(
    ranker: Ranker, batch: Any, k: int, block_size: int, explain_history: int
) -> dict[str, NDArray[Any]] | None:
    """The columns of one Arrow batch of (user_index, seen_items[, shortlist]), empty places
    dropped; None for an empty batch."""
    all_users = batch.column(USER_INDEX).to_numpy(zero_copy_only=False)
    all_seen = SeenItems.from_arrow(batch.column(SEEN))
    names = batch.schema.names
    shortlists = SeenItems.from_arrow(batch.column(SHORTLIST)) if SHORTLIST in names else None
    parts = [
        rank_block(
            ranker,
            all_users[start : start + block_size],
            all_seen[start : start + block_size],
            None if shortlists is None else shortlists[start : start + block_size],
            k,
            explain_history,
        )
        for start in range(0, len(all_users), block_size)
    ]
    if not parts:
        return None
    out = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    kept = out[ITEM_INDEX] >= 0
    return out if kept.all() else {c: v[kept] for c, v in out.items()}


def _score_partition(
    source: FactorSource,
    k: int,
    block_size: int,
    precision: Precision = "float32",
    explain_history: int = 0,
    threads: int = 1,
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    def score(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        import torch

        # One thread per task: Spark runs a task per core; more threads per task oversubscribe
        # the cores (measured: 2 tasks x 2 threads on 2 cores is slower than 2 x 1).
        torch.set_num_threads(threads)
        ranker = worker_ranker(source, precision)
        for batch in batches:
            # one output batch per input batch: per-block batches cost more in Arrow than the
            # blocks' top-K (measured with benchmarks/score.py)
            out = rank_batch(ranker, batch, k, block_size, explain_history)
            if out is not None:
                yield pa.RecordBatch.from_arrays([pa.array(v) for v in out.values()], list(out))

    return score


def task_threads(df: DataFrame) -> int:
    """spark.task.cpus of the DataFrame's session: the torch threads a scoring task may use."""
    return int(df.sparkSession.conf.get("spark.task.cpus", "1") or 1)


def score_users(
    users_df: DataFrame,
    source: FactorSource,
    k: int,
    batch_size: int = 256,
    precision: Precision = "float32",
    explain_history: int = 0,
    threads: int | None = None,
) -> DataFrame:
    """Top-k recommendations for every row of `users_df` (user_index, seen_items).

    `batch_size`: users per matrix product. `precision` int8 / bfloat16 scores against
    int8-quantized item vectors (see `recspark.ranking.quantize`: 3.8x smaller items, top-10
    overlap with float32 ~0.99). With a `shortlist` column (array of item indices per user,
    seen items already out; see `recspark.scoring.shortlist`) only those items are ranked, in
    float32. `threads`: torch threads per task (default: spark.task.cpus).
    `explain_history` > 0 adds `explanation_index`: the seen item (among the first that many)
    that supports each recommendation most (see `recspark.ranking.explain`); -1 for users
    without history.

    Returns:
        (user_index, item_index, rank, score[, explanation_index]), rank 1 = best.
    """
    schema = f"{USER_INDEX} int, {ITEM_INDEX} int, {RANK} int, {SCORE} float"
    if explain_history:
        schema += f", {EXPLANATION_INDEX} int"
    columns = [USER_INDEX, SEEN, *([SHORTLIST] if SHORTLIST in users_df.columns else [])]
    return users_df.select(*columns).mapInArrow(
        _score_partition(
            source, k, batch_size, precision, explain_history, threads or task_threads(users_df)
        ),  # type: ignore[arg-type]
        schema,
    )


__all__ = [
    "EXPLANATION_INDEX",
    "SEEN",
    "SHORTLIST",
    "FactorSource",
    "InMemoryFactors",
    "MlflowModelFactors",
    "rank_batch",
    "rank_block",
    "score_users",
    "users_with_seen",
    "worker_ranker",
]

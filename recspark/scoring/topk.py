"""Top-K scoring of users against the whole item catalog, seen items excluded.

`score_users` runs `mapInArrow`: each Python worker loads the factors once (cached per process
by the source's key), then scores its users in batches with one matrix product and an exact top-K
(`top_k_rows`), and (optionally) explains each recommendation by the seen item that supports it
most (`explain`). Seen items travel as one flat Arrow array plus offsets (`SeenItems`), never as a
Python object per user.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import DataFrame

from recspark.models.base import FactorSet, HistoryFactors, IdFactors, ScoringModel, SeenItems
from recspark.schemas import ITEM_INDEX, RANK, SCORE, USER_INDEX

SEEN = "seen_items"
CANDIDATES = "candidates"
EXPLANATION_INDEX = "explanation_index"
_FACTOR_CACHE: dict[str, FactorSet] = {}
_UNIT_ITEMS: dict[str, NDArray[Any]] = {}


class FactorSource(Protocol):
    """Where a worker gets a model's FactorSet from; must pickle small (or be a baseline)."""

    @property
    def key(self) -> str: ...

    def load(self) -> FactorSet: ...


@dataclass(frozen=True)
class InMemoryFactors:
    """Factors shipped with the task (baselines computed by the driver: popularity, ALS)."""

    key: str
    factors: FactorSet

    def load(self) -> FactorSet:
        return self.factors


@dataclass(frozen=True)
class MlflowModelFactors:
    """Factors of a registered MLflow model, loaded by each worker from the model store."""

    tracking_uri: str
    model_uri: str

    @property
    def key(self) -> str:
        return f"{self.tracking_uri}|{self.model_uri}"

    def load(self) -> FactorSet:
        import mlflow
        import mlflow.pytorch

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        model = mlflow.pytorch.load_model(self.model_uri, map_location="cpu")
        if isinstance(model, ScoringModel):
            return model.factor_set()
        users, items = model.factors()  # a bare TwoTower logged by recspark 0.1
        return IdFactors(users=users, items=items)


def load_factors(source: FactorSource) -> FactorSet:
    """Load once per Python worker process; later tasks on the worker reuse it."""
    if source.key not in _FACTOR_CACHE:
        _FACTOR_CACHE.clear()
        _FACTOR_CACHE[source.key] = source.load()
    return _FACTOR_CACHE[source.key]


def mask_seen(scores: Any, seen: Sequence[Any]) -> None:
    """Set scores[row, item] to -inf, in place, for every item each row's user has seen."""
    import torch

    rows, _, cols = SeenItems.from_lists(seen).coordinates()
    if len(rows):
        scores[torch.from_numpy(rows), torch.from_numpy(cols)] = float("-inf")


_CHUNK = 64


def top_k_rows(scores: Any, k: int) -> Any:
    """`torch.topk(scores, k, dim=1)` of a (B, N) score tensor, exact, several times faster.

    The k best of a row lie in the k chunks (of `_CHUNK` columns) with the largest maxima: the
    k-th best score is at least the k-th largest chunk maximum, so no other chunk can hold a
    better one. One cheap pass takes the chunk maxima, then only k chunks are ranked. The
    values are exactly those of `torch.topk`. Equal scores are ordered by column (lower first)
    rather than in `torch.topk`'s unspecified order, so a rerun ranks ties the same way; which
    of several columns tied at the k-th place is kept is not specified.

    Returns:
        (values, indices), each (B, min(k, N)), best first.
    """
    import torch

    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    n_chunks = n_cols // _CHUNK
    if n_chunks < 4 * k or n_rows == 0:  # too few chunks for the pruning to pay
        best = torch.topk(scores, k, dim=1)
        return _ties_by_column(best.values, best.indices)
    scores = scores.contiguous()
    body = scores[:, : n_chunks * _CHUNK].view(n_rows, n_chunks, _CHUNK)
    chunks = torch.topk(body.amax(dim=2), k, dim=1).indices
    width = k * _CHUNK
    values = body.gather(1, chunks[:, :, None].expand(n_rows, k, _CHUNK)).reshape(n_rows, width)
    offsets = torch.arange(_CHUNK, device=scores.device)
    columns = (chunks[:, :, None] * _CHUNK + offsets).reshape(n_rows, width)
    if n_cols > n_chunks * _CHUNK:  # the columns after the last whole chunk always compete
        values = torch.cat([values, scores[:, n_chunks * _CHUNK :]], dim=1)
        tail = torch.arange(n_chunks * _CHUNK, n_cols, device=scores.device).expand(n_rows, -1)
        columns = torch.cat([columns, tail], dim=1)
    best = torch.topk(values, k, dim=1)
    return _ties_by_column(best.values, columns.gather(1, best.indices))


def _ties_by_column(values: Any, columns: Any) -> tuple[Any, Any]:
    """Sort (B, k) results by value, best first, equal values by column: two small sorts."""
    import torch

    by_column = columns.argsort(dim=1)
    values, columns = values.gather(1, by_column), columns.gather(1, by_column)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return values.gather(1, order), columns.gather(1, order)


_BUFFER: list[Any] = []


def _score_buffer(rows: int, cols: int, dtype: Any) -> Any:
    """A (rows, cols) score block reused across calls in this process.

    A fresh 256 x 20k float block is 20 MB: glibc serves it with mmap and returns it on free, so
    every block page-faults its memory again (measured up to 1.5x slower, and erratic).
    """
    import torch

    if not _BUFFER or _BUFFER[0].numel() < rows * cols or _BUFFER[0].dtype != dtype:
        _BUFFER[:] = [torch.empty(rows * cols, dtype=dtype)]
    return _BUFFER[0][: rows * cols].view(rows, cols)


def top_k(
    user_vectors: NDArray[Any], item_vectors: NDArray[Any], seen: Sequence[Any], k: int
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Best k unseen items per user.

    Args:
        user_vectors: (B, d) vectors of the users to score.
        item_vectors: (N, d) vectors of the whole catalog.
        seen: per user, the item indices to exclude (array-likes or None, or `SeenItems`).
        k: how many to keep.

    Returns:
        (items, scores), each (B, min(k, N)); where a user has fewer than k unseen items, the
        missing places hold item -1 and score -inf.
    """
    import torch

    users = torch.from_numpy(user_vectors)
    items_t = torch.from_numpy(item_vectors).T
    scores = _score_buffer(len(user_vectors), len(item_vectors), items_t.dtype)
    torch.mm(users.to(items_t.dtype), items_t, out=scores)
    mask_seen(scores, seen)
    best_values, best_items = top_k_rows(scores, k)
    items = best_items.numpy().copy()
    values = best_values.numpy()
    items[~np.isfinite(values)] = -1
    return items, values


def top_k_candidates(
    user_vectors: NDArray[Any], item_vectors: NDArray[Any], candidates: Sequence[Any], k: int
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Best k of each user's candidate items (a shortlist that already excludes seen items).

    Returns:
        (items, scores), each (B, k); places beyond a user's candidates hold -1 and -inf.
    """
    import torch

    lengths = [0 if c is None else len(c) for c in candidates]
    width = max(max(lengths, default=0), k)
    padded = np.zeros((len(lengths), width), dtype=np.int64)
    valid = np.zeros((len(lengths), width), dtype=bool)
    for row, (items, n) in enumerate(zip(candidates, lengths, strict=True)):
        if n:
            padded[row, :n] = np.asarray(items, dtype=np.int64)
            valid[row, :n] = True
    vectors = torch.from_numpy(np.asarray(item_vectors, dtype=np.float32))[torch.from_numpy(padded)]
    scores = torch.einsum("bd,bld->bl", torch.from_numpy(user_vectors.astype(np.float32)), vectors)
    scores[~torch.from_numpy(valid)] = float("-inf")
    best = torch.topk(scores, k, dim=1)
    places = best.indices.numpy()
    values = best.values.numpy()
    items = np.take_along_axis(padded, places, axis=1)
    items[~np.isfinite(values)] = -1
    return items, values


def _unit_items(source_key: str, factors: FactorSet) -> NDArray[Any]:
    """Item vectors scaled to length 1 (cosine similarity), once per worker process."""
    if source_key not in _UNIT_ITEMS:
        _UNIT_ITEMS.clear()
        items = np.asarray(factors.items, dtype=np.float32)
        norms = np.linalg.norm(items, axis=1, keepdims=True)
        _UNIT_ITEMS[source_key] = items / np.where(norms > 0, norms, 1.0)
    return _UNIT_ITEMS[source_key]


def explain(
    factors: FactorSet,
    rec_items: NDArray[Any],
    seen: Sequence[Any],
    max_history: int,
    source_key: str = "",
) -> NDArray[Any]:
    """For each recommended item, the seen item that supports it most ("because you had X").

    Support is what the model itself uses: for item-item models (EASE) the learned weight of the
    seen item for the recommended one (its exact contribution to the score); for embedding models
    the cosine similarity of the two item vectors.

    Args:
        rec_items: (B, K) recommended item indices (-1 = empty place).
        seen: per user, the seen item indices (the first `max_history` are considered).

    Returns:
        (B, K) item indices; -1 where the user has no history or the place is empty.
    """
    n_users, width = rec_items.shape
    out = np.full((n_users, width), -1, dtype=np.int64)
    history, valid = SeenItems.from_lists(seen).padded(max_history)
    if history.shape[1] == 0 or width == 0:
        return out
    recs = np.where(rec_items >= 0, rec_items, 0)
    if isinstance(factors, HistoryFactors):  # items[j, i]: weight of seen item i for candidate j
        support = factors.items[recs[:, :, None], history[:, None, :]].astype(np.float32)
    else:
        unit = _unit_items(source_key, factors)
        support = np.einsum("bkd,bhd->bkh", unit[recs], unit[history])
    support[~np.broadcast_to(valid[:, None, :], support.shape)] = -np.inf
    best = support.argmax(axis=2)
    chosen = np.take_along_axis(history, best, axis=1)
    has_history = valid.any(axis=1)[:, None] & (rec_items >= 0)
    out[has_history] = chosen[has_history]
    return out


PRECISIONS = ("float32", "int8", "bfloat16")
_QUANTIZED: dict[str, Any] = {}


def _ranker(
    source: FactorSource, precision: str
) -> Callable[[FactorSet, NDArray[Any], Sequence[Any], int], tuple[NDArray[Any], NDArray[Any]]]:
    """top_k on float32 factors, or on int8-quantized items (int8 or bf16 products)."""
    if precision == "float32":
        return lambda factors, vectors, seen, k: top_k(vectors, factors.items, seen, k)
    from recspark.models.quantize import QuantizedFactors, top_k_int8

    compute: Literal["int8", "bfloat16"] = "int8" if precision == "int8" else "bfloat16"

    def ranked(
        factors: FactorSet, vectors: NDArray[Any], seen: Sequence[Any], k: int
    ) -> tuple[NDArray[Any], NDArray[Any]]:
        if source.key not in _QUANTIZED:  # quantized once per worker process
            _QUANTIZED.clear()
            _QUANTIZED[source.key] = QuantizedFactors.from_items(factors, factors.items)
        return top_k_int8(vectors, _QUANTIZED[source.key], seen, k, compute=compute)

    return ranked


def _score_partition(
    source: FactorSource,
    k: int,
    batch_size: int,
    precision: str = "float32",
    explain_history: int = 0,
    threads: int = 1,
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    rank_top_k = _ranker(source, precision)

    def score(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa
        import torch

        # One thread per task: Spark runs a task per core; more threads per task oversubscribe
        # the cores (measured: 2 tasks x 2 threads on 2 cores is slower than 2 x 1).
        torch.set_num_threads(threads)
        factors = load_factors(source)
        for batch in batches:
            # one output batch per input batch: per-block batches cost more in Arrow than the
            # blocks' top-K (measured with benchmarks/score.py)
            all_users = batch.column(USER_INDEX).to_numpy(zero_copy_only=False)
            all_seen = SeenItems.from_arrow(batch.column(SEEN))
            has_shortlist = CANDIDATES in batch.schema.names
            shortlists = SeenItems.from_arrow(batch.column(CANDIDATES)) if has_shortlist else None
            parts: list[dict[str, NDArray[Any]]] = []
            for start in range(0, len(all_users), batch_size):
                users = all_users[start : start + batch_size]
                seen = all_seen[start : start + batch_size]
                vectors = factors.user_vectors(users, seen)
                if shortlists is not None:
                    if isinstance(factors, HistoryFactors):
                        raise ValueError(
                            "score.exact_max_items: item-item models (EASE) rank the whole "
                            "catalog; candidates are for embedding models"
                        )
                    shortlist = shortlists[start : start + batch_size]
                    items, values = top_k_candidates(vectors, factors.items, shortlist, k)
                else:
                    items, values = rank_top_k(factors, vectors, seen, k)
                width = items.shape[1]
                columns = {
                    USER_INDEX: np.repeat(users, width).astype(np.int32),
                    ITEM_INDEX: items.reshape(-1).astype(np.int32),
                    RANK: np.tile(np.arange(1, width + 1, dtype=np.int32), len(users)),
                    SCORE: values.reshape(-1).astype(np.float32),
                }
                if explain_history:
                    why = explain(factors, items, seen, explain_history, source.key)
                    columns[EXPLANATION_INDEX] = why.reshape(-1).astype(np.int32)
                parts.append(columns)
            if parts:
                out = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
                kept = out[ITEM_INDEX] >= 0
                if not kept.all():
                    out = {c: v[kept] for c, v in out.items()}
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
    precision: str = "float32",
    explain_history: int = 0,
    threads: int | None = None,
) -> DataFrame:
    """Top-k recommendations for every row of `users_df` (user_index, seen_items).

    `precision` int8 / bfloat16 scores against int8-quantized item vectors (see
    `recspark.models.quantize`: 3.8x smaller items, top-10 overlap with float32 ~0.99).
    With a `candidates` column (array of item indices per user, seen items already out; see
    `recspark.scoring.candidates`) only those items are ranked, in float32.
    `threads`: torch threads per task (default: spark.task.cpus).
    `explain_history` > 0 adds `explanation_index`: the seen item (among the first that many)
    that supports each recommendation most (see `explain`); -1 for users without history.

    Returns:
        (user_index, item_index, rank, score[, explanation_index]), rank 1 = best.
    """
    schema = f"{USER_INDEX} int, {ITEM_INDEX} int, {RANK} int, {SCORE} float"
    if explain_history:
        schema += f", {EXPLANATION_INDEX} int"
    columns = [USER_INDEX, SEEN, *([CANDIDATES] if CANDIDATES in users_df.columns else [])]
    return users_df.select(*columns).mapInArrow(
        _score_partition(
            source, k, batch_size, precision, explain_history, threads or task_threads(users_df)
        ),  # type: ignore[arg-type]
        schema,
    )

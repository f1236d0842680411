"""Ranking and beyond-accuracy metrics, computed in Spark (nothing user-sized reaches the driver).

Accuracy at each cut-off K (means over users with held-out items; a user with no
recommendations scores 0): precision, recall, NDCG, MAP (AP normalised by min(#relevant, K)),
MRR (1 / rank of the first hit) and hit rate (at least one hit).
Beyond accuracy, over all recommendations at K: catalog coverage (share of the catalog
recommended to someone), novelty (mean self-information -log2 p(item) of recommended items,
p = share of train users who had the item) and the Gini coefficient of exposure (0 = every item
recommended equally often, 1 = one item gets all exposure; items never recommended count as 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from pyspark.sql import Column, DataFrame, Row, Window
from pyspark.sql import functions as F

from recspark.schemas import ITEM_INDEX, RANK, USER_INDEX

METRICS = ["precision", "recall", "ndcg", "map", "mrr", "hit_rate"]
BEYOND = ["coverage", "novelty", "gini"]


def _idcg(n: Column) -> Column:
    return F.aggregate(
        F.sequence(F.lit(1), n), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i + 1.0)
    )


def per_user_metrics_at(
    recs_df: DataFrame,
    truth_df: DataFrame,
    ks: Sequence[int],
    col_user: str = USER_INDEX,
    col_item: str = ITEM_INDEX,
    col_rank: str = RANK,
) -> DataFrame:
    """Every metric of METRICS at every k in `ks`, for every user in `truth_df`, in one pass.

    Returns:
        (user, <metric>_at_<k> ...).
    """
    top = max(ks)
    truth = truth_df.select(col_user, col_item).distinct()
    n_truth = truth.groupBy(col_user).agg(F.count(F.lit(1)).alias("n_truth"))
    hits = (
        recs_df.filter(F.col(col_rank) <= top)
        .select(col_user, col_item, col_rank)
        .join(truth, [col_user, col_item])
    )
    hit_no = F.row_number().over(Window.partitionBy(col_user).orderBy(col_rank))
    rank = F.col(col_rank)
    aggs = []
    for k in ks:
        within = rank <= k
        aggs += [
            F.sum(F.when(within, 1).otherwise(0)).alias(f"hits_{k}"),
            F.sum(F.when(within, 1.0 / F.log2(rank + 1.0)).otherwise(0.0)).alias(f"dcg_{k}"),
            F.sum(F.when(within, F.col("hit_no") / rank).otherwise(0.0)).alias(f"ap_{k}"),
            F.max(F.when(within, 1.0 / rank).otherwise(0.0)).alias(f"rr_{k}"),
        ]
    per_user_hits = hits.select("*", hit_no.alias("hit_no")).groupBy(col_user).agg(*aggs)
    joined = n_truth.join(per_user_hits, col_user, "left").fillna(0)
    out = [F.col(col_user)]
    for k in ks:
        n_hits, ideal_n = F.col(f"hits_{k}"), F.least(F.col("n_truth"), F.lit(k))
        out += [
            (n_hits / F.lit(float(k))).alias(f"precision_at_{k}"),
            (n_hits / F.col("n_truth")).alias(f"recall_at_{k}"),
            (F.col(f"dcg_{k}") / _idcg(ideal_n)).alias(f"ndcg_at_{k}"),
            (F.col(f"ap_{k}") / ideal_n).alias(f"map_at_{k}"),
            F.col(f"rr_{k}").alias(f"mrr_at_{k}"),
            (n_hits > 0).cast("double").alias(f"hit_rate_at_{k}"),
        ]
    return joined.select(*out)


def per_user_metrics(
    recs_df: DataFrame,
    truth_df: DataFrame,
    k: int,
    col_user: str = USER_INDEX,
    col_item: str = ITEM_INDEX,
    col_rank: str = RANK,
) -> DataFrame:
    """(user, precision, recall, ndcg, map, mrr, hit_rate) at k for every user in `truth_df`."""
    per_user = per_user_metrics_at(recs_df, truth_df, [k], col_user, col_item, col_rank)
    return per_user.select(col_user, *[F.col(f"{m}_at_{k}").alias(m) for m in METRICS])


def ranking_metrics(recs_df: DataFrame, truth_df: DataFrame, k: int) -> dict[str, float]:
    """Means over truth users of every metric in METRICS at k."""
    return ranking_metrics_at(recs_df, truth_df, [k])[k]


def ranking_metrics_at(
    recs_df: DataFrame, truth_df: DataFrame, ks: Sequence[int]
) -> dict[int, dict[str, float]]:
    """{k: {metric: mean over truth users}} for every k in `ks`."""
    per_user = per_user_metrics_at(recs_df, truth_df, ks)
    names = [f"{m}_at_{k}" for k in ks for m in METRICS]
    return _means_at(per_user.agg(*[F.avg(n).alias(n) for n in names]).first(), ks)


def _means_at(row: Row | None, ks: Sequence[int]) -> dict[int, dict[str, float]]:
    """{k: {metric: mean}} from a row of `<metric>_at_<k>` means (0.0 where there is none)."""
    return {
        k: {m: 0.0 if row is None or row[f"{m}_at_{k}"] is None else float(row[f"{m}_at_{k}"])
            for m in METRICS}
        for k in ks
    }  # fmt: skip


def ranking_metrics_by(
    recs_df: DataFrame, truth_df: DataFrame, ks: Sequence[int], k: int, groups: DataFrame,
    column: str,
) -> tuple[dict[int, dict[str, float]], dict[str, dict[str, float]]]:  # fmt: skip
    """`ranking_metrics_at(recs_df, truth_df, ks)`, and per value of `column` in `groups` (user
    -> group; a user in no group counts in the first only) the means at `k` with "users", the
    group's size: one Spark action, each user's metrics computed once."""
    per_user = per_user_metrics_at(recs_df, truth_df, ks).join(
        groups.select(USER_INDEX, column), USER_INDEX, "left"
    )
    names = [f"{m}_at_{c}" for c in ks for m in METRICS]
    rows = (
        per_user.rollup(column)
        .agg(
            F.grouping(column).alias("_all"),
            F.count(F.lit(1)).alias("users"),
            *[F.avg(n).alias(n) for n in names],
        )
        .collect()
    )
    at_k = _means_at(next((r for r in rows if r["_all"] == 1), None), ks)
    by_group = {
        r[column]: {**{m: float(r[f"{m}_at_{k}"]) for m in METRICS}, "users": float(r["users"])}
        for r in rows
        if r["_all"] == 0 and r[column] is not None
    }
    return at_k, by_group


def exposure(recs_df: DataFrame, k: int, n_items: int) -> NDArray[np.float64]:
    """How often each item index is recommended in the top k (an n_items vector)."""
    counts = np.zeros(n_items, dtype=np.float64)
    rows = recs_df.filter(F.col(RANK) <= k).groupBy(ITEM_INDEX).count().collect()
    for row in rows:
        counts[row[ITEM_INDEX]] = row["count"]
    return counts


def gini(counts: NDArray[np.float64]) -> float:
    """Gini coefficient of a non-negative vector (0: all equal; -> 1: all in one entry)."""
    n, total = len(counts), float(counts.sum())
    if n == 0 or total == 0:
        return 0.0
    ordered = np.sort(counts)
    index = np.arange(1, n + 1)
    return float(((2 * index - n - 1) * ordered).sum() / (n * total))


def beyond_accuracy(
    exposure_counts: NDArray[np.float64], item_users: NDArray[np.float64], n_users: int
) -> dict[str, float]:
    """Coverage, novelty and Gini of exposure from item-sized vectors.

    Args:
        exposure_counts: times each item was recommended.
        item_users: number of train users who had each item (popularity).
        n_users: number of train users (p(item) = item_users / n_users, at least 1 / n_users).
    """
    total = exposure_counts.sum()
    if total == 0:
        return {"coverage": 0.0, "novelty": 0.0, "gini": 0.0}
    p = np.maximum(item_users, 1.0) / max(n_users, 1)
    return {
        "coverage": float((exposure_counts > 0).mean()),
        "novelty": float((exposure_counts * -np.log2(p)).sum() / total),
        "gini": gini(exposure_counts),
    }

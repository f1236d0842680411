"""Ranking metrics at K, computed in Spark (nothing user-sized reaches the driver)."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.schemas import ITEM_INDEX, RANK, USER_INDEX

METRICS = ["precision", "recall", "ndcg", "map"]


def per_user_metrics(
    recs_df: DataFrame,
    truth_df: DataFrame,
    k: int,
    col_user: str = USER_INDEX,
    col_item: str = ITEM_INDEX,
    col_rank: str = RANK,
) -> DataFrame:
    """Precision, recall, NDCG and AP at k for every user in `truth_df`.

    Args:
        recs_df: (user, item, rank) with rank 1 = best.
        truth_df: (user, item): the relevant items.
        k: the cut-off.

    Returns:
        (user, precision, recall, ndcg, map). A truth user with no recommendations scores 0.
    """
    truth = truth_df.select(col_user, col_item).distinct()
    n_truth = truth.groupBy(col_user).agg(F.count(F.lit(1)).alias("n_truth"))
    hits = (
        recs_df.filter(F.col(col_rank) <= k)
        .select(col_user, col_item, col_rank)
        .join(truth, [col_user, col_item])
    )
    hit_no = F.row_number().over(Window.partitionBy(col_user).orderBy(col_rank))
    per_user_hits = (
        hits.select("*", hit_no.alias("hit_no"))
        .groupBy(col_user)
        .agg(
            F.count(F.lit(1)).alias("n_hits"),
            F.sum(1.0 / F.log2(F.col(col_rank) + 1.0)).alias("dcg"),
            F.sum(F.col("hit_no") / F.col(col_rank)).alias("ap_sum"),
        )
    )
    ideal_n = F.least(F.col("n_truth"), F.lit(k))
    idcg = F.aggregate(
        F.sequence(F.lit(1), ideal_n), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i + 1.0)
    )
    joined = n_truth.join(per_user_hits, col_user, "left").fillna(0, ["n_hits", "dcg", "ap_sum"])
    return joined.select(
        col_user,
        (F.col("n_hits") / F.lit(float(k))).alias("precision"),
        (F.col("n_hits") / F.col("n_truth")).alias("recall"),
        (F.col("dcg") / idcg).alias("ndcg"),
        (F.col("ap_sum") / ideal_n).alias("map"),
    )


def ranking_metrics(recs_df: DataFrame, truth_df: DataFrame, k: int) -> dict[str, float]:
    """Means over truth users of precision, recall, NDCG and MAP at k."""
    row = per_user_metrics(recs_df, truth_df, k).agg(*[F.avg(m).alias(m) for m in METRICS]).first()
    if row is None or row[METRICS[0]] is None:
        return dict.fromkeys(METRICS, 0.0)
    return {m: float(row[m]) for m in METRICS}

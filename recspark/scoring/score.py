"""The score stage: the champion model ranks the catalog for every user -> `recommendations`.

Users the model can score (known to it, with at least one positive interaction) get its top-K
unseen items (of the whole catalog, or of a co-visitation + popularity shortlist above
`score.exact_max_items` items), each explained by the seen item that supports it most
(reason `personalized`).
Everyone else (new users, users with only negative or zero-weight events) gets the most popular
unseen items (reason `popular_fallback`). The run is validated before it is published
(`recspark.scoring.publish`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.evaluation.evaluate import users_with_seen
from recspark.io.delta import read_table
from recspark.models.base import FactorSet, IdFactors
from recspark.models.popularity import popularity_factors
from recspark.runs import current_run_id
from recspark.schemas import (
    EXPLANATION,
    ITEM_ID,
    ITEM_INDEX,
    RANK,
    REASON,
    RUN_DATE,
    SCORE,
    STRENGTH,
    USER_ID,
    USER_INDEX,
)
from recspark.scoring.candidates import user_candidates
from recspark.scoring.publish import Expectation, stage_validate_publish
from recspark.scoring.topk import (
    CANDIDATES,
    EXPLANATION_INDEX,
    SEEN,
    InMemoryFactors,
    MlflowModelFactors,
    load_factors,
    score_users,
)
from recspark.training.tracking import champion_version, setup_mlflow

log = logging.getLogger(__name__)

PERSONALIZED = "personalized"
POPULAR_FALLBACK = "popular_fallback"


def model_user_count(factors: FactorSet) -> int | None:
    """How many user indices an id-based model knows (None: it needs only the history)."""
    return len(factors.users) if isinstance(factors, IdFactors) else None


def split_cold_users(
    users: DataFrame, positives: DataFrame, known_users: int | None
) -> tuple[DataFrame, DataFrame]:
    """(warm, cold): cold users have no positive interaction or an index the model lacks."""
    with_history = positives.select(USER_INDEX).distinct().withColumn("has_history", F.lit(True))
    flagged = users.join(with_history, USER_INDEX, "left")
    cold = F.col("has_history").isNull()
    if known_users is not None:
        cold = cold | (F.col(USER_INDEX) >= known_users)
    return flagged.filter(~cold).drop("has_history"), flagged.filter(cold).drop("has_history")


def run_score(spark: SparkSession, config: Config, run_date: dt.date) -> dict[str, Any]:
    """Score every known user with the champion, validate the run, then publish it.

    Returns:
        model version, users scored (personalized / fallback), rows written, coverage.

    Raises:
        recspark.scoring.publish.ValidationError: the run failed a check; nothing published
            changed.
    """
    setup_mlflow(config)
    champion = champion_version(config)
    name = config.mlflow.registered_model
    score = config.score
    user_map = read_table(spark, config.table_path("user_ids"))
    item_map = read_table(spark, config.table_path("item_ids"))
    n_items = item_map.count()
    train = read_table(spark, config.table_path("train_interactions"), run_date)
    seen_pairs = train.unionByName(read_table(spark, config.table_path("holdout"), run_date))
    users = users_with_seen(user_map, seen_pairs).persist()
    source = MlflowModelFactors(config.mlflow_tracking_uri, f"models:/{name}/{champion.version}")
    known = model_user_count(load_factors(source))
    positives = seen_pairs.filter(F.col(STRENGTH) > 0)
    warm, cold = split_cold_users(users, positives, known)
    shortlisted = n_items > score.exact_max_items
    if shortlisted:
        shortlist = user_candidates(
            warm,
            positives,
            seen_pairs,
            score.candidate_history,
            score.neighbours_per_item,
            score.popular_candidates,
            score.max_candidates,
        )
        warm = warm.join(shortlist, USER_INDEX, "left")
    personalized = score_users(
        warm, source, score.k, score.users_per_batch, score.precision, score.explain_history
    ).withColumn(REASON, F.lit(PERSONALIZED))
    if EXPLANATION_INDEX not in personalized.columns:
        personalized = personalized.withColumn(EXPLANATION_INDEX, F.lit(-1))
    popular = InMemoryFactors(
        f"popularity|{config.table_path('holdout')}|{run_date}",
        popularity_factors(positives, user_map.count(), n_items),  # train and held out
    )
    fallback = (
        score_users(cold, popular, score.k, score.users_per_batch)
        .withColumn(EXPLANATION_INDEX, F.lit(-1))
        .withColumn(REASON, F.lit(POPULAR_FALLBACK))
    )
    explained_by = item_map.select(
        F.col(ITEM_INDEX).alias(EXPLANATION_INDEX), F.col(ITEM_ID).alias(EXPLANATION)
    )
    run_id = current_run_id()
    out = (
        personalized.unionByName(fallback)
        .join(user_map, USER_INDEX)
        .join(item_map, ITEM_INDEX)
        .join(explained_by, EXPLANATION_INDEX, "left")
        .select(
            USER_ID,
            RANK,
            ITEM_ID,
            SCORE,
            REASON,
            EXPLANATION,
            F.lit(name).alias("model_name"),
            F.lit(str(champion.version)).alias("model_version"),
            F.lit(run_id).alias("run_id"),
            F.lit(run_date).alias(RUN_DATE),
        )
    )
    expected_rows = F.least(
        F.lit(score.k), F.lit(n_items) - F.size(F.coalesce(F.array_distinct(SEEN), F.array()))
    )
    expected = users.select(USER_INDEX, expected_rows.alias("n_expected"))
    if shortlisted:
        # a shortlisted user can only get as many rows as it has (unseen) candidates
        from_shortlist = warm.select(
            USER_INDEX,
            F.least(F.lit(score.k), F.size(F.coalesce(F.col(CANDIDATES), F.array()))).alias(
                "n_expected"
            ),
        )
        expected = expected.join(from_shortlist, USER_INDEX, "left_anti").unionByName(
            from_shortlist
        )
    expect = Expectation(
        users=expected.join(user_map, USER_INDEX).select(USER_ID, "n_expected"),
        seen=seen_pairs.join(user_map, USER_INDEX)
        .join(item_map, ITEM_INDEX)
        .select(USER_ID, ITEM_ID),
        n_items=n_items,
        min_coverage=score.min_coverage,
    )
    try:
        published = stage_validate_publish(spark, config, run_date, out, expect)
        n_cold = cold.count()
        n_users = users.count()
    finally:
        users.unpersist()
    written = read_table(spark, config.table_path("recommendations"), run_date)
    result = {
        "model_version": str(champion.version),
        "run_id": run_id,
        "users": n_users,
        "personalized_users": n_users - n_cold,
        "fallback_users": n_cold,
        "rows": written.count(),
        "ranked": "candidates" if shortlisted else "whole catalog",
        **published,
    }
    log.info("score %s: %s", run_date, result)
    return result

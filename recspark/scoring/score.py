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
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, ScoreConfig
from recspark.io.delta import read_table
from recspark.models.popularity import popularity_factors
from recspark.ranking.factors import known_users
from recspark.results import ScoreResult
from recspark.rules import filter_positive, live_users
from recspark.runs import current_run_id
from recspark.schemas import (
    EXPLANATION,
    ITEM_ID,
    ITEM_INDEX,
    RANK,
    REASON,
    RUN_DATE,
    SCORE,
    USER_ID,
    USER_INDEX,
)
from recspark.scoring.publish import Expectation, stage_validate_publish
from recspark.scoring.shortlist import user_shortlists
from recspark.scoring.udf import (
    EXPLANATION_INDEX,
    SEEN,
    SHORTLIST,
    FactorSource,
    InMemoryFactors,
    MlflowModelFactors,
    score_users,
    users_with_seen,
)
from recspark.tracking import champion_version, setup_mlflow

log = logging.getLogger(__name__)

PERSONALIZED = "personalized"
POPULAR_FALLBACK = "popular_fallback"


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


@dataclass(frozen=True)
class ScoringData:
    """What the score stage reads: the id maps and every known user with their seen items."""

    user_map: DataFrame
    item_map: DataFrame
    n_items: int
    seen_pairs: DataFrame  # train and held-out pairs: none may be recommended
    users: DataFrame  # (user_index, seen_items) of every known user
    n_users: int  # user indices given so far (forgotten users' included: indices are kept)


def _read(spark: SparkSession, config: Config, run_date: dt.date) -> ScoringData:
    item_map = read_table(spark, config.table_path("item_ids"))
    every_user = read_table(spark, config.table_path("user_ids"))
    user_map = live_users(every_user)  # not the forgotten ones
    train = read_table(spark, config.table_path("train_interactions"), run_date)
    seen_pairs = train.unionByName(read_table(spark, config.table_path("holdout"), run_date))
    users = users_with_seen(user_map, seen_pairs)
    return ScoringData(user_map, item_map, item_map.count(), seen_pairs, users, every_user.count())


def with_shortlists(
    warm: DataFrame, positives: DataFrame, data: ScoringData, score: ScoreConfig
) -> DataFrame:
    """The warm users with their shortlist (`shortlist`) of unseen items to rank."""
    shortlist = user_shortlists(
        warm,
        positives,
        data.seen_pairs,
        score.candidate_history,
        score.neighbours_per_item,
        score.popular_candidates,
        score.max_candidates,
    )
    return warm.join(shortlist, USER_INDEX, "left")


def ranked(
    warm: DataFrame,
    cold: DataFrame,
    model: FactorSource,
    popular: FactorSource,
    score: ScoreConfig,
) -> DataFrame:
    """(user_index, item_index, rank, score, explanation_index, reason) of every user: the
    model's top-K for the warm users, the most popular unseen items for the cold ones."""
    personalized = score_users(
        warm, model, score.k, score.users_per_batch, score.precision, score.explain_history
    ).withColumn(REASON, F.lit(PERSONALIZED))
    if EXPLANATION_INDEX not in personalized.columns:
        personalized = personalized.withColumn(EXPLANATION_INDEX, F.lit(-1))
    fallback = (
        score_users(cold, popular, score.k, score.users_per_batch)
        .withColumn(EXPLANATION_INDEX, F.lit(-1))
        .withColumn(REASON, F.lit(POPULAR_FALLBACK))
    )
    return personalized.unionByName(fallback)


@dataclass(frozen=True)
class RunStamp:
    """What every row of a scoring run carries: the model and the run."""

    model_name: str
    model_version: str
    run_id: str
    run_date: dt.date


def with_ids(
    recs: DataFrame, user_map: DataFrame, item_map: DataFrame, stamp: RunStamp
) -> DataFrame:
    """Recommendations by index as `recommendations` rows: ids, reason, explanation, run."""
    explained_by = item_map.select(
        F.col(ITEM_INDEX).alias(EXPLANATION_INDEX), F.col(ITEM_ID).alias(EXPLANATION)
    )
    return (
        recs.join(user_map, USER_INDEX)
        .join(item_map, ITEM_INDEX)
        .join(explained_by, EXPLANATION_INDEX, "left")
        .select(
            USER_ID,
            RANK,
            ITEM_ID,
            SCORE,
            REASON,
            EXPLANATION,
            F.lit(stamp.model_name).alias("model_name"),
            F.lit(stamp.model_version).alias("model_version"),
            F.lit(stamp.run_id).alias("run_id"),
            F.lit(stamp.run_date).alias(RUN_DATE),
        )
    )


def expected_rows(users: DataFrame, n_items: int, k: int, warm: DataFrame | None) -> DataFrame:
    """(user_index, n_expected): K rows per user, fewer when the user has seen almost the whole
    catalog or (with shortlists, `warm` given) has fewer than K unseen items in their shortlist."""
    unseen = F.lit(n_items) - F.size(F.coalesce(F.array_distinct(SEEN), F.array()))
    expected = users.select(USER_INDEX, F.least(F.lit(k), unseen).alias("n_expected"))
    if warm is None:
        return expected
    shortlist = F.size(F.coalesce(F.col(SHORTLIST), F.array()))
    from_shortlist = warm.select(USER_INDEX, F.least(F.lit(k), shortlist).alias("n_expected"))
    return expected.join(from_shortlist, USER_INDEX, "left_anti").unionByName(from_shortlist)


def expectation(data: ScoringData, expected: DataFrame, score: ScoreConfig) -> Expectation:
    """What the validation checks the run against, by original ids."""
    return Expectation(
        users=expected.join(data.user_map, USER_INDEX).select(USER_ID, "n_expected"),
        seen=data.seen_pairs.join(data.user_map, USER_INDEX)
        .join(data.item_map, ITEM_INDEX)
        .select(USER_ID, ITEM_ID),
        n_items=data.n_items,
        min_coverage=score.min_coverage,
        min_coverage_items=score.min_coverage_items,
    )


def run_score(spark: SparkSession, config: Config, run_date: dt.date) -> ScoreResult:
    """Score every known user with the champion, validate the run, then publish it.

    Returns:
        model version, users scored (personalized / fallback), rows written, coverage.

    Raises:
        recspark.scoring.publish.ValidationError: the run failed a check; nothing published
            changed.
    """
    setup_mlflow(config)
    name, score = config.mlflow.registered_model, config.score
    stamp = RunStamp(name, str(champion_version(config).version), current_run_id(), run_date)
    model = MlflowModelFactors(config.mlflow_tracking_uri, f"models:/{name}/{stamp.model_version}")
    data = _read(spark, config, run_date)
    users = data.users.persist()
    try:
        positives = filter_positive(data.seen_pairs)
        warm, cold = split_cold_users(users, positives, known_users(model.load()))
        shortlisted = data.n_items > score.exact_max_items
        if shortlisted:
            warm = with_shortlists(warm, positives, data, score)
        n_users = data.n_users
        popular = InMemoryFactors(popularity_factors(positives, n_users, data.n_items))
        recs = with_ids(
            ranked(warm, cold, model, popular, score), data.user_map, data.item_map, stamp
        )
        expected = expected_rows(users, data.n_items, score.k, warm if shortlisted else None)
        coverage = stage_validate_publish(
            spark, config, run_date, recs, expectation(data, expected, score), stamp.model_version
        )
        n_cold, n_scored = cold.count(), users.count()
    finally:
        users.unpersist()
    written = read_table(spark, config.table_path("recommendations"), run_date)
    result = ScoreResult(
        model_version=stamp.model_version,
        run_id=stamp.run_id,
        users=n_scored,
        personalized_users=n_scored - n_cold,
        fallback_users=n_cold,
        rows=written.count(),
        ranked="candidates" if shortlisted else "whole catalog",
        coverage=coverage,
    )
    log.info("score %s: %s", run_date, result)
    return result
